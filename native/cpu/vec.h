// Vectorised row primitives of the fused kernels (one logits row of length n at a time). Sums are
// accumulated in double so a 32k-long row keeps fp32 results within 1e-6 relative.
// Reductions carry `omp simd` (compiled with -fopenmp-simd: no OpenMP runtime) so they vectorise
// without -ffast-math, which would break the NaN checks. On x86-64 the bodies (vec_kernels.inc) are
// compiled twice, baseline and AVX2+FMA, and vec.cpp picks one at load time, so one prebuilt binary is
// both portable and fast.
#pragma once
#include <cstdint>

namespace vw::cpu {

// "avx2+fma", "avx2+fma, avx512f element-wise" or "generic": the build of these functions in use.
const char* vec_isa_name();
// Whether that is the AVX2+FMA build (with or without AVX-512F element-wise): kernels outside vec.h that follow its
// choice ask this (the CPU attention's products).
bool vec_isa_avx2();

float vec_max(const float* x, int64_t n);                      // -inf for n = 0; NaN if any NaN
double vec_sum(const float* x, int64_t n);
double vec_dot(const float* x, const float* y, int64_t n);
double vec_sum_exp(const float* x, int64_t n, float shift);    // sum exp(x - shift)
// y = scale exp((x - m) - log_s). The log-sum-exp of a row is kept as its two parts m (the row max) and
// log_s = log sum exp(x - m), never added: next to a huge max (|m| ~ 1e30) m + log_s rounds to m even in
// double, and three tied top logits would each get probability 1 instead of 1/3 (PyTorch's log_softmax
// subtracts them one at a time, too).
void vec_exp(float* y, const float* x, int64_t n, float m, double log_s, float scale);
bool vec_all_finite(const float* x, int64_t n);

// KL row of target logits a and predicted logits b given their maxima: the KL, the correction that makes the
// log-ratio exact, and the two exp sums (see vec_kernels.inc).
struct KlRow {
  double kl = 0, shift = 0, psum = 1, qsum = 1;
};
KlRow vec_kl(const float* a, const float* b, int64_t n, float ma, float mb);
// In place: a <- sa * p (log p - log q - kl) (skipped when sa == 0), b <- sb * (q - p).
void vec_kl_grad(float* a, float* b, int64_t n, float ma, float mb, const KlRow& row, float sa, float sb);
// In place softmax backward: g <- p * (g - dot), p and g rows of length n.
void vec_softmax_grad(float* g, const float* p, int64_t n, float dot);

}  // namespace vw::cpu
