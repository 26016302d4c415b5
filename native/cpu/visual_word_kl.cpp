// Fused visual-word KL, forward and backward in one pass over row chunks (VISUAL_WORDS.md section 2):
//   a = x_c Wvm^T / T (target logits), b = h_c Wlm^T / T (predicted logits), both [rows, V];
//   KL_i = sum_v p_v (log p_v - log q_v), p = softmax(a), q = softmax(b)   (computed from log-probs, so
//   every row is >= 0 up to rounding rather than a difference of large lse terms);
//   dKL/db = q - p,  dKL/da = p (log p - log q - KL),  each times gradScale / (T M) for batchmean.
// a and b are overwritten in place by those gradients, then 4 GEMMs give dh, dWlm, dx, dWvm: 6 GEMMs in all
// (a gradient output left null, such as a frozen head's dW, skips its GEMM; a side with neither skips both).
#include <algorithm>
#include <cstring>

#include "common.h"
#include "float32_view.h"
#include "gemm.h"
#include "ops_cpu.h"

namespace vw::cpu {

OpStats visual_word_kl(const VisualWordKLArgs& a) {
  const char* op = "visual_word_kl";
  const int64_t M = a.M, d = a.d, V = a.V;
  const float* h = static_cast<const float*>(a.h);
  const float* x = static_cast<const float*>(a.x);
  const float* w_lm = static_cast<const float*>(a.w_lm);
  const float* w_vm = static_cast<const float*>(a.w_vm);
  float* dh = static_cast<float*>(a.dh);  // the four gradients: null when not wanted (fused_args.h)
  float* dx = static_cast<float*>(a.dx);
  const bool grad = a.compute_grad;
  const bool grad_lm = dh || a.dw_lm, grad_target = dx || a.dw_vm;
  const bool deferred = a.loss != nullptr;  // no host result: a non-finite input may be raised at the next read
  const bool finite = finite_or_flag(op, "h", h, M * d, deferred) & finite_or_flag(op, "wLm", w_lm, V * d, deferred) &
                      finite_or_flag(op, "x", x, M * d, deferred) & finite_or_flag(op, "wVm", w_vm, V * d, deferred);  // each flagged, as CUDA's

  OpStats st;
  st.rows = M;
  if (dh) zero_f32(dh, M * d);
  if (a.dw_lm) zero_f32(a.dw_lm, V * d);
  if (dx) zero_f32(dx, M * d);
  if (a.dw_vm) zero_f32(a.dw_vm, V * d);
  if (M == 0) return st;
  if (!finite) {  // a non-finite input in async mode: zero outputs, raised at the next read
    zero_f32(a.row_loss, M);
    return st;
  }

  const float inv_t = static_cast<float>(1.0 / a.temperature);
  const double s = a.grad_scale / a.temperature / (a.reduction == Reduction::Mean ? M : 1);
  const float sb = static_cast<float>(s), sa = grad_target ? sb : 0.f;
  LogitBlocks blocks(st, a.chunk_rows, M, V, 2, a.workspace_budget);
  const int64_t chunk = blocks.rows;
  float* A = blocks.block(0);
  float* B = blocks.block(1);
  std::vector<double> row_loss(static_cast<size_t>(M));

  for (int64_t c0 = 0; c0 < M; c0 += chunk) {
    const int64_t nc = std::min(chunk, M - c0);
    sgemm(false, true, nc, V, d, inv_t, x + c0 * d, d, w_vm, d, 0.f, A, V);
    sgemm(false, true, nc, V, d, inv_t, h + c0 * d, d, w_lm, d, 0.f, B, V);
    parallel_for(nc, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        float* ar = A + r * V;
        float* br = B + r * V;
        const float ma = vec_max(ar, V), mb = vec_max(br, V);
        check_logit_row(op, ma, c0 + r);
        check_logit_row(op, mb, c0 + r);
        const KlRow kl = vec_kl(ar, br, V, ma, mb);
        row_loss[c0 + r] = kl.kl;
        if (grad) vec_kl_grad(ar, br, V, ma, mb, kl, sa, sb);
      }
    });
    if (grad_lm) logits_backward(nc, V, d, B, w_lm, h + c0 * d, dh ? dh + c0 * d : nullptr, a.dw_lm);
    if (grad_target) logits_backward(nc, V, d, A, w_vm, x + c0 * d, dx ? dx + c0 * d : nullptr, a.dw_vm);
  }
  st.loss = reduce_loss(store_row_losses(row_loss, a.row_loss), a.reduction, M);
  return st;
}

// The table entries (native/core/ops.def).
// bf16 h/w/x (mixed precision) run on float32 copies (float32_view.h), after the call is checked as given.
void visual_word_kl_cpu(const OpCall& c) {
  read_visual_word_kl(c);
  in_float32(c, [](const OpCall& w) {
    const auto a = read_visual_word_kl(w);
    w.report(loss_to_output(visual_word_kl(a), a.loss));
  });
}

}  // namespace vw::cpu
