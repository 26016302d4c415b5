// Batched matmul and column sums on CUDA (semantics: the CPU backend's matmul.cpp).
//   matmul:   C[b] (=|+=) alpha op(A[b]) op(B[b]) + bias[N] through cuBLAS (CUBLAS_COMPUTE_32F: float32 stays
//             true fp32, no TF32; bf16 uses tensor cores with fp32 accumulation).
//             Dtypes: A, B, C float32 (bias float32); or A, B bfloat16 with C bfloat16 or float32 (fp32 C
//             is how bf16 activations produce fp32 weight gradients) and bias float32 or bfloat16.
//             Batches whose C blocks cannot overlap (strideC >= M*N) run as one strided-batched GEMM; else
//             (strideC = 0 accumulation, overlapping blocks) one GEMM per batch, in batch order, as the CPU.
//             One product with a bias and nothing to accumulate (F.linear's forward) is one cuBLASLt GEMM with
//             the bias epilogue (gemm_bias_lt); otherwise, or where cuBLASLt has no algorithm for it, the bias
//             is written into (or added onto) C first and the GEMM then accumulates (beta = 1).
//   sum_rows: y[C] (=|+=) sum_r X[r, :] in double, deterministic (engine_common.cuh column_sums).
#include <mutex>
#include <unordered_map>

#include "../../core/matmul_args.h"
#include "engine_common.cuh"

