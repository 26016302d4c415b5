// RMSNorm (LLaMA): y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps), rows of C, computed in fp32 with a
// double row sum. Forward saves rstd for the backward. bf16 x / y / dy / dx and w (a bf16 residual stream,
// src/nn/llama.ts residualDtype) run on widened copies (float32_view.h), as the CUDA kernels read them.
// Backward (llm.c style, derivation: y_j = w_j x_j r, dr/dx_k = -r^3 x_k / C):
//   dx = r (dy * w) - r^3 x (sum_j dy_j w_j x_j) / C,   dw += sum_rows dy * x * r.
#include <cmath>
#include <vector>

#include "../core/norm_args.h"
#include "float32_view.h"
#include "work_split.h"
#include "ops_cpu.h"
#include "parallel.h"

namespace vw::cpu {

namespace {

void rms_norm_forward_f32(const OpCall& c) {
  const RmsNormArgs a = read_rms_norm_forward(c, false);
  const int64_t R = a.R, C = a.C;
  const double eps = a.eps;
  const float* x = static_cast<const float*>(a.x);
  const float* w = static_cast<const float*>(a.w);
  float* y = static_cast<float*>(a.out);
  float* rstd = a.rstd;
  parallel_for(R, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * C;
      double ss = 0;
      for (int64_t j = 0; j < C; ++j) ss += static_cast<double>(xr[j]) * xr[j];
      const float rs = static_cast<float>(1.0 / std::sqrt(ss / C + eps));
      rstd[r] = rs;
      float* yr = y + r * C;
      for (int64_t j = 0; j < C; ++j) yr[j] = xr[j] * rs * w[j];
    }
  });
}

void rms_norm_backward_f32(const OpCall& c) {
  const RmsNormArgs a = read_rms_norm_backward(c, false);
  const int64_t R = a.R, C = a.C;
  const float* dy = static_cast<const float*>(a.dy);
  const float* x = static_cast<const float*>(a.x);
  const float* w = static_cast<const float*>(a.w);
  const float* rstd = a.saved_rstd;
  float* dx = static_cast<float*>(a.out);
  float* dw = a.dw;
  // dw is a reduction over rows: each part sums its rows privately; parts merge in order (deterministic).
  std::vector<std::vector<double>> partial(static_cast<size_t>(num_threads()));
  parallel_parts(R, 16, [&](int64_t part, int64_t r0, int64_t r1) {
    std::vector<double>& acc = partial[part];
    acc.assign(static_cast<size_t>(C), 0.0);
    for (int64_t r = r0; r < r1; ++r) {
      const float *xr = x + r * C, *dyr = dy + r * C;
      const double rs = rstd[r];
      double dot = 0;
      for (int64_t j = 0; j < C; ++j) dot += static_cast<double>(dyr[j]) * w[j] * xr[j];
      const double k = rs * rs * rs * dot / C;
      float* dxr = dx + r * C;
      for (int64_t j = 0; j < C; ++j) {
        dxr[j] = static_cast<float>(rs * dyr[j] * w[j] - k * xr[j]);
        acc[j] += static_cast<double>(dyr[j]) * xr[j] * rs;
      }
    }
  });
  for (int64_t j = 0; j < C; ++j) {
    double s = 0;
    for (const auto& p : partial)
      if (!p.empty()) s += p[j];
    dw[j] += static_cast<float>(s);
  }
}

}  // namespace

// Checked as given (bf16 allowed, as on CUDA), then run in float32.
void rms_norm_forward_cpu(const OpCall& c) {
  read_rms_norm_forward(c, true);
  in_float32(c, rms_norm_forward_f32);
}

void rms_norm_backward_cpu(const OpCall& c) {
  read_rms_norm_backward(c, true);
  in_float32(c, rms_norm_backward_f32);
}

}  // namespace vw::cpu
