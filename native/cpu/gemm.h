// Row-major single-precision GEMM used by every CPU kernel:
//   C[M,N] = alpha * op(A) op(B) + beta * C,  op(A) is [M,K], op(B) is [K,N].
// OpenBLAS (linked statically when found at build time) or a portable multithreaded fallback.
#pragma once
#include <cstdint>

namespace vw::cpu {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// "openblas <version/config>" or "builtin".
const char* gemm_backend_name();

}  // namespace vw::cpu
