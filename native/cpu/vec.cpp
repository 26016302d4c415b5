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
// degree-7 Taylor polynomial (truncation 0.347^8 / 8! = 5e-9, so about 1 ulp in all). Underflows to
// exactly 0 below -87.3.
__attribute__((always_inline)) inline float fast_exp(float x) {
  const float xc = std::fmin(std::fmax(x, -87.3f), 88.7f);
  const float n = std::nearbyint(xc * 1.44269504088896341f);
  float r = std::fma(n, -0.693359375f, xc);
  r = std::fma(n, 2.12194440e-4f, r);
  float p = 1.0f / 5040.0f;
  p = std::fma(p, r, 1.0f / 720.0f);
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

// expm1 for |y| < 0.5 by its Taylor series to y^8 (relative truncation 0.5^8 / 9! = 1e-8).
__attribute__((always_inline)) inline float expm1_small(float y) {
  float e = 1.0f / 40320.0f;
  e = std::fma(e, y, 1.0f / 5040.0f);
  e = std::fma(e, y, 1.0f / 720.0f);
  e = std::fma(e, y, 1.0f / 120.0f);
  e = std::fma(e, y, 1.0f / 24.0f);
  e = std::fma(e, y, 1.0f / 6.0f);
  e = std::fma(e, y, 0.5f);
  e = std::fma(e, y, 1.0f);
  return e * y;
}

// The KL of two close distributions is a small number (~|log-ratio|^2) assembled from O(1) pieces, and
// p, q themselves are only known to 1 ulp of 1 in float. So the row is computed from the log-ratio
// lr = log p - log q = (a - b) - (lse_a - lse_b), where a - b is exact when a ~ b (Sterbenz), and
//   KL = sum p^ lr + log(sum p^ e^-lr),   p^ = p / sum p,
// whose second term cancels any constant error of lr (from the lse sums) and any normalisation error of p
// exactly; it is evaluated as log1p(sum p^ expm1(-lr)) so small terms keep their relative precision.
VW_MULTIVERSION KlRow vec_kl(const float* a, const float* b, int64_t n, double lse_a, double lse_b) {
  SPLIT(lse_a, ah, al);
  SPLIT(lse_a - lse_b, dh, dl);
  double s_lr = 0, s_em = 0, s_p = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float la = (a[i] - ah) - al, lr = ((a[i] - b[i]) - dh) - dl;
    const float p = fast_exp(la);
    // p (e^-lr - 1): by series when |lr| is small, else as q - p (no overflow: la - lr = log q + const)
    const float em = std::fabs(lr) < 0.5f ? p * expm1_small(-lr) : fast_exp(la - lr) - p;
    s_lr += static_cast<double>(p * lr);
    s_em += static_cast<double>(em);
    s_p += static_cast<double>(p);
  }
  KlRow r;
  if (!(s_p > 0)) return r;
  r.psum = s_p;
  r.shift = -std::log1p(s_em / s_p);  // lr - shift is the exact log-ratio of the normalised p and q
  r.kl = s_lr / s_p - r.shift;
  return r;
}

// In place: a <- sa p (lr - kl) (skipped when sa == 0), b <- sb (q - p), with p normalised and lr
// corrected by the row's KlRow, and q - p = p expm1(-lr) when |lr| is small (p and q then agree in their
// leading digits, e.g. 1 - 1e-4 and 1 - 1e-7, and a float difference would keep only 3 of them).
VW_MULTIVERSION void vec_kl_grad(float* a, float* b, int64_t n, double lse_a, double lse_b, const KlRow& row,
                                 float sa, float sb) {
  SPLIT(lse_a + std::log(row.psum), ah, al);
  SPLIT(lse_b, bh, bl);
  SPLIT(lse_a - lse_b + row.shift, dh, dl);
  const float kl = static_cast<float>(row.kl);
  for (int64_t i = 0; i < n; ++i) {
    const float la = (a[i] - ah) - al, lb = (b[i] - bh) - bl, lr = ((a[i] - b[i]) - dh) - dl;
    const float p = fast_exp(la);
    const float qp = std::fabs(lr) < 0.5f ? p * expm1_small(-lr) : fast_exp(lb) - p;
    if (sa != 0.f) a[i] = sa * p * (lr - kl);
    b[i] = sb * qp;
  }
}

VW_MULTIVERSION void vec_softmax_grad(float* g, const float* p, int64_t n, float dot) {
  for (int64_t i = 0; i < n; ++i) g[i] = p[i] * (g[i] - dot);
}

}  // namespace vw::cpu
