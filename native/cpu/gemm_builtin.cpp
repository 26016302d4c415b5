// The built-in sgemm (used when OpenBLAS is not found at build time): a packed, cache-blocked GEMM in
// the BLIS / GotoBLAS layout, with a register-blocked micro-kernel.
//
//   for jc in N step NC          B panel  KC x NC  (packed, lives in L3)
//     for pc in K step ~KC       one K block: C += alpha op(A)[:, pc] op(B)[pc, :]  (beta on the first)
//       pack op(B)[pc, jc] into NR-wide slivers (k-major, zero-padded to NR columns)
//       for ic in M step MC      A block  MC x KC  (packed, lives in L2)
//         pack op(A)[ic, pc] into MR-tall slivers (k-major, zero-padded to MR rows)
//         for jr in NC step NR   B sliver KC x NR  (stays in L1 while the A slivers stream past it)
//           for ir in MC step MR
//             micro-kernel: an MR x NR tile of C accumulated in registers over the kc k's
//
// Why: a naive loop reloads op(B) from memory for every row of C and is bound by memory bandwidth.
// Packing makes every operand of the micro-kernel a unit-stride stream that sits in the right cache
// level (transposes are absorbed by the packing, so all four trans cases run the same kernel), and the
// register tile gives MR x NR / (MR + NR) FMAs per loaded float. AVX2+FMA: MR x NR = 6 x 16, 12 ymm
// accumulators (FMA latency 4-5 x 2 ports needs >= 10 in flight), 2 loads of B and 6 broadcasts of A per
// 12 FMAs; KC = 256 puts a 16 KiB B sliver plus a 6 KiB A sliver in a 32 KiB L1, MC = 144 a 144 KiB A
// block in L2, NC = 4096 a 4 MiB B panel in L3; K is cut into ceil(K / KC) near-equal blocks (K = 257 in
// blocks of 129 and 128, not 256 and 1). AVX-512F: 12 x 32, 24 zmm accumulators, the same fma chains as the
// AVX2 kernel (same bits, twice the work per instruction); VWLMM_SIMD=avx2 sets it aside. Portable: 4 x 8 for
// SSE2's 16 registers of 4 floats, 8 x 8 on AArch64's 32. The three are one source (kernel_tile, GCC vector types).
//
// Threads: C is split into a grid of pm x pn thread tiles (rows in multiples of MR, columns of NR) and
// each thread runs the whole loop nest above on its tile with its own packing buffers: one parallel_for
// per call and no barriers. The price is that a thread packs the parts of A (or B) it shares with its
// grid neighbours itself; the grid is chosen to keep that small (thread tiles as square as the shape
// allows). Determinism: the K blocks depend on K only and each C element is one in-order multiply-add
// chain per K block, added to C in block order by the same write-out code (edge tiles go through a padded
// temporary tile), so results are bit-identical across runs, thread counts and tile positions (for one
// micro-kernel: the AVX2 and portable ones round differently).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "gemm.h"
#include "isa.h"
#include "parallel.h"

// The AVX2 kernel exists where isa.h can dispatch to it (GCC on x86-64; vw_use_avx2() is false elsewhere).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VW_GEMM_AVX2 1
#include <immintrin.h>
#endif

namespace vw::cpu {
namespace {

constexpr int64_t kKC = 256;   // K block: a KC x NR B sliver and a KC x MR A sliver share L1
constexpr int64_t kMC = 144;   // M block (a multiple of every MR below): the packed A block in L2
constexpr int64_t kNCmax = 4096;  // N block (rounded down to a multiple of NR): the packed B panel in L3

inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return cdiv(a, b) * b; }

// A 64-byte aligned scratch buffer that only grows; one per thread for A and one for B (thread_local:
// the pool's workers are long-lived, so the buffers are allocated once, not per call).
struct Scratch {
  float* p = nullptr;
  size_t cap = 0;
  float* get(size_t n) {
    if (n > cap) {
      std::free(p);
      p = nullptr;
      cap = 0;
      const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
      p = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!p) throw std::bad_alloc();
      cap = n;
    }
    return p;
  }
  ~Scratch() { std::free(p); }
};
thread_local Scratch tl_apack, tl_bpack;

