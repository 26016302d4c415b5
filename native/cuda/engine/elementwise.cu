// Element-wise engine ops on CUDA (semantics: the CPU backend's activation.cpp and elementwise.cpp):
//   activation_forward/backward (the kinds of native/core/activation.h), swiglu_forward/
//   backward, axpby, mul: float32 or bfloat16 (every buffer of a call the same dtype; fp32 arithmetic with
//   the CPU's formulas: erfc for gelu, a sigmoid and its complement from exp(-|z|));
//   dropout: float32 or bfloat16 (X and Y one dtype); mul_scalar, add_broadcast, fill, copy_2d: float32;
//   checks_failed: the error-flag slots claimed so far, read by one block;
//   cast: float32 <-> bfloat16 either way (or a copy), rounding once (__float2bfloat16_rn, as the CPU's
//   native/core/bf16.h).
// All are grid-stride passes with 64-bit indices, the n-element ones with several loads in flight per thread
// (ilp_pass, engine_common.cuh); outputs may alias their inputs element for element.
#include <type_traits>
#include <utility>

#include "../../core/activation.h"
#include "../../core/cast_args.h"
#include "../../core/dropout.h"
#include "../../core/rows_args.h"
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

// store(i, value) writing float `value` to y[i] as T.
template <typename T>
struct StoreTo {
  T* y;
  __device__ __forceinline__ void operator()(int64_t i, float v) const { y[i] = from_float<T>(v); }
};

template <ActivationKind K, typename T>
__global__ void __launch_bounds__(kThreads) act_forward_kernel(const T* x, T* y, int64_t n) {
  ilp_pass<float>(n, [=](int64_t i) {
    const float v = to_float(x[i]);
    if constexpr (K == kGeluErf)
      return v * 0.5f * erfcf(-v * kSqrt1_2);
    else
      return v * sigmoid(sig_arg<K>(v));
  }, StoreTo<T>{y});
}

template <ActivationKind K, typename T>
__global__ void __launch_bounds__(kThreads) act_backward_kernel(const T* dy, const T* x, T* dx, int64_t n) {
  ilp_pass<float>(n, [=](int64_t i) {
    const float v = to_float(x[i]), d = to_float(dy[i]);
    if constexpr (K == kGeluErf) {
      const float cdf = 0.5f * erfcf(-v * kSqrt1_2), pdf = kInvSqrt2Pi * expf(-0.5f * v * v);
      return d * (cdf + v * pdf);
    } else {
      float s, sc;
      sigmoid_pair(sig_arg<K>(v), s, sc);
      return d * (s + v * s * sc * sig_arg_grad<K>(v));
    }
  }, StoreTo<T>{dx});
}

