// Load-time choice between the baseline and the AVX2+FMA builds of the row primitives.
#include "vec.h"

#include <cstdlib>
#include <cstring>

namespace vw::cpu {
namespace generic {
float vec_max(const float* x, int64_t n);
double vec_sum(const float* x, int64_t n);
double vec_dot(const float* x, const float* y, int64_t n);
double vec_sum_exp(const float* x, int64_t n, float shift);
void vec_exp(float* y, const float* x, int64_t n, double shift, float scale);
bool vec_all_finite(const float* x, int64_t n);
KlRow vec_kl(const float* a, const float* b, int64_t n, double lse_a, double lse_b);
void vec_kl_grad(float* a, float* b, int64_t n, double lse_a, double lse_b, const KlRow& row, float sa, float sb);
void vec_softmax_grad(float* g, const float* p, int64_t n, float dot);
}  // namespace generic
#ifdef VWLMM_HAVE_AVX2_BUILD
namespace avx2 {
float vec_max(const float* x, int64_t n);
double vec_sum(const float* x, int64_t n);
double vec_dot(const float* x, const float* y, int64_t n);
double vec_sum_exp(const float* x, int64_t n, float shift);
void vec_exp(float* y, const float* x, int64_t n, double shift, float scale);
bool vec_all_finite(const float* x, int64_t n);
KlRow vec_kl(const float* a, const float* b, int64_t n, double lse_a, double lse_b);
void vec_kl_grad(float* a, float* b, int64_t n, double lse_a, double lse_b, const KlRow& row, float sa, float sb);
void vec_softmax_grad(float* g, const float* p, int64_t n, float dot);
}  // namespace avx2
#endif

namespace {
struct VecImpl {
  decltype(&generic::vec_max) vec_max;
  decltype(&generic::vec_sum) vec_sum;
  decltype(&generic::vec_dot) vec_dot;
  decltype(&generic::vec_sum_exp) vec_sum_exp;
  decltype(&generic::vec_exp) vec_exp;
  decltype(&generic::vec_all_finite) vec_all_finite;
  decltype(&generic::vec_kl) vec_kl;
  decltype(&generic::vec_kl_grad) vec_kl_grad;
  decltype(&generic::vec_softmax_grad) vec_softmax_grad;
  const char* name;
};

const VecImpl& impl() {
  static const VecImpl chosen = [] {
    // VWLMM_SIMD=generic forces the baseline build (tests check both builds against the reference).
    const char* force = std::getenv("VWLMM_SIMD");
    if (force && std::strcmp(force, "generic") == 0) return VecImpl{generic::vec_max, generic::vec_sum, generic::vec_dot, generic::vec_sum_exp, generic::vec_exp, generic::vec_all_finite, generic::vec_kl, generic::vec_kl_grad, generic::vec_softmax_grad, "generic"};
#ifdef VWLMM_HAVE_AVX2_BUILD
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return VecImpl{avx2::vec_max, avx2::vec_sum, avx2::vec_dot, avx2::vec_sum_exp, avx2::vec_exp, avx2::vec_all_finite, avx2::vec_kl, avx2::vec_kl_grad, avx2::vec_softmax_grad, "avx2+fma"};
#endif
    return VecImpl{generic::vec_max, generic::vec_sum, generic::vec_dot, generic::vec_sum_exp, generic::vec_exp, generic::vec_all_finite, generic::vec_kl, generic::vec_kl_grad, generic::vec_softmax_grad, "generic"};
  }();
  return chosen;
}
}  // namespace

const char* vec_isa_name() { return impl().name; }

float vec_max(const float* x, int64_t n) { return impl().vec_max(x, n); }
double vec_sum(const float* x, int64_t n) { return impl().vec_sum(x, n); }
double vec_dot(const float* x, const float* y, int64_t n) { return impl().vec_dot(x, y, n); }
double vec_sum_exp(const float* x, int64_t n, float shift) { return impl().vec_sum_exp(x, n, shift); }
void vec_exp(float* y, const float* x, int64_t n, double shift, float scale) { return impl().vec_exp(y, x, n, shift, scale); }
bool vec_all_finite(const float* x, int64_t n) { return impl().vec_all_finite(x, n); }
KlRow vec_kl(const float* a, const float* b, int64_t n, double lse_a, double lse_b) { return impl().vec_kl(a, b, n, lse_a, lse_b); }
void vec_kl_grad(float* a, float* b, int64_t n, double lse_a, double lse_b, const KlRow& row, float sa, float sb) { return impl().vec_kl_grad(a, b, n, lse_a, lse_b, row, sa, sb); }
void vec_softmax_grad(float* g, const float* p, int64_t n, float dot) { return impl().vec_softmax_grad(g, p, n, dot); }

}  // namespace vw::cpu