namespace vw::cuda {

namespace {

using namespace eng;

// C[b * sC + m * N + n] = bias[n] (accumulate: +=) for b < batch, m < M, n < N.
template <typename TC, typename TB>
__global__ void __launch_bounds__(kThreads)
    bias_rows_kernel(TC* __restrict__ C, const TB* __restrict__ bias, int64_t batch, int64_t M, int64_t N, int64_t sC,
                     bool acc) {
  const int64_t total = batch * M * N;
  for (int64_t e = global_tid(); e < total; e += global_stride()) {
    const int64_t n = e % N, row = e / N, b = row / M, m = row % M;
    TC* p = C + b * sC + m * N + n;
    const float v = to_float(bias[n]);
    *p = from_float<TC>(acc ? to_float(*p) + v : v);
  }
}

void launch_bias(const char* op, const Context& ctx, void* C, DType tc, const void* bias, DType tb, int64_t batch,
                 int64_t M, int64_t N, int64_t sC, bool acc) {
  const unsigned grid = grid_for(ctx, batch * M * N);
  dispatch_float(tc, [&](auto ctag) {
    using TC = typename decltype(ctag)::type;
    dispatch_float(tb, [&](auto btag) {
      using TB = typename decltype(btag)::type;
      launch(op, ctx, grid, kThreads, 0, bias_rows_kernel<TC, TB>, static_cast<TC*>(C), static_cast<const TB*>(bias),
             batch, M, N, sC, acc);
    });
  });
}

// Row-major strided-batched GEMM (see gemm_rm in common.cuh for the operand swap).
void gemm_batched_rm(const char* op, cublasHandle_t handle, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                     const void* A, cudaDataType_t type_ab, int64_t lda, int64_t sA, const void* B, int64_t ldb,
                     int64_t sB, float beta, void* C, cudaDataType_t type_c, int64_t ldc, int64_t sC, int64_t count) {
  const int64_t kMax = INT_MAX;
  if (M > kMax || N > kMax || K > kMax || lda > kMax || ldb > kMax || ldc > kMax || count > kMax)
    throw_range_error("[", op, "] GEMM sizes M=", M, " N=", N, " K=", K, " batch=", count, " exceed cuBLAS's int range");
  CUBLAS_CHECK(op, cublasGemmStridedBatchedEx(handle, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                              static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), &alpha, B,
                                              type_ab, static_cast<int>(ldb), static_cast<long long>(sB), A, type_ab,
                                              static_cast<int>(lda), static_cast<long long>(sA), &beta, C, type_c,
                                              static_cast<int>(ldc), static_cast<long long>(sC), static_cast<int>(count),
                                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// ------------------------------------------------------------------------------ cuBLASLt with the bias epilogue
// C[M, N] = alpha op(A) op(B) + bias[N] in one GEMM (CUBLASLT_EPILOGUE_BIAS), fp32 accumulation and one rounding
// into C: no bias pass writing C before a GEMM that reads it back (beta 1). Row-major C is column-major C^T, so as
// in gemm_rm the operands swap: cuBLASLt's first matrix is B, its second A, and the bias runs along C^T's rows.
// The plan (descriptors and the heuristic's algorithm) is cached per shape, types and pointer alignment: a heuristic
// query costs tens of microseconds, and one algorithm per key keeps results the same call to call (and in a graph).

struct LtKey {
  int64_t M, N, K;
  bool ta, tb;
  int type_ab, type_c, type_bias, align_a, align_b, align_c;
  bool operator==(const LtKey& o) const {
    return M == o.M && N == o.N && K == o.K && ta == o.ta && tb == o.tb && type_ab == o.type_ab && type_c == o.type_c &&
           type_bias == o.type_bias && align_a == o.align_a && align_b == o.align_b && align_c == o.align_c;
  }
};
struct LtKeyHash {
  size_t operator()(const LtKey& k) const {
    size_t h = std::hash<int64_t>()(k.M);
    for (int64_t v : {k.N, k.K, int64_t{k.ta} | int64_t{k.tb} << 1, int64_t{k.type_ab}, int64_t{k.type_c}, int64_t{k.type_bias},
                      int64_t{k.align_a}, int64_t{k.align_b}, int64_t{k.align_c}})
      h = h * 1000003u ^ std::hash<int64_t>()(v);
    return h;
  }
};
// ok = false: cuBLASLt offered no algorithm (the call then takes the bias pass and cublasGemmEx). Never destroyed,
// as the context is not.
struct LtPlan {
  bool ok = false;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t first = nullptr, second = nullptr, out = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

LtPlan make_lt_plan(const Context& ctx, const LtKey& k) {
  LtPlan p;
  const cudaDataType_t tab = static_cast<cudaDataType_t>(k.type_ab), tc = static_cast<cudaDataType_t>(k.type_c),
                       tbias = static_cast<cudaDataType_t>(k.type_bias);
  const cublasOperation_t op_first = k.tb ? CUBLAS_OP_T : CUBLAS_OP_N, op_second = k.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
  const uint64_t ws = ctx.lt_workspace_bytes;
  const uint32_t al_a = static_cast<uint32_t>(k.align_b), al_b = static_cast<uint32_t>(k.align_a), al_c = static_cast<uint32_t>(k.align_c);
  cublasLtMatmulPreference_t pref = nullptr;
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  // Column-major views: B (row-major [K, N], or [N, K] when tb) is [N, K] / [K, N] with ld N / K; A likewise.
  bool ok = cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_first, sizeof op_first) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_second, sizeof op_second) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &tbias, sizeof tbias) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatrixLayoutCreate(&p.first, tab, k.tb ? k.K : k.N, k.tb ? k.N : k.K, k.tb ? k.K : k.N) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatrixLayoutCreate(&p.second, tab, k.ta ? k.M : k.K, k.ta ? k.K : k.M, k.ta ? k.M : k.K) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatrixLayoutCreate(&p.out, tc, k.N, k.M, k.N) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulPreferenceCreate(&pref) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulAlgoGetHeuristic(ctx.lt, p.desc, p.first, p.second, p.out, p.out, pref, 1, &res, &found) == CUBLAS_STATUS_SUCCESS &&
            found > 0;
  if (pref) cublasLtMatmulPreferenceDestroy(pref);
  if (ok) {
    p.ok = true;
    p.algo = res.algo;
  } else {
    if (p.desc) cublasLtMatmulDescDestroy(p.desc);
    for (cublasLtMatrixLayout_t l : {p.first, p.second, p.out})
      if (l) cublasLtMatrixLayoutDestroy(l);
    p = LtPlan{};
  }
  return p;
}

// C = alpha op(A) op(B) + bias through cuBLASLt; false (nothing done) where it offers no algorithm for this key.
bool gemm_bias_lt(const char* op, const Context& ctx, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                  const void* A, const void* B, cudaDataType_t type_ab, void* C, cudaDataType_t type_c, const void* bias,
                  cudaDataType_t type_bias) {
  if (M > INT_MAX || N > INT_MAX || K > INT_MAX || alignment(bias) < 16) return false;
  static std::mutex mu;
  static std::unordered_map<LtKey, LtPlan, LtKeyHash> plans;
  const LtKey key{M, N, K, ta, tb, static_cast<int>(type_ab), static_cast<int>(type_c), static_cast<int>(type_bias),
                  alignment(A), alignment(B), alignment(C)};
  LtPlan plan;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = plans.find(key);
    if (it == plans.end()) it = plans.emplace(key, make_lt_plan(ctx, key)).first;
    plan = it->second;
  }
  if (!plan.ok) return false;
  // The bias pointer is the call's; the cached descriptor is written here, under the ops' single host thread.
  CUBLAS_CHECK(op, cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
  const float beta = 0.f;
  CUBLAS_CHECK(op, cublasLtMatmul(ctx.lt, plan.desc, &alpha, B, plan.first, A, plan.second, &beta, C, plan.out, C, plan.out,
                                  &plan.algo, ctx.lt_workspace, ctx.lt_workspace_bytes, ctx.stream));
  return true;
}

// y[j] = acc ? float(y[j] + s) : float(s) (the CPU's store, the add in double).
struct SumRowsTerm {
  const float* x;
  int64_t C;
  __device__ void operator()(int64_t r, int64_t j, double (&v)[1]) const { v[0] = x[r * C + j]; }
};
struct SumRowsStore {
  float* y;
  bool acc;
  __device__ void operator()(int64_t j, const double (&s)[1]) const {
    y[j] = acc ? static_cast<float>(static_cast<double>(y[j]) + s[0]) : static_cast<float>(s[0]);
  }
};

}  // namespace

void matmul_cuda(const OpCall& c) {
  const char* op = c.op;
  const MatmulArgs a = read_matmul(c, true);
  if (a.empty()) return;
  const int64_t batch = a.batch, M = a.M, N = a.N, K = a.K, MN = a.MN, sA = a.sA, sB = a.sB, sC = a.sC;
  const bool ta = a.trans_a, tb = a.trans_b, has_bias = a.has_bias, acc = a.acc;
  const float alpha = a.alpha;
  const DType t = a.t, t_bias = a.t_bias, t_c = a.t_c;
  const void *A = a.A, *B = a.B, *bias = a.bias;
  void* C = a.C;
  Context& ctx = context(op);

  const cudaDataType_t type_ab = cuda_type(t), type_c = cuda_type(t_c);
  const int64_t lda = ta ? M : K, ldb = tb ? K : N;
  const float beta = (acc || has_bias) ? 1.f : 0.f;
  if (batch == 1 || sC < MN) {
    // C blocks may overlap (strideC = 0 sums the batches): strictly in batch order.
    for (int64_t b = 0; b < batch; ++b) {
      void* Cb = elem_offset(C, b * sC, t_c);
      if (batch == 1 && has_bias && !acc && K > 0 &&
          gemm_bias_lt(op, ctx, ta, tb, M, N, K, alpha, A, B, type_ab, Cb, type_c, bias, cuda_type(t_bias)))
        continue;
      if (has_bias) launch_bias(op, ctx, Cb, t_c, bias, t_bias, 1, M, N, 0, acc);
      if (K == 0) {
        // cuBLAS with k = 0 and beta = 0 is not guaranteed to write C.
        if (!acc && !has_bias) CUDA_CHECK(op, cudaMemsetAsync(Cb, 0, static_cast<size_t>(MN) * dtype_size(t_c), ctx.stream));
        continue;
      }
      gemm_rm(op, ctx.blas, ta, tb, M, N, K, alpha, elem_offset(A, b * sA, t), type_ab, lda, elem_offset(B, b * sB, t),
              type_ab, ldb, beta, Cb, type_c, N);
    }
  } else {
    if (has_bias) launch_bias(op, ctx, C, t_c, bias, t_bias, batch, M, N, sC, acc);
    if (K == 0) {
      if (!acc && !has_bias) {
        if (sC == MN) {
          CUDA_CHECK(op, cudaMemsetAsync(C, 0, static_cast<size_t>(batch * MN) * dtype_size(t_c), ctx.stream));
        } else {
          for (int64_t b = 0; b < batch; ++b)
            CUDA_CHECK(op, cudaMemsetAsync(elem_offset(C, b * sC, t_c), 0, static_cast<size_t>(MN) * dtype_size(t_c), ctx.stream));
        }
      }
    } else {
      // cuBLAS batch counts are int; 65535 per call keeps every implementation's grid limits in range.
      constexpr int64_t kGroup = 65535;
      for (int64_t b0 = 0; b0 < batch; b0 += kGroup) {
        const int64_t nb = std::min(kGroup, batch - b0);
        gemm_batched_rm(op, ctx.blas, ta, tb, M, N, K, alpha, elem_offset(A, b0 * sA, t), type_ab, lda, sA,
                        elem_offset(B, b0 * sB, t), ldb, sB, beta, elem_offset(C, b0 * sC, t_c), type_c, N, sC, nb);
      }
    }
  }
}

void sum_rows_cuda(const OpCall& c) {
  const char* op = c.op;
  const SumRowsArgs a = read_sum_rows(c);
  Context& ctx = context(op);
  if (a.C == 0) return;
  column_sums<1>(op, ctx, a.R, a.C, SumRowsTerm{a.x, a.C}, SumRowsStore{a.y, a.acc});
}

}  // namespace vw::cuda
