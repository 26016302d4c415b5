// Rotary position embedding on CUDA (semantics: the CPU backend's rope.cpp; HF LLaMA rotate_half pairing
// (j, j + Dh/2), inverse = 1 rotates by -angle). X and Y float32, or both bf16 (autocast's q and k: loaded as
// float, rotated in float, rounded once per store).
//   1. table kernel: cos/sin [T, Dh/2] with the angle (posOffset + t) theta^(-2j/Dh) formed and reduced in
//      double (positions reach ~1e5), stored as float (the CPU's table, to libm rounding);
//   2. rotate kernel: one thread per (row, head, pair); both elements are read before either is written,
//      so Y may be X (in place).
#include "engine_common.cuh"

namespace vw::cuda {

namespace {

using namespace eng;

__global__ void __launch_bounds__(kThreads)
    rope_table_kernel(float2* __restrict__ table, int64_t T, int64_t half, int64_t Dh, int64_t pos0, double theta,
                      double sign) {
  for (int64_t e = global_tid(); e < T * half; e += global_stride()) {
    const int64_t t = e / half, j = e % half;
    const double inv_freq = pow(theta, -2.0 * static_cast<double>(j) / static_cast<double>(Dh));
    const double a = static_cast<double>(pos0 + t) * inv_freq;
    table[e] = make_float2(static_cast<float>(cos(a)), static_cast<float>(sign * sin(a)));
  }
}

template <typename T_>
__global__ void __launch_bounds__(kThreads)
    rope_rotate_kernel(const T_* x, T_* y, const float2* __restrict__ table, int64_t rows, int64_t T, int64_t H,
                       int64_t half) {
  const int64_t per_row = H * half;  // pairs per (b, t) row
  for (int64_t e = global_tid(); e < rows * per_row; e += global_stride()) {
    const int64_t r = e / per_row, rem = e % per_row, h = rem / half, j = rem % half;
    const float2 cs = table[(r % T) * half + j];
    const int64_t base = (r * H + h) * 2 * half;
    const float a = to_float(x[base + j]), b = to_float(x[base + j + half]);
    y[base + j] = from_float<T_>(a * cs.x - b * cs.y);
    y[base + j + half] = from_float<T_>(b * cs.x + a * cs.y);
  }
}

}  // namespace

void rope_cuda(const OpCall& c) {
  const char* op = c.op;
  const int64_t B = size_arg(c, 0, "B"), T = size_arg(c, 1, "T"), H = size_arg(c, 2, "H"), Dh = size_arg(c, 3, "Dh");
  const int64_t pos0 = size_arg(c, 4, "posOffset");
  const bool inverse = flag_arg(c, 5, "inverse");
  const double theta = c.fp(0, "theta");
  if (Dh % 2 != 0) throw_range_error("[", op, "] Dh must be even (rotate_half pairs j with j + Dh/2), got ", Dh);
  if (!(theta > 0) || !std::isfinite(theta)) throw_range_error("[", op, "] theta must be finite and > 0, got ", theta);
  const int64_t n = numel(c, {B, T, H, Dh});
  const DType t = float_type_of(c.in, 0);
  const void* x = c.in_any(0, n, t, "X");
  void* y = c.out_any(0, n, t, "Y");
  Context& ctx = context(op);
  if (n == 0) return;
  const int64_t half = Dh / 2;
  DeviceBuffer table(op, ctx, sizeof(float2) * static_cast<size_t>(T * half), nullptr);
  launch(op, ctx, grid_for(ctx, T * half), kThreads, 0, rope_table_kernel, table.as<float2>(), T, half, Dh, pos0, theta,
         inverse ? -1.0 : 1.0);
  dispatch_float(t, [&](auto tag) {
    using T_ = typename decltype(tag)::type;
    launch(op, ctx, grid_for(ctx, n / 2), kThreads, 0, rope_rotate_kernel<T_>, static_cast<const T_*>(x), static_cast<T_*>(y),
           table.as<float2>(), B * T, T, H, half);
  });
}

}  // namespace vw::cuda
