// Row-major single-precision GEMM used by every CPU kernel:
//   C[M,N] = alpha * op(A) op(B) + beta * C,  op(A) is [M,K], op(B) is [K,N].
// OpenBLAS (linked statically when found at build time) or the built-in packed GEMM (gemm_builtin.cpp).
// beta = 0 overwrites C without reading it; K = 0 (or alpha = 0) gives C = beta * C.
#pragma once
#include <cstdint>

namespace vw::cpu {

// The GEMM in use: OpenBLAS where it was found at build time, else sgemm_builtin.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// The built-in GEMM, compiled in every build (so tests and benchmarks can compare it with OpenBLAS).
// Results are bit-identical across runs and thread counts for a given instruction set.
void sgemm_builtin(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// "openblas <version/config>" or "builtin".
const char* gemm_backend_name();

}  // namespace vw::cpu
