// Pseudo image features (PIF, VISUAL_WORDS.md section 3): out = softmax(x Wvm^T) E, an attention of the
// queries x over V "tokens" with keys Wvm and values E, streamed over row chunks.
// Backward (the attention backward): P = softmax(x Wvm^T), G = dout E^T, dA = P * (G - rowsum(P * G));
//   dx = dA Wvm, dWvm += dA^T x, dE += P^T dout.
#include <algorithm>
#include <cstring>

#include "common.h"
#include "float32_view.h"
#include "gemm.h"
#include "ops_cpu.h"

namespace vw::cpu {
namespace {

// Row-wise softmax in place over a [nc, V] block of logits whose first row is global row c0.
void softmax_rows(const char* op, float* z, int64_t nc, int64_t V, int64_t c0) {
  parallel_for(nc, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* row = z + r * V;
      const float m = vec_max(row, V);
      check_logit_row(op, m, c0 + r);
      vec_exp(row, row, V, m, std::log(vec_sum_exp(row, V, m)), 1.f);
    }
  });
}

// The inputs of either op (gradOut: the backward's).
void check_pif(const char* op, const PseudoImageFeaturesArgs& a) {
  check_finite(op, "x", a.x, a.N * a.d);
  check_finite(op, "wVm", a.w_vm, a.V * a.d);
  check_finite(op, "e", a.e, a.V * a.dE);
  if (a.grad_out) check_finite(op, "gradOut", a.grad_out, a.N * a.dE);
}

// The chunk loop of both ops: per chunk of nc rows from row c0, P = softmax(x_c Wvm^T) into block 0 of
// `count` logit blocks, then chunk_fn(c0, nc, blocks).
template <typename ChunkFn>
OpStats softmax_chunks(const char* op, const PseudoImageFeaturesArgs& a, int count, ChunkFn&& chunk_fn) {
  const int64_t N = a.N, d = a.d, V = a.V;
  const float* x = static_cast<const float*>(a.x);
  const float* w = static_cast<const float*>(a.w_vm);
  OpStats st;
  st.rows = N;
  if (N == 0) return st;
  LogitBlocks blocks(st, a.chunk_rows, N, V, count, a.workspace_budget);
  for (int64_t c0 = 0; c0 < N; c0 += blocks.rows) {
    const int64_t nc = std::min(blocks.rows, N - c0);
    float* p = blocks.block(0);
    sgemm(false, true, nc, V, d, 1.f, x + c0 * d, d, w, d, 0.f, p, V);
    softmax_rows(op, p, nc, V, c0);
    chunk_fn(c0, nc, blocks);
  }
  return st;
}

}  // namespace

OpStats pseudo_image_features(const PseudoImageFeaturesArgs& a) {
  const char* op = "pseudo_image_features";
  check_pif(op, a);
  const int64_t V = a.V, dE = a.dE;
  const float* e = static_cast<const float*>(a.e);
  float* out = static_cast<float*>(a.out);
  return softmax_chunks(op, a, 1, [&](int64_t c0, int64_t nc, LogitBlocks& blocks) {
    sgemm(false, false, nc, dE, V, 1.f, blocks.block(0), V, e, dE, 0.f, out + c0 * dE, dE);
  });
}

OpStats pseudo_image_features_backward(const PseudoImageFeaturesArgs& a) {
  const char* op = "pseudo_image_features_backward";
  check_pif(op, a);
  const int64_t N = a.N, d = a.d, V = a.V, dE = a.dE;
  const float* x = static_cast<const float*>(a.x);
  const float* w = static_cast<const float*>(a.w_vm);
  const float* e = static_cast<const float*>(a.e);
  const float* gout = static_cast<const float*>(a.grad_out);
  float* dx = static_cast<float*>(a.dx);
  zero_f32(dx, N * d);
  zero_f32(a.dw_vm, V * d);
  zero_f32(a.de, V * dE);
  return softmax_chunks(op, a, 2, [&](int64_t c0, int64_t nc, LogitBlocks& blocks) {
    const float* p = blocks.block(0);
    float* g = blocks.block(1);
    sgemm(false, true, nc, V, dE, 1.f, gout + c0 * dE, dE, e, dE, 0.f, g, V);
    parallel_for(nc, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        float* gr = g + r * V;
        const float* pr = p + r * V;
        vec_softmax_grad(gr, pr, V, static_cast<float>(vec_dot(pr, gr, V)));
      }
    });
    logits_backward(nc, V, d, g, w, x + c0 * d, dx + c0 * d, a.dw_vm);
    sgemm(true, false, V, dE, nc, 1.f, p, V, gout + c0 * dE, dE, 1.f, a.de, dE);
  });
}

// The table entries (native/core/ops.def).
// bf16 x/wVm/e (mixed precision) run on float32 copies (float32_view.h), after the call is checked as given.
void pseudo_image_features_cpu(const OpCall& c) {
  read_pseudo_image_features(c, false);
  in_float32(c, [](const OpCall& w) { w.report(pseudo_image_features(read_pseudo_image_features(w, false))); });
}
void pseudo_image_features_backward_cpu(const OpCall& c) {
  read_pseudo_image_features(c, true);
  in_float32(c, [](const OpCall& w) { w.report(pseudo_image_features_backward(read_pseudo_image_features(w, true))); });
}

}  // namespace vw::cpu