template <typename T>
__global__ void __launch_bounds__(kThreads) swiglu_forward_kernel(const T* gate, const T* up, T* y, int64_t n) {
  ilp_pass<float>(n, [=](int64_t i) {
    const float g = to_float(gate[i]);
    return g * sigmoid(g) * to_float(up[i]);
  }, StoreTo<T>{y});
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    swiglu_backward_kernel(const T* dy, const T* gate, const T* up, T* dgate, T* dup, int64_t n) {
  ilp_pass<float2>(n, [=](int64_t i) {
    const float g = to_float(gate[i]), u = to_float(up[i]), d = to_float(dy[i]);
    float s, sc;
    sigmoid_pair(g, s, sc);
    return make_float2(d * u * (s + g * s * sc), d * g * s);
  }, [=](int64_t i, float2 r) {
    dgate[i] = from_float<T>(r.x);
    dup[i] = from_float<T>(r.y);
  });
}

// mode 0: a X + b Y; 1: a X (b = 0: Y not read); 2: b Y (a = 0: X not read).
template <typename T>
__global__ void __launch_bounds__(kThreads) axpby_kernel(const T* x, const T* y, T* z, int64_t n, float a, float b, int mode) {
  ilp_pass<float>(n, [=](int64_t i) {
    if (mode == 1) return a * to_float(x[i]);
    if (mode == 2) return b * to_float(y[i]);
    return a * to_float(x[i]) + b * to_float(y[i]);
  }, StoreTo<T>{z});
}

template <typename T>
__global__ void __launch_bounds__(kThreads) mul_kernel(const T* x, const T* y, T* z, int64_t n) {
  ilp_pass<float>(n, [=](int64_t i) { return to_float(x[i]) * to_float(y[i]); }, StoreTo<T>{z});
}

__global__ void __launch_bounds__(kThreads) add_broadcast_kernel(const float* x, const float* __restrict__ y, float* z, int64_t total, int64_t n) {
  ilp_pass<float>(total, [=](int64_t i) { return x[i] + y[i % n]; }, StoreTo<float>{z});
}

__global__ void __launch_bounds__(kThreads) fill_kernel(float* __restrict__ x, int64_t n, float v) {
  ilp_pass<float>(n, [=](int64_t) { return v; }, StoreTo<float>{x});
}

// flag = 1 when any of the `used` claimed slots holds a failure (or the host already knows of one), else 0.
__global__ void checks_failed_kernel(const FlagSlot* __restrict__ slots, int used, bool host_failed, float* flag) {
  bool failed = host_failed;
  for (int k = threadIdx.x; k < used && !failed; k += blockDim.x) failed = slots[k].first != kNoFailure;
  failed = __syncthreads_or(failed);
  if (threadIdx.x == 0) *flag = failed ? 1.0f : 0.0f;
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

// The frame of the n-element ops: inputs 0.. and outputs 0.. named in_names / out_names, n elements each, all
// of the float type of input 0; then, unless n = 0, the grid-stride pass kernel(inputs..., outputs..., n,
// extra...), kernel_of(Tag<T>) naming the kernel instance for that type.
template <size_t NI, size_t NO, typename KernelOf, size_t... I, size_t... O, typename... X>
void elementwise_pass(const OpCall& c, int64_t n, const char* const (&in_names)[NI], const char* const (&out_names)[NO],
                      KernelOf kernel_of, std::index_sequence<I...>, std::index_sequence<O...>, X... extra) {
  const char* op = c.op;
  const DType t = float_type_of(c.in, 0);
  const void* in[NI];
  void* out[NO];
  for (size_t k = 0; k < NI; ++k) in[k] = c.in_any(k, n, t, in_names[k]);
  for (size_t k = 0; k < NO; ++k) out[k] = c.out_any(k, n, t, out_names[k]);
  Context& ctx = context(op);
  if (n == 0) return;
  dispatch_float(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch(op, ctx, ilp_grid(ctx, n), kThreads, 0, kernel_of(tag), static_cast<const T*>(in[I])..., static_cast<T*>(out[O])...,
           n, extra...);
  });
}

template <size_t NI, size_t NO, typename KernelOf, typename... X>
void elementwise_op(const OpCall& c, int64_t n, const char* const (&in_names)[NI], const char* const (&out_names)[NO],
                    KernelOf kernel_of, X... extra) {
  elementwise_pass(c, n, in_names, out_names, kernel_of, std::make_index_sequence<NI>{}, std::make_index_sequence<NO>{},
                   extra...);
}

// The factor is read by every thread from device memory: the host never waits for it.
__global__ void __launch_bounds__(kThreads)
    mul_scalar_kernel(const float* __restrict__ x, const float* __restrict__ s, float* __restrict__ z, int64_t n) {
  const float f = *s;
  ilp_pass<float>(n, [=](int64_t i) { return x[i] * f; }, StoreTo<float>{z});
}

// The mask from (seed, index) alone, the CPU's bits (native/core/dropout.h).
template <typename T>
__global__ void __launch_bounds__(kThreads) dropout_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n,
                                                          uint64_t seed, uint32_t threshold, float scale) {
  ilp_pass<float>(n, [=](int64_t i) {
    return dropout_keep(seed, static_cast<uint64_t>(i), threshold) ? to_float(x[i]) * scale : 0.f;
  }, StoreTo<T>{y});
}

template <typename TX, typename TY>
__global__ void __launch_bounds__(kThreads) cast_kernel(const TX* __restrict__ x, TY* __restrict__ y, int64_t n) {
  ilp_pass<float>(n, [=](int64_t i) { return to_float(x[i]); }, StoreTo<TY>{y});
}

}  // namespace

void activation_forward_cuda(const OpCall& c) {
  const int64_t n = size_arg(c, 0, "n");
  dispatch_kind(activation_kind_arg(c, 1), [&](auto k) {
    elementwise_op(c, n, {"X"}, {"Y"},
                   [](auto tag) { return act_forward_kernel<decltype(k)::value, typename decltype(tag)::type>; });
  });
}

void activation_backward_cuda(const OpCall& c) {
  const int64_t n = size_arg(c, 0, "n");
  dispatch_kind(activation_kind_arg(c, 1), [&](auto k) {
    elementwise_op(c, n, {"dY", "X"}, {"dX"},
                   [](auto tag) { return act_backward_kernel<decltype(k)::value, typename decltype(tag)::type>; });
  });
}

