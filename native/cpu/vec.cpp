// Load-time choice between the baseline, AVX2+FMA and (element-wise only) AVX-512F builds of the row primitives.
#include "vec.h"

#include <cstdlib>
#include <cstring>

#include "isa.h"

namespace vw::cpu {

// The primitives of vec.h, each defined by both builds (vec_kernels.inc) with vec.h's signature.
#define VW_VEC_PRIMITIVES(X) \
  X(vec_max) X(vec_sum) X(vec_dot) X(vec_sum_exp) X(vec_exp) X(vec_all_finite) X(vec_kl) X(vec_kl_grad) X(vec_softmax_grad)

#define VW_DECLARE(name) decltype(::vw::cpu::name) name;
namespace generic {
VW_VEC_PRIMITIVES(VW_DECLARE)
}  // namespace generic
#ifdef VWLMM_HAVE_AVX2_BUILD
namespace avx2 {
VW_VEC_PRIMITIVES(VW_DECLARE)
}  // namespace avx2
namespace avx512 {
VW_VEC_PRIMITIVES(VW_DECLARE)
}  // namespace avx512
#endif
#undef VW_DECLARE

namespace {
struct VecImpl {
#define VW_FIELD(name) decltype(&::vw::cpu::name) name;
  VW_VEC_PRIMITIVES(VW_FIELD)
#undef VW_FIELD
  const char* name;
  bool avx2;  // the AVX2+FMA build (vec_isa_avx2)
};

// The table of one build: VecImpl{ns::vec_max, ..., "name"}.
#define VW_GENERIC(name) generic::name,
#define VW_AVX2(name) avx2::name,

const VecImpl& impl() {
  static const VecImpl chosen = [] {
    // VWLMM_SIMD=generic forces the baseline build (tests check both builds against the reference). The CPU check is
    // this file's own, not isa.h's vw_use_avx2(): that one is GCC's only, and a clang build runs this AVX2 build too.
    const char* force = std::getenv("VWLMM_SIMD");
    if (force && std::strcmp(force, "generic") == 0) return VecImpl{VW_VEC_PRIMITIVES(VW_GENERIC) "generic", false};
#ifdef VWLMM_HAVE_AVX2_BUILD
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      VecImpl v{VW_VEC_PRIMITIVES(VW_AVX2) "avx2+fma", true};
      // AVX-512F (unless VWLMM_SIMD=avx2): the element-wise primitives in 16 lanes, each lane the AVX2 build's
      // operations (the same bits). The reductions stay AVX2's: a sum's rounding follows its lane order, and so does
      // the sign of a maximum of +0 and -0; vec_all_finite's is exact (zeros, or a NaN) whatever the order.
      if (vw_use_avx512()) {
        v.vec_exp = avx512::vec_exp;
        v.vec_all_finite = avx512::vec_all_finite;
        v.vec_kl_grad = avx512::vec_kl_grad;
        v.vec_softmax_grad = avx512::vec_softmax_grad;
        v.name = "avx2+fma, avx512f element-wise";
      }
      return v;
    }
#endif
    return VecImpl{VW_VEC_PRIMITIVES(VW_GENERIC) "generic", false};
  }();
  return chosen;
}

#undef VW_GENERIC
#undef VW_AVX2
}  // namespace

const char* vec_isa_name() { return impl().name; }
bool vec_isa_avx2() { return impl().avx2; }

float vec_max(const float* x, int64_t n) { return impl().vec_max(x, n); }
double vec_sum(const float* x, int64_t n) { return impl().vec_sum(x, n); }
double vec_dot(const float* x, const float* y, int64_t n) { return impl().vec_dot(x, y, n); }
double vec_sum_exp(const float* x, int64_t n, float shift) { return impl().vec_sum_exp(x, n, shift); }
void vec_exp(float* y, const float* x, int64_t n, float m, double log_s, float scale) { return impl().vec_exp(y, x, n, m, log_s, scale); }
bool vec_all_finite(const float* x, int64_t n) { return impl().vec_all_finite(x, n); }
KlRow vec_kl(const float* a, const float* b, int64_t n, float ma, float mb) { return impl().vec_kl(a, b, n, ma, mb); }
void vec_kl_grad(float* a, float* b, int64_t n, float ma, float mb, const KlRow& row, float sa, float sb) { return impl().vec_kl_grad(a, b, n, ma, mb, row, sa, sb); }
void vec_softmax_grad(float* g, const float* p, int64_t n, float dot) { return impl().vec_softmax_grad(g, p, n, dot); }

#undef VW_VEC_PRIMITIVES

}  // namespace vw::cpu
