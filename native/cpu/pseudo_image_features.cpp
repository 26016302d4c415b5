// Pseudo image features (PIF, VISUAL_WORDS.md section 3): out = softmax(x Wvm^T) E, an attention of the
// queries x over V "tokens" with keys Wvm and values E, streamed over row chunks.
// Backward (the attention backward): P = softmax(x Wvm^T), G = dout E^T, dA = P * (G - rowsum(P * G));
//   dx = dA Wvm, dWvm += dA^T x, dE += P^T dout.
#include <algorithm>
#include <cstring>

#include "common.h"
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
      const double lse = m + std::log(vec_sum_exp(row, V, m));
      vec_exp(row, row, V, lse, 1.f);
    }
  });
}

void check_pif(const char* op, const PseudoImageFeaturesArgs& a) {
  check_dims(op, a.N, a.d, a.V);
  check_f32(op, a.dtype);
  if (a.dE < 1) throw_range_error("[", op, "] invalid embedding width dE=", a.dE);
  check_finite(op, "x", a.x, a.N * a.d);
  check_finite(op, "wVm", a.w_vm, a.V * a.d);
  check_finite(op, "e", a.e, a.V * a.dE);
}

}  // namespace

OpStats pseudo_image_features(const PseudoImageFeaturesArgs& a) {
  const char* op = "pseudo_image_features";
  check_pif(op, a);
  const int64_t N = a.N, d = a.d, V = a.V, dE = a.dE;
  const float* x = static_cast<const float*>(a.x);
  const float* w = static_cast<const float*>(a.w_vm);
  const float* e = static_cast<const float*>(a.e);
  float* out = static_cast<float*>(a.out);
  OpStats st;
  st.rows = N;
  if (N == 0) return st;
  const int64_t chunk = pick_chunk_rows(a.chunk_rows, N, V, 1, a.workspace_budget);
  std::vector<float> p(static_cast<size_t>(chunk * V));
  st.chunk_rows = chunk;
  st.workspace_bytes = static_cast<int64_t>(p.size() * sizeof(float));
  for (int64_t c0 = 0; c0 < N; c0 += chunk) {
    const int64_t nc = std::min(chunk, N - c0);
    sgemm(false, true, nc, V, d, 1.f, x + c0 * d, d, w, d, 0.f, p.data(), V);
    softmax_rows(op, p.data(), nc, V, c0);
    sgemm(false, false, nc, dE, V, 1.f, p.data(), V, e, dE, 0.f, out + c0 * dE, dE);
  }
  return st;
}

OpStats pseudo_image_features_backward(const PseudoImageFeaturesArgs& a) {
  const char* op = "pseudo_image_features_backward";
  check_pif(op, a);
  const int64_t N = a.N, d = a.d, V = a.V, dE = a.dE;
  const float* x = static_cast<const float*>(a.x);
  const float* w = static_cast<const float*>(a.w_vm);
  const float* e = static_cast<const float*>(a.e);
  const float* gout = static_cast<const float*>(a.grad_out);
  check_finite(op, "gradOut", gout, N * dE);
  float* dx = static_cast<float*>(a.dx);
  zero_f32(dx, N * d);
  zero_f32(a.dw_vm, V * d);
  zero_f32(a.de, V * dE);
  OpStats st;
  st.rows = N;
  if (N == 0) return st;
  const int64_t chunk = pick_chunk_rows(a.chunk_rows, N, V, 2, a.workspace_budget);
  std::vector<float> p(static_cast<size_t>(chunk * V)), g(static_cast<size_t>(chunk * V));
  st.chunk_rows = chunk;
  st.workspace_bytes = static_cast<int64_t>((p.size() + g.size()) * sizeof(float));
  for (int64_t c0 = 0; c0 < N; c0 += chunk) {
    const int64_t nc = std::min(chunk, N - c0);
    sgemm(false, true, nc, V, d, 1.f, x + c0 * d, d, w, d, 0.f, p.data(), V);
    softmax_rows(op, p.data(), nc, V, c0);
    sgemm(false, true, nc, V, dE, 1.f, gout + c0 * dE, dE, e, dE, 0.f, g.data(), V);
    parallel_for(nc, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        float* gr = g.data() + r * V;
        const float* pr = p.data() + r * V;
        vec_softmax_grad(gr, pr, V, static_cast<float>(vec_dot(pr, gr, V)));
      }
    });
    sgemm(false, false, nc, d, V, 1.f, g.data(), V, w, d, 0.f, dx + c0 * d, d);
    sgemm(true, false, V, d, nc, 1.f, g.data(), V, x + c0 * d, d, 1.f, a.dw_vm, d);
    sgemm(true, false, V, dE, nc, 1.f, p.data(), V, gout + c0 * dE, dE, 1.f, a.de, dE);
  }
  return st;
}

// The table entries (native/core/ops.def).
void pseudo_image_features_cpu(const OpCall& c) { c.report(pseudo_image_features(read_pseudo_image_features(c, false))); }
void pseudo_image_features_backward_cpu(const OpCall& c) { c.report(pseudo_image_features_backward(read_pseudo_image_features(c, true))); }

}  // namespace vw::cpu