void swiglu_forward_cuda(const OpCall& c) {
  elementwise_op(c, size_arg(c, 0, "n"), {"gate", "up"}, {"Y"},
                 [](auto tag) { return swiglu_forward_kernel<typename decltype(tag)::type>; });
}

void swiglu_backward_cuda(const OpCall& c) {
  elementwise_op(c, size_arg(c, 0, "n"), {"dY", "gate", "up"}, {"dgate", "dup"},
                 [](auto tag) { return swiglu_backward_kernel<typename decltype(tag)::type>; });
}

void axpby_cuda(const OpCall& c) {
  const int64_t n = size_arg(c, 0, "n");
  const float a = static_cast<float>(c.fp(0, "a")), b = static_cast<float>(c.fp(1, "b"));
  const int mode = b == 0.f ? 1 : a == 0.f ? 2 : 0;
  elementwise_op(c, n, {"X", "Y"}, {"Z"}, [](auto tag) { return axpby_kernel<typename decltype(tag)::type>; }, a, b, mode);
}

void mul_cuda(const OpCall& c) {
  elementwise_op(c, size_arg(c, 0, "n"), {"X", "Y"}, {"Z"}, [](auto tag) { return mul_kernel<typename decltype(tag)::type>; });
}

void mul_scalar_cuda(const OpCall& c) {
  const char* op = c.op;
  const int64_t n = size_arg(c, 0, "n");
  const float* x = c.in_f32(0, n, "X");
  const float* s = c.in_f32(1, 1, "s");
  float* z = c.out_f32(0, n, "Z");
  Context& ctx = context(op);
  if (n == 0) return;
  launch(op, ctx, ilp_grid(ctx, n), kThreads, 0, mul_scalar_kernel, x, s, z, n);
}

void dropout_cuda(const OpCall& c) {
  const char* op = c.op;
  const DropoutArgs a = read_dropout(c);
  Context& ctx = context(op);
  if (a.n == 0) return;
  dispatch_float(a.t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch(op, ctx, ilp_grid(ctx, a.n), kThreads, 0, dropout_kernel<T>, static_cast<const T*>(a.x), static_cast<T*>(a.y), a.n,
           a.seed, a.threshold, a.scale);
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
  launch(op, ctx, ilp_grid(ctx, total), kThreads, 0, add_broadcast_kernel, x, y, z, total, n);
}

void fill_cuda(const OpCall& c) {
  const char* op = c.op;
  const int64_t n = size_arg(c, 0, "n");
  const float v = static_cast<float>(c.fp(0, "value"));
  float* x = c.out_f32(0, n, "X");
  Context& ctx = context(op);
  if (n == 0) return;
  launch(op, ctx, ilp_grid(ctx, n), kThreads, 0, fill_kernel, x, n, v);
}

void checks_failed_cuda(const OpCall& c) {
  const char* op = c.op;
  float* flag = read_checks_failed(c);
  Context& ctx = context(op);
  // read in stream order, after the kernels that write the claimed slots; a graph capture bakes `used`, which each
  // launch claims again (program.cc), and captures only when no host-known result is pending
  const ErrorFlags& flags = error_flags();
  launch(op, ctx, 1, 256, 0, checks_failed_kernel, ctx.flag_slots, flags.slots_used(), flags.host_failure_pending(), flag);
}

void copy_2d_cuda(const OpCall& c) {
  const char* op = c.op;
  const Copy2dArgs a = read_copy_2d(c);
  Context& ctx = context(op);
  if (a.empty) return;
  launch(op, ctx, grid_for(ctx, numel(c, {a.rows, a.cols})), kThreads, 0, copy_2d_kernel, a.src + a.s_off, a.dst + a.d_off,
         a.rows, a.cols, a.s_stride, a.d_stride, a.acc);
}

void cast_cuda(const OpCall& c) {
  const char* op = c.op;
  const CastArgs a = read_cast(c);
  Context& ctx = context(op);
  if (a.n == 0) return;
  if (a.tx == a.ty) {
    if (a.x != a.y) CUDA_CHECK(op, cudaMemcpyAsync(a.y, a.x, static_cast<size_t>(a.n) * dtype_size(a.tx), cudaMemcpyDeviceToDevice, ctx.stream));
    return;
  }
  dispatch_float(a.tx, [&](auto xtag) {
    using TX = typename decltype(xtag)::type;
    dispatch_float(a.ty, [&](auto ytag) {
      using TY = typename decltype(ytag)::type;
      launch(op, ctx, ilp_grid(ctx, a.n), kThreads, 0, cast_kernel<TX, TY>, static_cast<const TX*>(a.x), static_cast<TY*>(a.y), a.n);
    });
  });
}

}  // namespace vw::cuda
