// Fused linear + cross-entropy, forward and backward in one pass over row chunks (Liger-style):
//   z = h_c W^T  [rows, V] (the only vocabulary-sized buffer), loss per row from lse(z), then z is
//   overwritten in place by dL/dz and fed to two GEMMs: dh_c = dz W, dW += dz^T h_c (each skipped when its
//   output is null: a frozen weight's dW costs nothing).
// Gradient of loss_i = (1-eps)(lse - z_t) + eps (lse - mean z) + lam lse^2 with respect to z_v:
//   p_v (1 + 2 lam lse) - (1-eps) [v = t] - eps / V.
#include <algorithm>
#include <cstring>

#include "../core/error_flags.h"
#include "common.h"
#include "float32_view.h"
#include "gemm.h"
#include "ops_cpu.h"

namespace vw::cpu {

OpStats linear_cross_entropy(const LinearCrossEntropyArgs& a) {
  const char* op = "linear_cross_entropy";
  const int64_t N = a.N, d = a.d, V = a.V;
  const float* h = static_cast<const float*>(a.h);
  const float* w = static_cast<const float*>(a.w);
  float* dh = static_cast<float*>(a.dh);  // dh, a.dw: null when not wanted (fused_args.h)
  const bool grad = a.compute_grad;

  // Raised here in sync mode; in async mode (native/core/error_flags.h) a bad target leaves zero outputs.
  const bool targets_ok = error_flags().check_on_host(ValueCheck::targets(op, V, a.ignore_index), a.targets, N);
  int64_t n_valid = 0;
  for (int64_t i = 0; i < N; ++i) n_valid += a.targets[i] != a.ignore_index;
  const bool deferred = a.loss != nullptr;  // no host result: a non-finite input may be raised at the next read
  const bool finite = finite_or_flag(op, "h", h, N * d, deferred) & finite_or_flag(op, "w", w, V * d, deferred);  // both flagged, as CUDA's

  OpStats st;
  st.rows = n_valid;
  if (dh) zero_f32(dh, N * d);
  if (a.dw) zero_f32(a.dw, V * d);
  std::fill(a.row_loss, a.row_loss + N, 0.f);
  if (!targets_ok || !finite) st.rows = 0;
  if (n_valid == 0 || !targets_ok || !finite) return st;

  const double c = a.reduction == Reduction::Mean ? a.grad_scale / n_valid : a.grad_scale;
  const double eps = a.label_smoothing, lam = a.z_loss_weight;
  LogitBlocks blocks(st, a.chunk_rows, N, V, 1, a.workspace_budget);
  const int64_t chunk = blocks.rows;
  float* z = blocks.block(0);
  std::vector<double> row_loss(static_cast<size_t>(N), 0.0);

  for (int64_t c0 = 0; c0 < N; c0 += chunk) {
    const int64_t nc = std::min(chunk, N - c0);
    bool any = false;
    for (int64_t r = 0; r < nc; ++r) any |= a.targets[c0 + r] != a.ignore_index;
    if (!any) continue;  // a fully ignored chunk costs nothing and leaves dh zero
    sgemm(false, true, nc, V, d, 1.f, h + c0 * d, d, w, d, 0.f, z, V);
    parallel_for(nc, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        float* row = z + r * V;
        const int64_t i = c0 + r;
        const int32_t t = a.targets[i];
        if (t == a.ignore_index) {
          if (grad) std::fill(row, row + V, 0.f);
          continue;
        }
        const float m = vec_max(row, V);
        check_logit_row(op, m, i);
        // lse - z = (m - z) + log s, never (m + log s) - z: see vec_exp
        const double log_s = std::log(vec_sum_exp(row, V, m)), lse = m + log_s;
        double loss = (1 - eps) * ((static_cast<double>(m) - row[t]) + log_s) + lam * lse * lse;
        if (eps != 0) loss += eps * ((m - vec_sum(row, V) / V) + log_s);
        row_loss[i] = loss;
        if (grad) {
          const float zt_scale = static_cast<float>(c * (1 + 2 * lam * lse));
          vec_exp(row, row, V, m, log_s, zt_scale);
          if (eps != 0) {
            const float u = static_cast<float>(c * eps / V);
            for (int64_t v = 0; v < V; ++v) row[v] -= u;
          }
          row[t] -= static_cast<float>(c * (1 - eps));
        }
      }
    });
    if (grad) logits_backward(nc, V, d, z, w, h + c0 * d, dh ? dh + c0 * d : nullptr, a.dw);
  }
  st.loss = reduce_loss(store_row_losses(row_loss, a.row_loss), a.reduction, n_valid);
  return st;
}

// The table entries (native/core/ops.def).
// bf16 h/w/x (mixed precision) run on float32 copies (float32_view.h), after the call is checked as given.
void linear_cross_entropy_cpu(const OpCall& c) {
  read_linear_cross_entropy(c);
  in_float32(c, [](const OpCall& w) {
    const auto a = read_linear_cross_entropy(w);
    w.report(loss_to_output(linear_cross_entropy(a), a.loss));
  });
}

}  // namespace vw::cpu