// ------------------------------------------------------------------------------------------ packing
// Slivers are written k-major, so a sliver of width W (MR rows of op(A) or NR columns of op(B)) holds element
// (k, w) at k*W + w. When the source is contiguous along the sliver's width (op(A) transposed, op(B) not),
// each source row is read once front to back and scattered to the slivers: a unit-stride read stream
// instead of kc strided visits per sliver. When it is contiguous along k, each of the W source rows is read
// in 8-k steps so every read is a short unit-stride run.

// Copies `w` contiguous values of a source row into `W`-wide sliver positions, zero-padding to W.
template <int W>
inline void scatter_row(const float* __restrict src, int64_t n, int64_t kc, int64_t k, float* __restrict dst) {
  int64_t s = 0;
  for (; (s + 1) * W <= n; ++s) std::memcpy(dst + s * kc * W + k * W, src + s * W, sizeof(float) * W);
  if (s * W < n) {
    float* d = dst + s * kc * W + k * W;
    const int64_t rest = n - s * W;
    for (int w = 0; w < W; ++w) d[w] = w < rest ? src[s * W + w] : 0.f;
  }
}

// Gathers slivers of W rows, each contiguous along k (row r of sliver s at src + (s*W + r) * ld).
template <int W>
inline void gather_rows(const float* src, int64_t ld, int64_t n, int64_t kc, float* __restrict dst) {
  for (int64_t s = 0; s * W < n; ++s) {
    const int64_t rows = std::min<int64_t>(W, n - s * W);
    float* __restrict d = dst + s * kc * W;
    for (int64_t r = rows; r < W; ++r)
      for (int64_t k = 0; k < kc; ++k) d[k * W + r] = 0.f;
    const float* p = src + s * W * ld;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8)
      for (int64_t r = 0; r < rows; ++r)
        for (int kk = 0; kk < 8; ++kk) d[(k + kk) * W + r] = p[r * ld + k + kk];
    for (; k < kc; ++k)
      for (int64_t r = 0; r < rows; ++r) d[k * W + r] = p[r * ld + k];
  }
}

#ifdef VW_GEMM_AVX2
// 8 x 8 transpose in registers: on return r[i] lane j holds what r[j] lane i held.
VW_TARGET_AVX2 inline void transpose8(__m256 r[8]) {
  __m256 t[8];
  for (int j = 0; j < 8; j += 2) {
    t[j] = _mm256_unpacklo_ps(r[j], r[j + 1]);
    t[j + 1] = _mm256_unpackhi_ps(r[j], r[j + 1]);
  }
  for (int j = 0; j < 8; j += 4) {
    r[j] = _mm256_shuffle_ps(t[j], t[j + 2], 0x44);
    r[j + 1] = _mm256_shuffle_ps(t[j], t[j + 2], 0xEE);
    r[j + 2] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0x44);
    r[j + 3] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    t[j] = _mm256_permute2f128_ps(r[j], r[j + 4], 0x20);
    t[j + 4] = _mm256_permute2f128_ps(r[j], r[j + 4], 0x31);
  }
  for (int j = 0; j < 8; ++j) r[j] = t[j];
}

