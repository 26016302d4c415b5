// Element-wise engine ops on CUDA (semantics: the CPU backend's activation.cpp and elementwise.cpp):
//   activation_forward/backward (the kinds of native/core/activation.h), swiglu_forward/
//   backward, axpby, mul: float32 or bfloat16 (every buffer of a call the same dtype; fp32 arithmetic with
//   the CPU's formulas: erfc for gelu, a sigmoid and its complement from exp(-|z|));
//   add_broadcast, fill, copy_2d: float32.
// All are grid-stride passes with 64-bit indices; outputs may alias their inputs element for element.
#include <type_traits>

#include "../../core/activation.h"
#include "engine_common.cuh"

namespace vw::cuda {

namespace {

using namespace eng;

constexpr float kSqrt1_2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
constexpr float kGeluK = 0.79788456080286536f;  // sqrt(2/pi)
constexpr float kGeluC = 0.044715f;
constexpr float kQuick = 1.702f;

// sigmoid(z) and 1 - sigmoid(z) = sigmoid(-z), each to full relative precision (no overflow: e <= 1).
__device__ __forceinline__ void sigmoid_pair(float z, float& s, float& sc) {
  const float e = expf(-fabsf(z));
  const float inv = 1.0f / (1.0f + e);
  s = z >= 0.f ? inv : e * inv;
  sc = z >= 0.f ? e * inv : inv;
}
__device__ __forceinline__ float sigmoid(float z) {
  float s, sc;
  sigmoid_pair(z, s, sc);
  return s;
}

template <ActivationKind K>
__device__ __forceinline__ float sig_arg(float x) {
  if constexpr (K == kGeluTanh) return 2.f * kGeluK * (x + kGeluC * x * x * x);
  if constexpr (K == kQuickGelu) return kQuick * x;
  return x;
}
template <ActivationKind K>
__device__ __forceinline__ float sig_arg_grad(float x) {
  if constexpr (K == kGeluTanh) return 2.f * kGeluK * (1.f + 3.f * kGeluC * x * x);
  if constexpr (K == kQuickGelu) return kQuick;
  (void)x;
  return 1.f;
}

template <ActivationKind K, typename T>
__global__ void __launch_bounds__(kThreads) act_forward_kernel(const T* x, T* y, int64_t n) {
  for (int64_t i = global_tid(); i < n; i += global_stride()) {
    const float v = to_float(x[i]);
    float r;
    if constexpr (K == kGeluErf)
      r = v * 0.5f * erfcf(-v * kSqrt1_2);
    else
      r = v * sigmoid(sig_arg<K>(v));
    y[i] = from_float<T>(r);
  }
}

template <ActivationKind K, typename T>
__global__ void __launch_bounds__(kThreads) act_backward_kernel(const T* dy, const T* x, T* dx, int64_t n) {
  for (int64_t i = global_tid(); i < n; i += global_stride()) {
    const float v = to_float(x[i]), d = to_float(dy[i]);
    float r;
    if constexpr (K == kGeluErf) {
      const float cdf = 0.5f * erfcf(-v * kSqrt1_2), pdf = kInvSqrt2Pi * expf(-0.5f * v * v);
      r = d * (cdf + v * pdf);
    } else {
      float s, sc;
      sigmoid_pair(sig_arg<K>(v), s, sc);
      r = d * (s + v * s * sc * sig_arg_grad<K>(v));
    }
    dx[i] = from_float<T>(r);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) swiglu_forward_kernel(const T* gate, const T* up, T* y, int64_t n) {
  for (int64_t i = global_tid(); i < n; i += global_stride()) {
    const float g = to_float(gate[i]);
    y[i] = from_float<T>(g * sigmoid(g) * to_float(up[i]));
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    swiglu_backward_kernel(const T* dy, const T* gate, const T* up, T* dgate, T* dup, int64_t n) {
  for (int64_t i = global_tid(); i < n; i += global_stride()) {
    const float g = to_float(gate[i]), u = to_float(up[i]), d = to_float(dy[i]);
    float s, sc;
    sigmoid_pair(g, s, sc);
    dgate[i] = from_float<T>(d * u * (s + g * s * sc));
    dup[i] = from_float<T>(d * g * s);
  }
}

// mode 0: a X + b Y; 1: a X (b = 0: Y not read); 2: b Y (a = 0: X not read).
template <typename T>
__global__ void __launch_bounds__(kThreads) axpby_kernel(const T* x, const T* y, T* z, int64_t n, float a, float b, int mode) {
  for (int64_t i = global_tid(); i < n; i += global_stride()) {
    float r;
    if (mode == 1)
      r = a * to_float(x[i]);
    else if (mode == 2)
      r = b * to_float(y[i]);
    else
      r = a * to_float(x[i]) + b * to_float(y[i]);
    z[i] = from_float<T>(r);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) mul_kernel(const T* x, const T* y, T* z, int64_t n) {
  for (int64_t i = global_tid(); i < n; i += global_stride()) z[i] = from_float<T>(to_float(x[i]) * to_float(y[i]));
}

__global__ void __launch_bounds__(kThreads) add_broadcast_kernel(const float* x, const float* __restrict__ y, float* z, int64_t total, int64_t n) {
  for (int64_t i = global_tid(); i < total; i += global_stride()) z[i] = x[i] + y[i % n];
}

__global__ void __launch_bounds__(kThreads) fill_kernel(float* __restrict__ x, int64_t n, float v) {
  for (int64_t i = global_tid(); i < n; i += global_stride()) x[i] = v;
}

// dst[dOff + r dStride + j] (=|+=) src[sOff + r sStride + j]; element-wise, so dst may be src (same region).
__global__ void __launch_bounds__(kThreads) copy_2d_kernel(const float* src, float* dst, int64_t rows, int64_t cols,
                                                            int64_t s_stride, int64_t d_stride, bool acc) {
  for (int64_t e = global_tid(); e < rows * cols; e += global_stride()) {
    const int64_t r = e / cols, j = e % cols;
    const float v = src[r * s_stride + j];
    float* d = dst + r * d_stride + j;
    *d = acc ? *d + v : v;
  }
}

// f(std::integral_constant<ActivationKind, kind>{}).
template <typename F>
void dispatch_kind(ActivationKind kind, F&& f) {
  switch (kind) {
    case kGeluErf: f(std::integral_constant<ActivationKind, kGeluErf>{}); break;
    case kGeluTanh: f(std::integral_constant<ActivationKind, kGeluTanh>{}); break;
    case kQuickGelu: f(std::integral_constant<ActivationKind, kQuickGelu>{}); break;
    case kSilu: f(std::integral_constant<ActivationKind, kSilu>{}); break;
  }
}

}  // namespace

void activation_forward_cuda(const OpCall& c) {
  const char* op = c.op;
  const int64_t n = size_arg(c, 0, "n");
  const ActivationKind kind = activation_kind_arg(c, 1);
  const DType t = float_type_of(c.in, 0);
  const void* x = c.in_any(0, n, t, "X");
  void* y = c.out_any(0, n, t, "Y");
  Context& ctx = context(op);
  if (n == 0) return;
  dispatch_float(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_kind(kind, [&](auto k) {
      launch(op, ctx, grid_for(ctx, n), kThreads, 0, act_forward_kernel<decltype(k)::value, T>,
             static_cast<const T*>(x), static_cast<T*>(y), n);
    });
  });
}

void activation_backward_cuda(const OpCall& c) {
  const char* op = c.op;
  const int64_t n = size_arg(c, 0, "n");
  const ActivationKind kind = activation_kind_arg(c, 1);
  const DType t = float_type_of(c.in, 0);
  const void* dy = c.in_any(0, n, t, "dY");
  const void* x = c.in_any(1, n, t, "X");
  void* dx = c.out_any(0, n, t, "dX");
  Context& ctx = context(op);
  if (n == 0) return;
  dispatch_float(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_kind(kind, [&](auto k) {
      launch(op, ctx, grid_for(ctx, n), kThreads, 0, act_backward_kernel<decltype(k)::value, T>,
             static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<T*>(dx), n);
    });
  });
}

void swiglu_forward_cuda(const OpCall& c) {
  const char* op = c.op;
  const int64_t n = size_arg(c, 0, "n");
  const DType t = float_type_of(c.in, 0);
  const void* gate = c.in_any(0, n, t, "gate");
  const void* up = c.in_any(1, n, t, "up");
  void* y = c.out_any(0, n, t, "Y");
  Context& ctx = context(op);
  if (n == 0) return;
  dispatch_float(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch(op, ctx, grid_for(ctx, n), kThreads, 0, swiglu_forward_kernel<T>, static_cast<const T*>(gate),
           static_cast<const T*>(up), static_cast<T*>(y), n);
  });
}

void swiglu_backward_cuda(const OpCall& c) {
  const char* op = c.op;
  const int64_t n = size_arg(c, 0, "n");
  const DType t = float_type_of(c.in, 0);
  const void* dy = c.in_any(0, n, t, "dY");
  const void* gate = c.in_any(1, n, t, "gate");
  const void* up = c.in_any(2, n, t, "up");
  void* dgate = c.out_any(0, n, t, "dgate");
  void* dup = c.out_any(1, n, t, "dup");
  Context& ctx = context(op);
  if (n == 0) return;
  dispatch_float(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch(op, ctx, grid_for(ctx, n), kThreads, 0, swiglu_backward_kernel<T>, static_cast<const T*>(dy),
           static_cast<const T*>(gate), static_cast<const T*>(up), static_cast<T*>(dgate), static_cast<T*>(dup), n);
  });
}

void axpby_cuda(const OpCall& c) {
  const char* op = c.op;
  const int64_t n = size_arg(c, 0, "n");
  const float a = static_cast<float>(c.fp(0, "a")), b = static_cast<float>(c.fp(1, "b"));
  const DType t = float_type_of(c.in, 0);
  const void* x = c.in_any(0, n, t, "X");
  const void* y = c.in_any(1, n, t, "Y");
  void* z = c.out_any(0, n, t, "Z");
  Context& ctx = context(op);
  if (n == 0) return;
  const int mode = b == 0.f ? 1 : a == 0.f ? 2 : 0;
  dispatch_float(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch(op, ctx, grid_for(ctx, n), kThreads, 0, axpby_kernel<T>, static_cast<const T*>(x), static_cast<const T*>(y),
           static_cast<T*>(z), n, a, b, mode);
  });
}

