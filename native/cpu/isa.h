// Instruction-set dispatch for element-wise loops outside vec.h: a loop body written once as an inline
// template is instantiated twice, baseline and with VW_TARGET_AVX2, and vw_use_avx2() picks one at run
// time from the CPU's features (VWLMM_SIMD=generic forces the baseline, as for vec.h; VWLMM_SIMD=avx2 rules out AVX-512).
#pragma once
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VW_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define VW_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))
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
// AVX-512F (the built-in GEMM's micro-kernel, the CPU attention's products; vec.cpp makes the same choice for the
// element-wise row primitives): VWLMM_SIMD=avx2 caps the choice at AVX2+FMA (tests compare the two: the same bits).
inline bool vw_use_avx512() {
  static const bool use = [] {
    const char* f = std::getenv("VWLMM_SIMD");
    if (f && std::strcmp(f, "avx2") == 0) return false;
    __builtin_cpu_init();  // __builtin_cpu_supports also checks that the OS saves the zmm registers
    return vw_use_avx2() && __builtin_cpu_supports("avx512f");
  }();
  return use;
}
// The CPU has AVX-512F, whatever VWLMM_SIMD=avx2 caps: for choices the cap must not change, since it promises the same
// bits (the default GEMM, native/cpu/gemm.cpp).
inline bool vw_cpu_has_avx512() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
  }();
  return has;
}
}  // namespace vw::cpu
#else
#define VW_TARGET_AVX2
#define VW_TARGET_AVX512
namespace vw::cpu {
inline bool vw_use_avx2() { return false; }
inline bool vw_use_avx512() { return false; }
inline bool vw_cpu_has_avx512() { return false; }
}  // namespace vw::cpu
#endif