// gather_rows with 8 x 8 blocks transposed in registers (8 unit-stride loads, 8 stores of 8 per block, where the
// scalar loop moves one float at a time): the same slivers, for W >= 8. Rows past a multiple of 8 go one by one.
template <int W>
VW_TARGET_AVX2 void gather_rows_avx2(const float* src, int64_t ld, int64_t n, int64_t kc, float* __restrict dst) {
  for (int64_t s = 0; s * W < n; ++s) {
    const int64_t rows = std::min<int64_t>(W, n - s * W);
    float* __restrict d = dst + s * kc * W;
    for (int64_t r = rows; r < W; ++r)
      for (int64_t k = 0; k < kc; ++k) d[k * W + r] = 0.f;
    const float* p = src + s * W * ld;
    int64_t r0 = 0;
    for (; r0 + 8 <= rows; r0 += 8) {
      int64_t k = 0;
      for (; k + 8 <= kc; k += 8) {
        __m256 b[8];
        for (int j = 0; j < 8; ++j) b[j] = _mm256_loadu_ps(p + (r0 + j) * ld + k);
        transpose8(b);
        for (int i = 0; i < 8; ++i) _mm256_storeu_ps(d + (k + i) * W + r0, b[i]);
      }
      for (; k < kc; ++k)
        for (int64_t r = r0; r < r0 + 8; ++r) d[k * W + r] = p[r * ld + k];
    }
    for (; r0 < rows; ++r0)
      for (int64_t k = 0; k < kc; ++k) d[k * W + r0] = p[r0 * ld + k];
  }
}
#endif

template <int W>
inline void gather_rows_best(const float* src, int64_t ld, int64_t n, int64_t kc, float* __restrict dst) {
#ifdef VW_GEMM_AVX2
  if constexpr (W >= 8) {
    if (vw_use_avx2()) return gather_rows_avx2<W>(src, ld, n, kc, dst);
  }
#endif
  gather_rows<W>(src, ld, n, kc, dst);
}

// op(A)[i, k] = trans ? A[k * lda + i] : A[i * lda + k], rows [m0, m0 + mc), k in [k0, k0 + kc), into
// ceil(mc / MR) MR-row slivers (rows past mc zero).
template <int MR>
void pack_a(bool trans, const float* A, int64_t lda, int64_t m0, int64_t mc, int64_t k0, int64_t kc, float* dst) {
  if (trans) {
    for (int64_t k = 0; k < kc; ++k) scatter_row<MR>(A + (k0 + k) * lda + m0, mc, kc, k, dst);
  } else {
    gather_rows_best<MR>(A + m0 * lda + k0, lda, mc, kc, dst);
  }
}

// op(B)[k, j] = trans ? B[j * ldb + k] : B[k * ldb + j], k in [k0, k0 + kc), columns [n0, n0 + nc), into
// ceil(nc / NR) NR-column slivers (columns past nc zero).
template <int NR>
void pack_b(bool trans, const float* B, int64_t ldb, int64_t k0, int64_t kc, int64_t n0, int64_t nc, float* dst) {
  if (trans) {
    gather_rows_best<NR>(B + n0 * ldb + k0, ldb, nc, kc, dst);
  } else {
    for (int64_t k = 0; k < kc; ++k) scatter_row<NR>(B + (k0 + k) * ldb + n0, nc, kc, k, dst);
  }
}

