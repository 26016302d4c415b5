// Batched matmul and column sums (the bias gradient of a linear layer).
//   matmul:   C[b] (=|+=) alpha op(A[b]) op(B[b]) + bias[N],  op(A[b]) [M, K], op(B[b]) [K, N], C[b] [M, N];
//             batch b starts at element b*strideA / b*strideB / b*strideC of its buffer. A is stored [M, K]
//             ([K, M] when transA), B [K, N] ([N, K] when transB), row-major and contiguous within a
//             batch. alpha scales the product only. Batches are applied in order, so strideB = 0 shares
//             one B and strideC = 0 with accumulate = 1 sums every batch into one C.
//   sum_rows: y[C] (=|+=) sum_r X[r, :] in double   (db of Y = X W^T + b is sum_rows(dY)).
// matmul has no backward of its own: dA = dC op(B)^T and dB = op(A)^T dC are matmuls with other trans
// flags, and dbias = sum_rows(dC) over all batches.
#include <algorithm>
#include <cstring>
#include <vector>

#include "../core/matmul_args.h"
#include "float32_view.h"
#include "work_split.h"
#include "ops_cpu.h"
#include "gemm.h"
#include "parallel.h"

namespace vw::cpu {

namespace {
void matmul_f32(const OpCall& c) {
  const MatmulArgs a = read_matmul(c, false);
  if (a.empty()) return;
  const int64_t batch = a.batch, M = a.M, N = a.N, K = a.K, sA = a.sA, sB = a.sB, sC = a.sC;
  const bool ta = a.trans_a, tb = a.trans_b, has_bias = a.has_bias, acc = a.acc;
  const float* A = static_cast<const float*>(a.A);
  const float* B = static_cast<const float*>(a.B);
  const float* bias = static_cast<const float*>(a.bias);
  float* C = static_cast<float*>(a.C);

  // Batches run one after the other on the calling thread (the BLAS threads each GEMM itself; concurrent
  // BLAS calls from our pool would oversubscribe the cores). Being in order, overlapping outputs are well
  // defined: strideC = 0 with accumulate = 1 sums every batch into one C (dB of a B shared by the batch).
  // The bias goes into C[b] first (copied, or added when accumulating), so the GEMM then accumulates
  // (beta = 1) and C is swept once more only when there is a bias.
  const float beta = (acc || has_bias) ? 1.f : 0.f;
  for (int64_t b = 0; b < batch; ++b) {
    float* Cb = C + b * sC;
    if (has_bias) {
      parallel_for(M, row_grain(N), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          float* cr = Cb + r * N;
          if (acc) {
            for (int64_t j = 0; j < N; ++j) cr[j] += bias[j];
          } else {
            std::memcpy(cr, bias, sizeof(float) * static_cast<size_t>(N));
          }
        }
      });
    }
    sgemm(ta, tb, M, N, K, a.alpha, A + b * sA, ta ? M : K, B + b * sB, tb ? K : N, beta, Cb, N);
  }
}
}  // namespace

// bf16 operands (mixed precision): checked as CUDA checks them, then computed in float32 on widened copies.
void matmul_cpu(const OpCall& c) {
  if (read_matmul(c, true).empty()) return;
  in_float32(c, matmul_f32);
}

void sum_rows_cpu(const OpCall& c) {
  const SumRowsArgs a = read_sum_rows(c);
  const int64_t R = a.R, C = a.C;
  const bool acc = a.acc;
  const float* x = a.x;
  float* y = a.y;
  if (C == 0) return;
  auto store = [&](int64_t j, double s) { y[j] = acc ? static_cast<float>(y[j] + s) : static_cast<float>(s); };

  // Two splits, both fixed by (R, C) alone, so the result is bit-identical whatever the thread count:
  //  - few rows: column blocks, each summing its rows in order;
  //  - otherwise: fixed row chunks (reduction_chunks), each summing into its own double partial, merged in
  //    chunk order. Narrow rows are summed U at a time as one contiguous "wide row" of U*C elements (a
  //    long vectorised loop even for C = 1, the full sum), folded back to C columns at the end.
  constexpr int64_t kBlock = 128;
  if (R < 64 && C >= kBlock) {
    const int64_t blocks = (C + kBlock - 1) / kBlock;
    parallel_for(blocks, std::max<int64_t>(1, kElemGrain / std::max<int64_t>(1, R * kBlock)), [&](int64_t b0, int64_t b1) {
      double s[kBlock];
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t j0 = blk * kBlock, w = std::min(kBlock, C - j0);
        std::fill(s, s + w, 0.0);
        for (int64_t r = 0; r < R; ++r) {
          const float* xr = x + r * C + j0;
#pragma omp simd
          for (int64_t j = 0; j < w; ++j) s[j] += xr[j];
        }
        for (int64_t j = 0; j < w; ++j) store(j0 + j, s[j]);
      }
    });
    return;
  }
  const int64_t chunks = reduction_chunks(R, C);
  const int64_t rows_per = (R + chunks - 1) / chunks;
  const int64_t U = std::max<int64_t>(1, 256 / C), wide = U * C;
  std::vector<double> partial(static_cast<size_t>(chunks * C), 0.0);
  parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
    std::vector<double> acc(static_cast<size_t>(wide));
    for (int64_t ch = c0; ch < c1; ++ch) {
      std::fill(acc.begin(), acc.end(), 0.0);
      double* ap = acc.data();
      const int64_t r0 = ch * rows_per, r1 = std::min(R, r0 + rows_per);
      int64_t r = r0;
      for (; r + U <= r1; r += U) {
        const float* xr = x + r * C;
#pragma omp simd
        for (int64_t k = 0; k < wide; ++k) ap[k] += xr[k];
      }
      for (; r < r1; ++r)
        for (int64_t j = 0; j < C; ++j) ap[j] += x[r * C + j];
      double* s = partial.data() + ch * C;
      for (int64_t u = 0; u < U; ++u)
        for (int64_t j = 0; j < C; ++j) s[j] += ap[u * C + j];
    }
  });
  for (int64_t j = 0; j < C; ++j) {
    double s = 0;
    for (int64_t ch = 0; ch < chunks; ++ch) s += partial[ch * C + j];
    store(j, s);
  }
}

}  // namespace vw::cpu
