#include "vec.h"

#include <cmath>
#include <cstring>
#include <limits>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VW_MULTIVERSION __attribute__((target_clones("arch=haswell", "default")))
#else
#define VW_MULTIVERSION
#endif

namespace vw::cpu {
namespace {

// exp for float, branch-free so loops over it vectorise: 2^n * p(r), r = x - n ln2 in [-ln2/2, ln2/2],
// degree-6 polynomial (max relative error about 2 ulp). Underflows to exactly 0 below -87.3.
__attribute__((always_inline)) inline float fast_exp(float x) {
  const float xc = std::fmin(std::fmax(x, -87.3f), 88.7f);
  const float n = std::nearbyint(xc * 1.44269504088896341f);
  float r = std::fma(n, -0.693359375f, xc);
  r = std::fma(n, 2.12194440e-4f, r);
  float p = 1.0f / 720.0f;
  p = std::fma(p, r, 1.0f / 120.0f);
  p = std::fma(p, r, 1.0f / 24.0f);
  p = std::fma(p, r, 1.0f / 6.0f);
  p = std::fma(p, r, 0.5f);
  p = std::fma(p, r, 1.0f);
  p = std::fma(p, r, 1.0f);
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const float y = p * scale;
  return x < -87.3f ? 0.0f : y;
}

}  // namespace

// A double shift as float hi + lo: (x - hi) - lo is exact to fp32 rounding of the result, so log-probs of
// large logits (|z| ~ 1e3) do not lose the 2^-24 |lse| that a single float subtraction would.
#define SPLIT(v, hi, lo) const float hi = static_cast<float>(v), lo = static_cast<float>((v) - static_cast<double>(hi))

VW_MULTIVERSION float vec_max(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  bool nan = false;
  for (int64_t i = 0; i < n; ++i) {
    m = x[i] > m ? x[i] : m;
    nan |= x[i] != x[i];
  }
  return nan ? std::numeric_limits<float>::quiet_NaN() : m;
}

VW_MULTIVERSION double vec_sum(const float* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  return s;
}

VW_MULTIVERSION double vec_dot(const float* x, const float* y, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * y[i];
  return s;
}

VW_MULTIVERSION double vec_sum_exp(const float* x, int64_t n, float shift) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += fast_exp(x[i] - shift);
  return s;
}

VW_MULTIVERSION void vec_exp(float* y, const float* x, int64_t n, double shift, float scale) {
  const float hi = static_cast<float>(shift), lo = static_cast<float>(shift - hi);
  for (int64_t i = 0; i < n; ++i) y[i] = scale * fast_exp((x[i] - hi) - lo);
}

VW_MULTIVERSION bool vec_all_finite(const float* x, int64_t n) {
  // x - x is 0 for finite x and NaN for Inf/NaN; the sum stays NaN once poisoned.
  float acc = 0.f;
  for (int64_t i = 0; i < n; ++i) acc += x[i] - x[i];
  return acc == 0.f;
}

VW_MULTIVERSION double vec_kl(const float* a, const float* b, int64_t n, double lse_a, double lse_b) {
  SPLIT(lse_a, ah, al);
  SPLIT(lse_b, bh, bl);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float la = (a[i] - ah) - al, lb = (b[i] - bh) - bl;
    s += static_cast<double>(fast_exp(la) * (la - lb));
  }
  return s;
}

VW_MULTIVERSION void vec_kl_grad(float* a, float* b, int64_t n, double lse_a, double lse_b, float kl,
                                 float sa, float sb) {
  SPLIT(lse_a, ah, al);
  SPLIT(lse_b, bh, bl);
  if (sa != 0.f) {
    for (int64_t i = 0; i < n; ++i) {
      const float la = (a[i] - ah) - al, lb = (b[i] - bh) - bl;
      const float p = fast_exp(la), q = fast_exp(lb);
      a[i] = sa * p * (la - lb - kl);
      b[i] = sb * (q - p);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const float la = (a[i] - ah) - al, lb = (b[i] - bh) - bl;
      b[i] = sb * (fast_exp(lb) - fast_exp(la));
    }
  }
}

VW_MULTIVERSION void vec_softmax_grad(float* g, const float* p, int64_t n, float dot) {
  for (int64_t i = 0; i < n; ++i) g[i] = p[i] * (g[i] - dot);
}

}  // namespace vw::cpu