// ------------------------------------------------------------------------------------------ micro-kernels
// C[0..MR, 0..NR] (row stride ldc) = alpha * sum_k A[k*MR + r] B[k*NR + c] + beta * C; beta == 0 never
// reads C (it may hold NaN). A and B are packed slivers (B 64-byte aligned).
//
// One source for every kernel: an MR x 2L tile of GCC vector types of L floats (as native/cpu/attention.cpp's
// products), c[r][h] holding C[r, hL .. hL + L), instantiated in a function compiled for each instruction set.
// acc += a * b is one fused multiply-add where the target has FMA (the AVX2 and AVX-512 kernels: the same chain per
// element, so the same bits; tests/kernels/gemm_builtin.test.ts) and a multiply then an add where it has not (and at
// -O1, which forms no fma: the sanitizer build; the few-rows path is written alike, so it agrees either way).
//   AVX2+FMA 6 x 16: 12 of the 16 ymm registers accumulate.
//   AVX-512F 12 x 32: 24 of the 32 zmm registers accumulate, 2 hold B, 1 the broadcast of A; KC = 256 puts a 32 KiB
//     B sliver and a 12 KiB A sliver in the 48 KiB L1 of the Xeons that have it.
//   Portable 4 x 8: 8 accumulators of 4 floats fit SSE2's 16 registers with room for B and the broadcasts (6 x 8
//     spilled and ran 20% slower); 8 x 8 on AArch64's 32 registers.
// No prefetch of C's rows before the loop: their addresses, kept live through it, pushed b0 out of the registers into
// a stack reload per FMA; without them the kernels ran 1.0-1.27x faster. The k loop is unrolled twice for every kernel
// (the AVX2 one had 4 when written with intrinsics: the same speed); a hand-written unroll of two steps spilled an
// AVX-512 accumulator to the stack. Fused: the target has FMA.
#if defined(__aarch64__)
constexpr int kGenMR = 8, kGenNR = 8;
#else
constexpr int kGenMR = 4, kGenNR = 8;
#endif
typedef float v4f __attribute__((vector_size(16)));
typedef float v8f __attribute__((vector_size(32)));
typedef float v16f __attribute__((vector_size(64)));

template <typename V, int MR, bool Fused>
__attribute__((always_inline)) inline void kernel_tile(int64_t kc, const float* __restrict A, const float* __restrict B,
                                                       float* __restrict C, int64_t ldc, float alpha, float beta) {
  constexpr int L = sizeof(V) / sizeof(float);
  V c[MR][2];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) c[r][0] = c[r][1] = V{};
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    V b0, b1;
    std::memcpy(&b0, B, sizeof(V));
    std::memcpy(&b1, B + L, sizeof(V));
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const float a = A[r];
      c[r][0] += a * b0;
      c[r][1] += a * b1;
    }
    A += MR;
    B += 2 * L;
  }
  if (beta == 0.f) {
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r)
      for (int h = 0; h < 2; ++h) {
        const V out = alpha * c[r][h];
        std::memcpy(C + r * ldc + h * L, &out, sizeof(V));
      }
  } else {
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r)
      for (int h = 0; h < 2; ++h) {
        float* cr = C + r * ldc + h * L;
        V old, out;
        std::memcpy(&old, cr, sizeof(V));
        if constexpr (Fused) {
          // fma(alpha, acc, beta C) spelled out, as the few-rows path computes it (its test compares the bits): in
          // alpha acc + beta C, which product GCC contracts is its own choice
          const V t = beta * old;
          for (int l = 0; l < L; ++l) out[l] = __builtin_fmaf(alpha, c[r][h][l], t[l]);
        } else {
          out = alpha * c[r][h] + beta * old;
        }
        std::memcpy(cr, &out, sizeof(V));
      }
  }
}

void kernel_generic(int64_t kc, const float* __restrict A, const float* __restrict B, float* __restrict C,
                    int64_t ldc, float alpha, float beta) {
  static_assert(kGenNR == 2 * 4, "the portable tile is two vectors of 4 floats wide");
  kernel_tile<v4f, kGenMR, false>(kc, A, B, C, ldc, alpha, beta);
}

#ifdef VW_GEMM_AVX2
VW_TARGET_AVX2 void kernel_avx2(int64_t kc, const float* __restrict A, const float* __restrict B,
                                float* __restrict C, int64_t ldc, float alpha, float beta) {
  kernel_tile<v8f, 6, true>(kc, A, B, C, ldc, alpha, beta);
}

VW_TARGET_AVX512 void kernel_avx512(int64_t kc, const float* __restrict A, const float* __restrict B,
                                    float* __restrict C, int64_t ldc, float alpha, float beta) {
  kernel_tile<v16f, 12, true>(kc, A, B, C, ldc, alpha, beta);
}
#endif

