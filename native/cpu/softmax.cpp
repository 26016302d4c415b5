// Softmax over the last dimension (rows of C): y = exp(x - max) / sum exp(x - max), the sum in double.
// Backward (Jacobian dy_i/dx_k = y_i (delta_ik - y_k)): dx = y * (dy - sum_k dy_k y_k). It needs only
// the forward output Y, which the forward returns anyway. A row of all -inf gives NaN (as PyTorch).
#include <cmath>

#include "../core/softmax_args.h"
#include "work_split.h"
#include "ops_cpu.h"
#include "parallel.h"
#include "vec.h"

namespace vw::cpu {

void softmax_forward_cpu(const OpCall& c) {
  const SoftmaxArgs a = read_softmax(c, false);
  const int64_t R = a.R, C = a.C;
  const float* x = a.x;
  float* y = a.out;
  if (C == 0) return;
  parallel_for(R, row_grain(C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * C;
      const float m = vec_max(xr, C);
      const double s = vec_sum_exp(xr, C, m);
      vec_exp(y + r * C, xr, C, m, 0.0, static_cast<float>(1.0 / s));
    }
  });
}

void softmax_backward_cpu(const OpCall& c) {
  const SoftmaxArgs a = read_softmax(c, true);
  const int64_t R = a.R, C = a.C;
  const float *dy = a.dy, *y = a.y;
  float* dx = a.out;
  if (C == 0) return;
  parallel_for(R, row_grain(C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float *dyr = dy + r * C, *yr = y + r * C;
      const float dot = static_cast<float>(vec_dot(dyr, yr, C));
      float* dxr = dx + r * C;
#pragma omp simd  // dX may be dY (in place): element-wise
      for (int64_t j = 0; j < C; ++j) dxr[j] = yr[j] * (dyr[j] - dot);
    }
  });
}

}  // namespace vw::cpu