void mul_cuda(const OpCall& c) {
  const char* op = c.op;
  const int64_t n = size_arg(c, 0, "n");
  const DType t = float_type_of(c.in, 0);
  const void* x = c.in_any(0, n, t, "X");
  const void* y = c.in_any(1, n, t, "Y");
  void* z = c.out_any(0, n, t, "Z");
  Context& ctx = context(op);
  if (n == 0) return;
  dispatch_float(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch(op, ctx, grid_for(ctx, n), kThreads, 0, mul_kernel<T>, static_cast<const T*>(x), static_cast<const T*>(y),
           static_cast<T*>(z), n);
  });
}

void add_broadcast_cuda(const OpCall& c) {
  const char* op = c.op;
  const int64_t B = size_arg(c, 0, "B"), n = size_arg(c, 1, "n");
  const int64_t total = numel(c, {B, n});
  const float* x = c.in_f32(0, total, "X");
  const float* y = c.in_f32(1, n, "y");
  float* z = c.out_f32(0, total, "Z");
  Context& ctx = context(op);
  if (total == 0) return;
  launch(op, ctx, grid_for(ctx, total), kThreads, 0, add_broadcast_kernel, x, y, z, total, n);
}

void fill_cuda(const OpCall& c) {
  const char* op = c.op;
  const int64_t n = size_arg(c, 0, "n");
  const float v = static_cast<float>(c.fp(0, "value"));
  float* x = c.out_f32(0, n, "X");
  Context& ctx = context(op);
  if (n == 0) return;
  launch(op, ctx, grid_for(ctx, n), kThreads, 0, fill_kernel, x, n, v);
}

