// Element-wise activations (n elements, float32 or bf16 widened; kinds: native/core/activation.h) and SwiGLU.
//   kind 0 gelu (erf):   y = x Phi(x),  Phi(x) = (1 + erf(x / sqrt 2)) / 2   (computed as erfc(-x/sqrt 2) / 2,
//                        which keeps its relative precision for negative x)
//   kind 1 gelu (tanh):  y = x (1 + tanh(u)) / 2,  u = sqrt(2/pi) (x + 0.044715 x^3)   (PyTorch 'tanh')
//                           = x sigmoid(2u)  (the identity (1 + tanh u) / 2 = sigmoid(2u) avoids the
//                        cancellation of 1 + tanh u for negative x)
//   kind 2 quick_gelu:   y = x sigmoid(1.702 x)   (CLIP)
//   kind 3 silu:         y = x sigmoid(x)
//   swiglu:              y = silu(gate) * up
// Backward from X (not Y), with s = sigmoid(z) and s' = s (1 - s):
//   gelu erf:  dy/dx = Phi(x) + x phi(x),  phi(x) = exp(-x^2/2) / sqrt(2 pi)
//   x sigmoid(a(x)):  dy/dx = s + x s (1 - s) a'(x);  a = 2u: a' = 2 sqrt(2/pi) (1 + 3 * 0.044715 x^2);
//                     quick_gelu a' = 1.702; silu a' = 1
//   swiglu:    dgate = dy up (s + gate s (1 - s)),  dup = dy gate s   (s = sigmoid(gate))
// Outputs may alias their inputs element for element (in place).
#include <cmath>
#include <cstring>

#include "../core/activation.h"
#include "float32_view.h"
#include "ops_cpu.h"
#include "work_split.h"
#include "isa.h"
#include "parallel.h"