using Kernel = void (*)(int64_t, const float*, const float*, float*, int64_t, float, float);

// ------------------------------------------------------------------------------------------ driver
struct Gemm {
  bool ta, tb;
  int64_t M, N, K;
  float alpha;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float beta;
  float* C;
  int64_t ldc;
};

// The loop nest on rows [m0, m1) x columns [n0, n1) of C, with this thread's packing buffers.
template <int MR, int NR>
void run_tile(const Gemm& g, Kernel kernel, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  constexpr int64_t NC = kNCmax / NR * NR;
  // K blocks of near-equal size (a function of K only: the summation order must not depend on the tile)
  const int64_t kblocks = cdiv(g.K, kKC), kb = cdiv(g.K, kblocks);
  float* bpack = tl_bpack.get(static_cast<size_t>(std::min(kb, g.K) * round_up(std::min(NC, n1 - n0), NR)));
  float* apack = tl_apack.get(static_cast<size_t>(std::min(kb, g.K) * round_up(std::min(kMC, m1 - m0), MR)));
  alignas(64) float tile[MR * NR];
  for (int64_t jc = n0; jc < n1; jc += NC) {
    const int64_t nc = std::min(NC, n1 - jc);
    for (int64_t pc = 0; pc < g.K; pc += kb) {
      const int64_t kc = std::min(kb, g.K - pc);
      const float beta = pc == 0 ? g.beta : 1.f;
      pack_b<NR>(g.tb, g.B, g.ldb, pc, kc, jc, nc, bpack);
      for (int64_t ic = m0; ic < m1; ic += kMC) {
        const int64_t mc = std::min(kMC, m1 - ic);
        pack_a<MR>(g.ta, g.A, g.lda, ic, mc, pc, kc, apack);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int64_t nr = std::min<int64_t>(NR, nc - jr);
          const float* bs = bpack + jr * kc;
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int64_t mr = std::min<int64_t>(MR, mc - ir);
            const float* as = apack + ir * kc;
            float* c = g.C + (ic + ir) * g.ldc + jc + jr;
            if (mr == MR && nr == NR) {
              kernel(kc, as, bs, c, g.ldc, g.alpha, beta);
            } else {  // edge: the same kernel on a padded tile, so edge elements round exactly as others
              std::memset(tile, 0, sizeof(tile));
              if (beta != 0.f)
                for (int64_t r = 0; r < mr; ++r) std::memcpy(tile + r * NR, c + r * g.ldc, sizeof(float) * nr);
              kernel(kc, as, bs, tile, NR, g.alpha, beta);
              for (int64_t r = 0; r < mr; ++r) std::memcpy(c + r * g.ldc, tile + r * NR, sizeof(float) * nr);
            }
          }
        }
      }
    }
  }
}

// Rough cost of packing one element, in flops of the micro-kernel (a strided read and a write vs ~100
// flops per ns): only steers the grid towards packing less.
constexpr double kPackCost = 16;

template <int MR, int NR>
void run(const Gemm& g, Kernel kernel) {
  constexpr int64_t NC = kNCmax / NR * NR;
  const GemmGrid grid = gemm_grid(g.M, g.N, g.K, MR, NR, NC, kPackCost);
  const int64_t pm = grid.pm, pn = grid.pn, mt = grid.mt, nt = grid.nt;
  parallel_for(pm * pn, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t m0 = (t / pn) * mt, n0 = (t % pn) * nt;
      if (m0 < g.M && n0 < g.N) run_tile<MR, NR>(g, kernel, m0, std::min(g.M, m0 + mt), n0, std::min(g.N, n0 + nt));
    }
  });
}