void copy_2d_cuda(const OpCall& c) {
  const char* op = c.op;
  const int64_t rows = size_arg(c, 0, "rows"), cols = size_arg(c, 1, "cols");
  const int64_t s_stride = size_arg(c, 2, "srcStride"), d_stride = size_arg(c, 3, "dstStride");
  const int64_t s_off = size_arg(c, 4, "srcOffset"), d_off = size_arg(c, 5, "dstOffset");
  const bool acc = flag_arg(c, 6, "accumulate");
  if (rows > 1 && d_stride < cols)
    throw_range_error("[", op, "] dstStride (", d_stride, ") must be >= cols (", cols, ") when rows > 1: destination rows would overlap");
  const bool empty = rows == 0 || cols == 0;
  auto extent = [&](int64_t off, int64_t stride) {
    return empty ? 0 : add_elems(c, add_elems(c, off, numel(c, {rows - 1, stride})), cols);
  };
  const float* src = c.in_f32(0, extent(s_off, s_stride), "src");
  float* dst = c.out_f32(0, extent(d_off, d_stride), "dst");
  Context& ctx = context(op);
  if (empty) return;
  launch(op, ctx, grid_for(ctx, numel(c, {rows, cols})), kThreads, 0, copy_2d_kernel, src + s_off, dst + d_off, rows,
         cols, s_stride, d_stride, acc);
}

}  // namespace vw::cuda
