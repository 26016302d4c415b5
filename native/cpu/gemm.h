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

// How C is split among the pool's threads: a grid of pm x pn tiles of mt x nt (the last row and column of tiles
// shorter). Both GEMMs use it, the built-in one with its packing cost; with OpenBLAS each tile is one
// single-threaded cblas_sgemm call. A tile's elements are summed over K as in the whole product, so the grid does
// not change results.
struct GemmGrid {
  int64_t pm, pn, mt, nt;
};
// At most num_threads() tiles and none under ~2 MFLOP; rows in multiples of mr, columns of nr; the grid with the
// least work in its busiest tile (its flops plus pack_cost flops per element it packs: its rows of A once per
// nc-column panel of its columns, and its columns of B).
GemmGrid gemm_grid(int64_t M, int64_t N, int64_t K, int64_t mr, int64_t nr, int64_t nc, double pack_cost);

// "openblas <version/config>" or "builtin (<micro-kernel>...)".
const char* gemm_backend_name();

// The built-in GEMM's micro-kernel on this CPU: "avx512f 12x32", "avx2+fma 6x16" or "portable 4x8" (8x8 on AArch64).
const char* gemm_builtin_kernel();

}  // namespace vw::cpu