// ------------------------------------------------------------------------------------------ few rows
// M <= kFewRows (decoding: x W^T with M = the batch's sequences, often 1). The packed path would copy all of op(B)
// (the whole weight matrix) for one to four rows of C and run its 6-row micro-kernel mostly on padding: at M = 1 it
// reached ~1.5 GFLOP/s. Here op(B) is read in place. Each group of 8 columns keeps its M x 8 sums in registers; a
// transposed op(B) (stored [N, K], the weights of x W^T) is read as 8 rows x 8 k's and transposed in registers,
// a plain one ([K, N]) a row segment per k.
// Bit-identical to the packed path: every element is the same chain, per K block, of acc += a_k b_k from 0, written
// as the micro-kernels write it (GCC contracts it to an fma where the target has one, at -O2 and above: not in the
// sanitizer build's -O1, so an explicit fma here would differ there), and blocks reach C through the same write-out
// (C = alpha acc, or alpha acc + beta C on the first block and alpha acc + C after). So a row of C has the same
// bits whatever M is: one prompt decoded alone gets the logits it gets in a batch of prompts of its length.
constexpr int64_t kFewRows = 4;

// op(A)'s rows, contiguous along k (a transposed A is copied: M x K floats).
struct FewRowsA {
  const float* p;
  int64_t ld;
};
thread_local Scratch tl_arows;
FewRowsA few_rows_a(const Gemm& g) {
  if (!g.ta) return {g.A, g.lda};
  float* a = tl_arows.get(static_cast<size_t>(g.M * g.K));
  for (int64_t k = 0; k < g.K; ++k)
    for (int64_t m = 0; m < g.M; ++m) a[m * g.K + k] = g.A[k * g.lda + m];
  return {a, g.K};
}

// Portable: the arithmetic of kernel_generic, one column at a time.
template <int M>
void few_rows_generic(const Gemm& g, FewRowsA a, int64_t kb, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    float out[M] = {};
    for (int64_t pc = 0; pc < g.K; pc += kb) {
      const int64_t kc = std::min(kb, g.K - pc);
      float acc[M] = {};
      for (int64_t k = pc; k < pc + kc; ++k) {
        const float b = g.tb ? g.B[n * g.ldb + k] : g.B[k * g.ldb + n];
        for (int m = 0; m < M; ++m) acc[m] += a.p[m * a.ld + k] * b;
      }
      for (int m = 0; m < M; ++m) {
        if (pc > 0) out[m] = g.alpha * acc[m] + 1.f * out[m];
        else out[m] = g.beta == 0.f ? g.alpha * acc[m] : g.alpha * acc[m] + g.beta * g.C[m * g.ldc + n];
      }
    }
    for (int m = 0; m < M; ++m) g.C[m * g.ldc + n] = out[m];
  }
}

#ifdef VW_GEMM_AVX2
// The write-out of kernel_avx2 for one K block: out = alpha acc (+ beta C on the first block, + out after).
VW_TARGET_AVX2 inline __m256 few_rows_combine(bool first, float alpha, float beta, __m256 acc, __m256 out, const float* c,
                                              int nr) {
  const __m256 va = _mm256_set1_ps(alpha);
  if (!first) return _mm256_fmadd_ps(va, acc, out);
  if (beta == 0.f) return _mm256_mul_ps(va, acc);
  alignas(32) float cv[8] = {};
  for (int j = 0; j < nr; ++j) cv[j] = c[j];
  return _mm256_fmadd_ps(va, acc, _mm256_mul_ps(_mm256_set1_ps(beta), _mm256_load_ps(cv)));
}

VW_TARGET_AVX2 inline void few_rows_store(float* c, __m256 v, int nr) {
  if (nr == 8) return _mm256_storeu_ps(c, v);
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  for (int j = 0; j < nr; ++j) c[j] = t[j];
}

