#include "gemm.h"

#include <cstdlib>
#include <string>

#ifdef VWLMM_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace vw::cpu {

#ifdef VWLMM_HAVE_OPENBLAS

// VWLMM_GEMM=builtin runs the built-in GEMM in a build with OpenBLAS (src/native.ts rejects other values
// than openblas / builtin): on the engine's decoder shapes it measured about as fast in isolation and
// faster inside training steps (benchmarks/RESULTS.md), but OpenBLAS stays the default where present.
static bool use_builtin() {
  static const bool b = [] {
    const char* s = std::getenv("VWLMM_GEMM");
    return s && std::string(s) == "builtin";
  }();
  return b;
}

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  // BLAS leaves C untouched for K = 0 only when beta = 1: the built-in GEMM gives C = beta C for any beta.
  if (K <= 0 || use_builtin()) return sgemm_builtin(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb, beta, C,
              (blasint)ldc);
}

const char* gemm_backend_name() {
  static std::string name = use_builtin() ? std::string("builtin (VWLMM_GEMM=builtin; linked: openblas ") + openblas_get_config() + ")"
                                          : std::string("openblas ") + openblas_get_config();
  return name.c_str();
}

#else

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm_builtin(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

const char* gemm_backend_name() { return "builtin"; }

#endif

}  // namespace vw::cpu
