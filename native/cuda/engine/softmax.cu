// Softmax over rows of C on CUDA (semantics: the CPU backend's softmax.cpp). float32 only.
//   forward:  y = exp(x - max) / sum exp(x - max), the max NaN-propagating, the sum in double, the 1 / sum
//             rounded to float and applied as a scale (the CPU's order); a row of all -inf gives NaN.
//   backward: dx = y * (dy - sum_k dy_k y_k), the dot in double; dX may be dY (in place: each element is
//             read before it is written, after the row's dot is complete).
// A warp per row when C <= kWarpRowMax, else a block of kThreads per row.
#include "../../core/softmax_args.h"
#include "engine_common.cuh"

namespace vw::cuda {

namespace {

using namespace eng;

template <int TEAM>
__global__ void __launch_bounds__(kThreads)
    softmax_forward_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t R, int64_t C) {
  int lane;
  int64_t first, step;
  team_coords<TEAM>(lane, first, step);
  for (int64_t r = first; r < R; r += step) {
    const float* xr = x + r * C;
    float m = -INFINITY;
    for (int64_t j = lane; j < C; j += TEAM) m = NanMaxOp{}(m, xr[j]);
    m = team_reduce<TEAM>(m, NanMaxOp{}, -INFINITY);
    double s = 0;
    for (int64_t j = lane; j < C; j += TEAM) s += expf(xr[j] - m);
    s = team_reduce<TEAM>(s, SumOp{}, 0.0);
    const float inv = static_cast<float>(1.0 / s);
    float* yr = y + r * C;
    for (int64_t j = lane; j < C; j += TEAM) yr[j] = inv * expf(xr[j] - m);
  }
}

template <int TEAM>
__global__ void __launch_bounds__(kThreads) softmax_backward_kernel(const float* dy, const float* y, float* dx, int64_t R, int64_t C) {
  int lane;
  int64_t first, step;
  team_coords<TEAM>(lane, first, step);
  for (int64_t r = first; r < R; r += step) {
    const float *dyr = dy + r * C, *yr = y + r * C;
    double dot = 0;
    for (int64_t j = lane; j < C; j += TEAM) dot += static_cast<double>(dyr[j]) * yr[j];
    const float d = static_cast<float>(team_reduce<TEAM>(dot, SumOp{}, 0.0));
    float* dxr = dx + r * C;
    for (int64_t j = lane; j < C; j += TEAM) dxr[j] = yr[j] * (dyr[j] - d);
  }
}

}  // namespace

void softmax_forward_cuda(const OpCall& c) {
  const SoftmaxArgs a = read_softmax(c, false);
  Context& ctx = context(c.op);
  if (a.n == 0) return;
  launch_team_rows(c.op, ctx, a.R, a.C, softmax_forward_kernel<32>, softmax_forward_kernel<kThreads>, a.x, a.out, a.R, a.C);
}

void softmax_backward_cuda(const OpCall& c) {
  const SoftmaxArgs a = read_softmax(c, true);
  Context& ctx = context(c.op);
  if (a.n == 0) return;
  launch_team_rows(c.op, ctx, a.R, a.C, softmax_backward_kernel<32>, softmax_backward_kernel<kThreads>, a.dy, a.y, a.out,
                   a.R, a.C);
}

}  // namespace vw::cuda
