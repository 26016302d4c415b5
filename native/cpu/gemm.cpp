#include "gemm.h"

#include <algorithm>
#include <string>
#include <vector>

#include "parallel.h"

#ifdef VWLMM_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace vw::cpu {

#ifdef VWLMM_HAVE_OPENBLAS

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // BLAS leaves C untouched for K = 0 only when beta = 1; make it exact for any beta.
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.f ? 0.f : beta * C[i * ldc + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb, beta, C,
              (blasint)ldc);
}

const char* gemm_backend_name() {
  static std::string name = std::string("openblas ") + openblas_get_config();
  return name.c_str();
}

#else

// Portable fallback: parallel over rows of C; B is packed once into [K, N] row-major so the inner loop is
// a contiguous axpy the compiler vectorises. Slower than a tuned BLAS, exact in semantics.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  const float* Bp = B;
  int64_t ldbp = ldb;
  std::vector<float> packed;
  if (trans_b) {  // B is [N, K]: transpose into [K, N]
    packed.resize(static_cast<size_t>(K * N));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) packed[k * N + n] = B[n * ldb + k];
    Bp = packed.data();
    ldbp = N;
  }
  parallel_for(M, 4, [&](int64_t m0, int64_t m1) {
    std::vector<float> acc(static_cast<size_t>(N));
    for (int64_t i = m0; i < m1; ++i) {
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t k = 0; k < K; ++k) {
        const float a = trans_a ? A[k * lda + i] : A[i * lda + k];
        const float* brow = Bp + k * ldbp;
        for (int64_t j = 0; j < N; ++j) acc[j] += a * brow[j];
      }
      float* crow = C + i * ldc;
      if (beta == 0.f) {
        for (int64_t j = 0; j < N; ++j) crow[j] = alpha * acc[j];
      } else {
        for (int64_t j = 0; j < N; ++j) crow[j] = alpha * acc[j] + beta * crow[j];
      }
    }
  });
}

const char* gemm_backend_name() { return "builtin"; }

#endif

}  // namespace vw::cpu