// op(B) transposed: G groups of 8 columns at a time (independent FMA chains hide the FMA latency). Rows past N
// repeat the group's first row; their lanes are computed and dropped.
template <int M, int G>
VW_TARGET_AVX2 void few_rows_tb_avx2(const Gemm& g, FewRowsA a, int64_t kb, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; n += 8 * G) {
    const float* rows[G][8];
    int nr[G];
    for (int h = 0; h < G; ++h) {
      const int64_t c0 = std::min(n + 8 * h, n1 - 1);
      nr[h] = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(8, n1 - (n + 8 * h))));
      for (int j = 0; j < 8; ++j) rows[h][j] = g.B + (j < nr[h] ? c0 + j : c0) * g.ldb;
    }
    __m256 out[M][G];
    for (int m = 0; m < M; ++m)
      for (int h = 0; h < G; ++h) out[m][h] = _mm256_setzero_ps();  // set by the first K block (K > 0)
    for (int64_t pc = 0; pc < g.K; pc += kb) {
      const int64_t kc = std::min(kb, g.K - pc);
      __m256 acc[M][G];
      for (int m = 0; m < M; ++m)
        for (int h = 0; h < G; ++h) acc[m][h] = _mm256_setzero_ps();
      int64_t k = pc;
      for (; k + 8 <= pc + kc; k += 8) {
#pragma GCC unroll 2
        for (int h = 0; h < G; ++h) {
          // 8 x 8 transpose: t[i] lane j = op(B)[k + i, column j] = rows[h][j][k + i]
          __m256 t[8];
          for (int j = 0; j < 8; ++j) t[j] = _mm256_loadu_ps(rows[h][j] + k);
          transpose8(t);
#pragma GCC unroll 8
          for (int i = 0; i < 8; ++i)
            for (int m = 0; m < M; ++m)
              acc[m][h] += _mm256_broadcast_ss(a.p + m * a.ld + k + i) * t[i];
        }
      }
      for (; k < pc + kc; ++k)
        for (int h = 0; h < G; ++h) {
          const __m256 b = _mm256_setr_ps(rows[h][0][k], rows[h][1][k], rows[h][2][k], rows[h][3][k], rows[h][4][k],
                                          rows[h][5][k], rows[h][6][k], rows[h][7][k]);
          for (int m = 0; m < M; ++m) acc[m][h] += _mm256_broadcast_ss(a.p + m * a.ld + k) * b;
        }
      for (int m = 0; m < M; ++m)
        for (int h = 0; h < G; ++h)
          if (nr[h] > 0)
            out[m][h] = few_rows_combine(pc == 0, g.alpha, g.beta, acc[m][h], out[m][h], g.C + m * g.ldc + n + 8 * h, nr[h]);
    }
    for (int m = 0; m < M; ++m)
      for (int h = 0; h < G; ++h)
        if (nr[h] > 0) few_rows_store(g.C + m * g.ldc + n + 8 * h, out[m][h], nr[h]);
  }
}

// op(B) plain: a row segment of G x 8 columns per k (masked past N).
template <int M, int G>
VW_TARGET_AVX2 void few_rows_nb_avx2(const Gemm& g, FewRowsA a, int64_t kb, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; n += 8 * G) {
    __m256i mask[G];
    int nr[G];
    for (int h = 0; h < G; ++h) {
      nr[h] = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(8, n1 - (n + 8 * h))));
      alignas(32) int32_t mk[8];
      for (int j = 0; j < 8; ++j) mk[j] = j < nr[h] ? -1 : 0;
      mask[h] = _mm256_load_si256(reinterpret_cast<const __m256i*>(mk));
    }
    __m256 out[M][G];
    for (int m = 0; m < M; ++m)
      for (int h = 0; h < G; ++h) out[m][h] = _mm256_setzero_ps();  // set by the first K block (K > 0)
    for (int64_t pc = 0; pc < g.K; pc += kb) {
      const int64_t kc = std::min(kb, g.K - pc);
      __m256 acc[M][G];
      for (int m = 0; m < M; ++m)
        for (int h = 0; h < G; ++h) acc[m][h] = _mm256_setzero_ps();
      for (int64_t k = pc; k < pc + kc; ++k) {
        const float* brow = g.B + k * g.ldb + n;
        for (int h = 0; h < G; ++h) {
          if (nr[h] == 0) continue;
          const __m256 b = nr[h] == 8 ? _mm256_loadu_ps(brow + 8 * h) : _mm256_maskload_ps(brow + 8 * h, mask[h]);
          for (int m = 0; m < M; ++m) acc[m][h] += _mm256_broadcast_ss(a.p + m * a.ld + k) * b;
        }
      }
      for (int m = 0; m < M; ++m)
        for (int h = 0; h < G; ++h)
          if (nr[h] > 0)
            out[m][h] = few_rows_combine(pc == 0, g.alpha, g.beta, acc[m][h], out[m][h], g.C + m * g.ldc + n + 8 * h, nr[h]);
    }
    for (int m = 0; m < M; ++m)
      for (int h = 0; h < G; ++h)
        if (nr[h] > 0) few_rows_store(g.C + m * g.ldc + n + 8 * h, out[m][h], nr[h]);
  }
}
#endif