namespace vw::cpu {

namespace {

// exp(x) for x <= 0, branch-free so the loops around it vectorise (same construction as fast_exp in
// vec_kernels.inc): 2^k p(r), r = x - k ln2 in [-ln2/2, ln2/2], degree-7 Taylor polynomial (~1 ulp);
// exactly 0 below -87.3.
inline float exp_nonpos(float x) {
  const float xc = x < -87.3f ? -87.3f : x;
  const float k = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  const float r = (xc - k * 0.693359375f) + k * 2.12194440e-4f;                // ln2 split in two parts
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // k is in [-126, 0] for every x but NaN (k NaN, whose conversion to an integer is undefined): -127 there, as in
  // fast_exp (scale 0; p is NaN, and so is the result)
  const float kb = k > -127.0f ? k : -127.0f;
  const int32_t bits = (static_cast<int32_t>(kb) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale * static_cast<float>(x >= -87.3f);
}

// sigmoid(z) from e = exp(-|z|) <= 1: no overflow, exactly 0 / 1 far out, full relative precision on
// both sides.
inline float sigmoid(float z) {
  const float e = exp_nonpos(-std::fabs(z));
  const float inv = 1.0f / (1.0f + e);
  return z >= 0.f ? inv : e * inv;
}

// s = sigmoid(z) and its complement 1 - s = sigmoid(-z), each to full relative precision (1 - s formed
// by subtraction would keep only the absolute precision of s, which the backward's s (1 - s) needs).
inline void sigmoid_pair(float z, float& s, float& sc) {
  const float e = exp_nonpos(-std::fabs(z));
  const float inv = 1.0f / (1.0f + e);
  s = z >= 0.f ? inv : e * inv;
  sc = z >= 0.f ? e * inv : inv;
}

constexpr float kSqrt1_2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
constexpr float kGeluK = 0.79788456080286536f;  // sqrt(2/pi)
constexpr float kGeluC = 0.044715f;
constexpr float kQuick = 1.702f;

// Argument a(x) of the sigmoid of the x sigmoid(a(x)) kinds, and its derivative.
template <int K>
inline float sig_arg(float x) {
  if constexpr (K == kGeluTanh) return 2.f * kGeluK * (x + kGeluC * x * x * x);
  if constexpr (K == kQuickGelu) return kQuick * x;
  return x;
}
template <int K>
inline float sig_arg_grad(float x) {
  if constexpr (K == kGeluTanh) return 2.f * kGeluK * (1.f + 3.f * kGeluC * x * x);
  if constexpr (K == kQuickGelu) return kQuick;
  return 1.f;
}

// The sigmoid-form loops, written once and compiled for the baseline ISA and for AVX2+FMA (isa.h).
template <int K>
inline void act_forward_rows(const float* x, float* y, int64_t i0, int64_t i1) {
#pragma omp simd
  for (int64_t i = i0; i < i1; ++i) y[i] = x[i] * sigmoid(sig_arg<K>(x[i]));
}
template <int K>
inline void act_backward_rows(const float* dy, const float* x, float* dx, int64_t i0, int64_t i1) {
#pragma omp simd
  for (int64_t i = i0; i < i1; ++i) {
    const float v = x[i];
    float s, sc;
    sigmoid_pair(sig_arg<K>(v), s, sc);
    dx[i] = dy[i] * (s + v * s * sc * sig_arg_grad<K>(v));
  }
}
template <int K>
VW_TARGET_AVX2 void act_forward_rows_avx2(const float* x, float* y, int64_t i0, int64_t i1) { act_forward_rows<K>(x, y, i0, i1); }
template <int K>
VW_TARGET_AVX2 void act_backward_rows_avx2(const float* dy, const float* x, float* dx, int64_t i0, int64_t i1) { act_backward_rows<K>(dy, x, dx, i0, i1); }

template <int K>
void act_forward(const float* x, float* y, int64_t n) {
  const bool avx2 = vw_use_avx2();
  parallel_for(n, kElemGrain, [&](int64_t i0, int64_t i1) {
    if constexpr (K == kGeluErf) {
      for (int64_t i = i0; i < i1; ++i) y[i] = x[i] * 0.5f * std::erfc(-x[i] * kSqrt1_2);  // libm call: scalar
    } else {
      if (avx2) act_forward_rows_avx2<K>(x, y, i0, i1);
      else act_forward_rows<K>(x, y, i0, i1);
    }
  });
}

template <int K>
void act_backward(const float* dy, const float* x, float* dx, int64_t n) {
  const bool avx2 = vw_use_avx2();
  parallel_for(n, kElemGrain, [&](int64_t i0, int64_t i1) {
    if constexpr (K == kGeluErf) {
      for (int64_t i = i0; i < i1; ++i) {
        const float v = x[i];
        const float cdf = 0.5f * std::erfc(-v * kSqrt1_2), pdf = kInvSqrt2Pi * exp_nonpos(-0.5f * v * v);
        dx[i] = dy[i] * (cdf + v * pdf);
      }
    } else {
      if (avx2) act_backward_rows_avx2<K>(dy, x, dx, i0, i1);
      else act_backward_rows<K>(dy, x, dx, i0, i1);
    }
  });
}

inline void swiglu_forward_rows(const float* gate, const float* up, float* y, int64_t i0, int64_t i1) {
#pragma omp simd
  for (int64_t i = i0; i < i1; ++i) y[i] = gate[i] * sigmoid(gate[i]) * up[i];
}
inline void swiglu_backward_rows(const float* dy, const float* gate, const float* up, float* dgate, float* dup, int64_t i0, int64_t i1) {
#pragma omp simd
  for (int64_t i = i0; i < i1; ++i) {
    const float g = gate[i], u = up[i], d = dy[i];
    float s, sc;
    sigmoid_pair(g, s, sc);
    dgate[i] = d * u * (s + g * s * sc);
    dup[i] = d * g * s;
  }
}
VW_TARGET_AVX2 void swiglu_forward_rows_avx2(const float* gate, const float* up, float* y, int64_t i0, int64_t i1) { swiglu_forward_rows(gate, up, y, i0, i1); }
VW_TARGET_AVX2 void swiglu_backward_rows_avx2(const float* dy, const float* gate, const float* up, float* dgate, float* dup, int64_t i0, int64_t i1) {
  swiglu_backward_rows(dy, gate, up, dgate, dup, i0, i1);
}

// The float32 kernels; the ops below take bf16 too (the CUDA kernels' dtypes) by widening (float32_view.h).
void activation_forward_f32(const OpCall& c) {
  const int64_t n = size_arg(c, 0, "n");
  const ActivationKind kind = activation_kind_arg(c, 1);
  const float* x = c.in_f32(0, n, "X");
  float* y = c.out_f32(0, n, "Y");
  switch (kind) {
    case kGeluErf: act_forward<kGeluErf>(x, y, n); break;
    case kGeluTanh: act_forward<kGeluTanh>(x, y, n); break;
    case kQuickGelu: act_forward<kQuickGelu>(x, y, n); break;
    default: act_forward<kSilu>(x, y, n); break;
  }
}

void activation_backward_f32(const OpCall& c) {
  const int64_t n = size_arg(c, 0, "n");
  const ActivationKind kind = activation_kind_arg(c, 1);
  const float* dy = c.in_f32(0, n, "dY");
  const float* x = c.in_f32(1, n, "X");
  float* dx = c.out_f32(0, n, "dX");
  switch (kind) {
    case kGeluErf: act_backward<kGeluErf>(dy, x, dx, n); break;
    case kGeluTanh: act_backward<kGeluTanh>(dy, x, dx, n); break;
    case kQuickGelu: act_backward<kQuickGelu>(dy, x, dx, n); break;
    default: act_backward<kSilu>(dy, x, dx, n); break;
  }
}

void swiglu_forward_f32(const OpCall& c) {
  const int64_t n = size_arg(c, 0, "n");
  const float* gate = c.in_f32(0, n, "gate");
  const float* up = c.in_f32(1, n, "up");
  float* y = c.out_f32(0, n, "Y");
  const bool avx2 = vw_use_avx2();
  parallel_for(n, kElemGrain, [&](int64_t i0, int64_t i1) {
    if (avx2) swiglu_forward_rows_avx2(gate, up, y, i0, i1);
    else swiglu_forward_rows(gate, up, y, i0, i1);
  });
}

void swiglu_backward_f32(const OpCall& c) {
  const int64_t n = size_arg(c, 0, "n");
  const float* dy = c.in_f32(0, n, "dY");
  const float* gate = c.in_f32(1, n, "gate");
  const float* up = c.in_f32(2, n, "up");
  float* dgate = c.out_f32(0, n, "dgate");
  float* dup = c.out_f32(1, n, "dup");
  const bool avx2 = vw_use_avx2();
  parallel_for(n, kElemGrain, [&](int64_t i0, int64_t i1) {
    if (avx2) swiglu_backward_rows_avx2(dy, gate, up, dgate, dup, i0, i1);
    else swiglu_backward_rows(dy, gate, up, dgate, dup, i0, i1);
  });
}

}  // namespace

void activation_forward_cpu(const OpCall& c) {
  same_type_in_float32(c, size_arg(c, 0, "n"), {"X"}, {"Y"}, activation_forward_f32);
}

void activation_backward_cpu(const OpCall& c) {
  same_type_in_float32(c, size_arg(c, 0, "n"), {"dY", "X"}, {"dX"}, activation_backward_f32);
}

void swiglu_forward_cpu(const OpCall& c) {
  same_type_in_float32(c, size_arg(c, 0, "n"), {"gate", "up"}, {"Y"}, swiglu_forward_f32);
}

void swiglu_backward_cpu(const OpCall& c) {
  same_type_in_float32(c, size_arg(c, 0, "n"), {"dY", "gate", "up"}, {"dgate", "dup"}, swiglu_backward_f32);
}

}  // namespace vw::cpu
