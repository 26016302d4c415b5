// Instruction-set dispatch for element-wise loops outside vec.h: a loop body written once as an inline
// template is instantiated twice, baseline and with VW_TARGET_AVX2, and vw_use_avx2() picks one at run
// time from the CPU's features (VWLMM_SIMD=generic forces the baseline, as for vec.h).
#pragma once
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VW_TARGET_AVX2 __attribute__((target("avx2,fma")))
namespace vw::cpu {
inline bool vw_use_avx2() {
  static const bool use = [] {
    const char* f = std::getenv("VWLMM_SIMD");
    if (f && std::strcmp(f, "generic") == 0) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return use;
}
}  // namespace vw::cpu
#else
#define VW_TARGET_AVX2
namespace vw::cpu {
inline bool vw_use_avx2() { return false; }
}  // namespace vw::cpu
#endif