// Columns [n0, n1) of the M (<= kFewRows) rows of C.
template <int M>
void few_rows_cols(const Gemm& g, FewRowsA a, int64_t kb, int64_t n0, int64_t n1) {
#ifdef VW_GEMM_AVX2
  if (vw_use_avx2()) {
    if (g.tb) return M <= 2 ? few_rows_tb_avx2<M, 2>(g, a, kb, n0, n1) : few_rows_tb_avx2<M, 1>(g, a, kb, n0, n1);
    return few_rows_nb_avx2<M, 2>(g, a, kb, n0, n1);
  }
#endif
  few_rows_generic<M>(g, a, kb, n0, n1);
}

// Threads split the columns in 16-column steps, each thread reading at least kFewRowsMinElems elements of op(B).
constexpr int64_t kFewRowsMinElems = 1 << 17;

void few_rows(const Gemm& g) {
  const FewRowsA a = few_rows_a(g);
  const int64_t kblocks = cdiv(g.K, kKC), kb = cdiv(g.K, kblocks);  // as run_tile's (the summation order)
  const int64_t steps = cdiv(g.N, 16);
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(num_threads(), g.N * g.K / kFewRowsMinElems));
  parallel_for(steps, cdiv(steps, parts), [&](int64_t s0, int64_t s1) {
    const int64_t n0 = s0 * 16, n1 = std::min(g.N, s1 * 16);
    switch (g.M) {
      case 1: return few_rows_cols<1>(g, a, kb, n0, n1);
      case 2: return few_rows_cols<2>(g, a, kb, n0, n1);
      case 3: return few_rows_cols<3>(g, a, kb, n0, n1);
      default: return few_rows_cols<4>(g, a, kb, n0, n1);
    }
  });
}

}  // namespace

void sgemm_builtin(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) {  // C = beta C (0 when beta = 0, never reading C); A and B are not read
    parallel_for(M, std::max<int64_t>(1, 16384 / N), [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        float* c = C + i * ldc;
        if (beta == 0.f) {
          std::fill(c, c + N, 0.f);
        } else if (beta != 1.f) {
          for (int64_t j = 0; j < N; ++j) c[j] *= beta;
        }
      }
    });
    return;
  }
  const Gemm g{trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
  if (M <= kFewRows) return few_rows(g);
#ifdef VW_GEMM_AVX2
  if (vw_use_avx512()) return run<12, 32>(g, kernel_avx512);
  if (vw_use_avx2()) return run<6, 16>(g, kernel_avx2);
#endif
  run<kGenMR, kGenNR>(g, kernel_generic);
}

const char* gemm_builtin_kernel() {
  if (vw_use_avx512()) return "avx512f 12x32";
  if (vw_use_avx2()) return "avx2+fma 6x16";
  return kGenMR == 8 ? "portable 8x8" : "portable 4x8";
}

}  // namespace vw::cpu
