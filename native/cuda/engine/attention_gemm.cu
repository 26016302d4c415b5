// Scaled dot-product attention through cuBLAS: the 'gemm' attention kernel (semantics: the CPU backend's
// attention.cpp, the same as the tiled kernels of attention.cu). The products run on tensor cores in bf16
// (true fp32 in float32), batched over (batch, head) by pointer arrays, so GQA and the [B, T, H, Dh] layout need
// no copies; the softmax is a row pass between them. Query rows go in chunks of Qc, so memory holds the scores of
// Qc rows per head, never T x T: Qc is the largest that fits the workspace budget (settings below), at least 16.
//   forward, per chunk of query rows [q0, q0 + qn), which see keys [0, kn) (kn < Tk when causal):
//     S = scale Q_c K^T              (float32 [qn, kn] per (b, h))
//     P = softmax over the visible keys, lse = m + log l    (row pass; a row with no visible key: P = 0,
//                                                            lse = -inf, so O = 0)
//     O_c = P V                      (P in the input dtype, as flash-attention rounds it; fp32 accumulation)
//   backward: D = rowsum(dO * O) once; then per chunk
//     S = scale Q_c K^T, dP = dO_c V^T
//     P = softmax(S) recomputed exactly (max and sum of this row: no dependence on the stored lse's rounding),
//     dS = P (dP - D)                (row pass; P and dS in the input dtype, as FlashAttention-2 rounds them)
//     dV += P^T dO_c, dK += scale dS^T Q_c, dQ_c += scale dS K   (float32 accumulators, cast once at the end;
//                                             dK, dV by one GEMM per query head of a kv head, so that no two batch
//                                             entries of one call write the same block)
// benchmarks/gpu/attention_gemm_model.py models this path in float64: its host logic, and what its bf16 roundings
// cost (at most 0.6% of the parity table's bf16 tolerance of 1%, over 100 seeds of its x100-scores case).
// Every product has one summation order fixed by the shapes, so results are run-to-run identical.
// Chosen per call by attention_uses_gemm (the settings' kernel); not yet run on a GPU (benchmarks/RESULTS.md).
#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <tuple>
#include <utility>
#include <type_traits>

#include "../../core/attention_args.h"
#include "attention_gemm.h"
#include "engine_common.cuh"

namespace vw::cuda {

// ------------------------------------------------------------------------------------------- settings

namespace {
constexpr std::pair<AttentionKernel, const char*> kKernelNames[] = {
    {AttentionKernel::Auto, "auto"}, {AttentionKernel::Tiled, "tiled"}, {AttentionKernel::Gemm, "gemm"}};
}  // namespace

const char* attention_kernel_name(AttentionKernel k) {
  for (const auto& [kind, name] : kKernelNames)
    if (kind == k) return name;
  return "auto";
}

bool attention_kernel_from_name(const char* name, AttentionKernel& k) {
  for (const auto& [kind, n] : kKernelNames)
    if (std::strcmp(n, name) == 0) return k = kind, true;
  return false;
}

namespace {
AttentionSettings g_attention = [] {
  AttentionSettings s;
  // another value: src/native.ts refuses it before the addon loads
  if (const char* e = std::getenv("VWLMM_CUDA_ATTENTION")) attention_kernel_from_name(e, s.kernel);
  return s;
}();
}  // namespace

AttentionSettings attention_settings() { return g_attention; }
AttentionSettings set_attention_settings(const AttentionSettings& s) {
  const AttentionSettings was = g_attention;
  g_attention = s;
  return was;
}

// 'auto' keeps the tiled kernels until the gemm path has passed the parity table on a GPU.
// bf16 takes the gemm path only when Dh is a multiple of 8: cuBLAS's batched GEMMs on 16-bit types assume each
// matrix pointer is 16-byte aligned when k * 2 bytes is a multiple of 16 (4-byte when a multiple of 4), and cannot
// see pointers held in device arrays; a head's rows start head * Dh * 2 bytes apart (float32 accumulators Dh * 4),
// so another Dh could fault with a misaligned address that poisons the context. Those shapes run tiled.
bool attention_uses_gemm(const AttentionDims& d, DType t) {
  return g_attention.kernel == AttentionKernel::Gemm && (t == DType::F32 || d.Dh % 8 == 0);
}

namespace {
std::atomic<int64_t> g_gemm_calls{0};
}
int64_t attention_gemm_calls() { return g_gemm_calls.load(); }

namespace {

using namespace eng;
using Dims = AttentionDims;

constexpr int64_t kMinChunkRows = 16;
constexpr int64_t kMaxBatchEntries = 65535;  // per cuBLAS call, as matmul.cu
// The three pointer arrays of a call lie this many entries apart, so each starts 16-byte aligned (at an odd
// stride the second began at 8 mod 16, a layout newer cuBLAS releases refuse: NOT_SUPPORTED).
constexpr int64_t kPtrStride = 65536;

// ------------------------------------------------------------------------------------------- pointers

// One GEMM operand of batch entry i = b * inner + k: base + b * sb + head * sh bytes, head = k * mul / div + add.
// (b, h) entries read kv head h / G as (mul 1, div G); (b, g) entries read query head g G + r as (G, 1, r).
struct Operand {
  const char* base;
  int64_t sb, sh;
  int64_t mul, div, add;
};

__device__ __forceinline__ const char* operand_at(const Operand& o, int64_t i, int64_t inner) {
  const int64_t b = i / inner, k = i % inner;
  return o.base + b * o.sb + (k * o.mul / o.div + o.add) * o.sh;
}

__global__ void __launch_bounds__(kThreads)
    fill_pointers_kernel(Operand a, Operand b, Operand c, int64_t first, int64_t inner, int64_t count,
                         const void** pa, const void** pb, void** pc) {
  for (int64_t i = global_tid(); i < count; i += global_stride()) {
    pa[i] = operand_at(a, first + i, inner);
    pb[i] = operand_at(b, first + i, inner);
    pc[i] = const_cast<char*>(operand_at(c, first + i, inner));
  }
}

// The pointer arrays of one call, reused by each GEMM in stream order (a fill runs after the previous GEMM).
struct Pointers {
  DeviceBuffer buf;
  const void** a() const { return buf.as<const void*>(); }
  const void** b() const { return buf.as<const void*>() + kPtrStride; }
  void** c() const { return buf.as<void*>() + 2 * kPtrStride; }
};

struct Mat {
  Operand at;
  cudaDataType_t type;
  int64_t ld;  // row stride of the row-major matrix as stored
};

// Row-major C[M, N] = alpha op(A) op(B) + beta C for `entries` = batch x inner entries (see gemm_rm in
// common.cuh for the operand swap), in groups of kMaxBatchEntries.
void gemm_entries(const char* op, const Context& ctx, const Pointers& p, int64_t batch, int64_t inner, bool ta,
                  bool tb, int64_t M, int64_t N, int64_t K, float alpha, const Mat& A, const Mat& B, float beta,
                  const Mat& C) {
  if (M > INT_MAX || N > INT_MAX || K > INT_MAX || A.ld > INT_MAX || B.ld > INT_MAX || C.ld > INT_MAX)
    throw_range_error("[", op, "] attention GEMM sizes M=", M, " N=", N, " K=", K, " exceed cuBLAS's int range");
  const int64_t entries = batch * inner;
  for (int64_t first = 0; first < entries; first += kMaxBatchEntries) {
    const int64_t n = std::min(kMaxBatchEntries, entries - first);
    launch(op, ctx, grid_for(ctx, n), kThreads, 0, fill_pointers_kernel, A.at, B.at, C.at, first, inner, n, p.a(),
           p.b(), p.c());
    CUBLAS_CHECK(op, cublasGemmBatchedEx(ctx.blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                         static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), &alpha,
                                         p.b(), B.type, static_cast<int>(B.ld), p.a(), A.type, static_cast<int>(A.ld),
                                         &beta, p.c(), C.type, static_cast<int>(C.ld), static_cast<int>(n),
                                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
}

// ------------------------------------------------------------------------------------------- row passes

// One chunk's geometry: rows (b, h, i) of the score blocks, i < qn, query t = q0 + i, keys [0, kn).
struct Chunk {
  int64_t B, Tq, Tk, Hq, q0, qn, kn, Qc, ldS;
  int causal;
  const int32_t* mask;
};

__device__ __forceinline__ bool key_visible(const Chunk& c, int64_t b, int64_t j, int64_t t) {
  return (c.mask == nullptr || c.mask[b * c.Tk + j] != 0) && (!c.causal || j <= c.Tk - c.Tq + t);
}

// One chunk row's softmax over its visible keys, computed by a warp: the max m, inv = 1 / sum exp(S - m) and
// lse = m + log sum. `none`: no visible key (P = 0, lse = -inf); a NaN score makes the sum NaN, and P and lse NaN,
// as on the CPU.
struct RowSoftmax {
  float m, inv, lse;
  bool none;
  __device__ __forceinline__ float p(const Chunk& c, const float* S, int64_t off, int64_t b, int64_t j, int64_t t) const {
    return key_visible(c, b, j, t) && !none ? expf(S[off + j] - m) * inv : 0.f;
  }
};
__device__ __forceinline__ RowSoftmax row_softmax(const Chunk& c, const float* S, int64_t off, int64_t b, int64_t t, int lane) {
  float m = -INFINITY;
  for (int64_t j = lane; j < c.kn; j += 32)
    if (key_visible(c, b, j, t)) m = NanMaxOp{}(m, S[off + j]);
  m = warp_allreduce(m, NanMaxOp{});
  float l = 0.f;
  if (m != -INFINITY) {
    for (int64_t j = lane; j < c.kn; j += 32)
      if (key_visible(c, b, j, t)) l += expf(S[off + j] - m);
    l = warp_allreduce(l, SumOp{});
  }
  const bool none = l == 0.f;
  return {m, none ? 0.f : 1.f / l, none ? -INFINITY : m + logf(l), none};
}

// The row pass of a chunk, one warp per row: P = softmax(S) over the visible keys (stored in T), and
//   forward (kGrad false): lse;
//   backward (kGrad true): dS = P (dP - D_t) (stored in T). It recomputes the softmax from S exactly (its own max and
//   sum), not from the stored lse.
template <typename T, bool kGrad>
__global__ void __launch_bounds__(kThreads)
    softmax_rows_kernel(Chunk c, const float* __restrict__ S, T* __restrict__ P, float* __restrict__ lse,
                        const float* __restrict__ dP, const float* __restrict__ D, T* __restrict__ dS) {
  int lane;
  int64_t first, step;
  team_coords<32>(lane, first, step);
  const int64_t rows = c.B * c.Hq * c.qn;
  for (int64_t r = first; r < rows; r += step) {
    const int64_t bh = r / c.qn, i = r % c.qn, b = bh / c.Hq, t = c.q0 + i;
    const int64_t off = (bh * c.Qc + i) * c.ldS;
    const RowSoftmax sm = row_softmax(c, S, off, b, t, lane);
    if constexpr (!kGrad) {
      for (int64_t j = lane; j < c.kn; j += 32) P[off + j] = from_float<T>(sm.p(c, S, off, b, j, t));
      if (lane == 0) lse[bh * c.Tq + t] = sm.lse;
    } else {
      const float Dt = D[bh * c.Tq + t];
      for (int64_t j = lane; j < c.kn; j += 32) {
        const float p = sm.p(c, S, off, b, j, t);
        P[off + j] = from_float<T>(p);
        dS[off + j] = from_float<T>(p * (dP[off + j] - Dt));
      }
    }
  }
}

// D[(b, h), t] = sum_d dO[b, t, h, d] O[b, t, h, d] (double); one warp per row.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    row_dots_kernel(int64_t B, int64_t Tq, int64_t Hq, int64_t Dh, const T* __restrict__ dO, const T* __restrict__ O,
                    float* __restrict__ D) {
  int lane;
  int64_t first, step;
  team_coords<32>(lane, first, step);
  const int64_t rows = B * Hq * Tq;
  for (int64_t r = first; r < rows; r += step) {
    const int64_t bh = r / Tq, t = r % Tq, b = bh / Hq, h = bh % Hq;
    const int64_t base = ((b * Tq + t) * Hq + h) * Dh;
    double s = 0.0;
    for (int64_t d = lane; d < Dh; d += 32) s += static_cast<double>(to_float(dO[base + d])) * to_float(O[base + d]);
    s = warp_allreduce(s, SumOp{});
    if (lane == 0) D[r] = static_cast<float>(s);
  }
}

// Forward rows t in [q0, q0 + qn) of every (b, h) that see no key at all (kn = 0): O = 0, lse = -inf.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    empty_rows_kernel(int64_t B, int64_t Tq, int64_t Hq, int64_t Dh, int64_t q0, int64_t qn, T* __restrict__ out,
                      float* __restrict__ lse) {
  const int64_t row_elems = Hq * Dh, total = B * qn * row_elems;
  for (int64_t e = global_tid(); e < total; e += global_stride()) {
    const int64_t b = e / (qn * row_elems), rem = e % (qn * row_elems);
    out[(b * Tq + q0) * row_elems + rem] = from_float<T>(0.f);
    if (rem % Dh == 0) {
      const int64_t i = rem / row_elems, h = (rem % row_elems) / Dh;
      lse[(b * Hq + h) * Tq + q0 + i] = -INFINITY;
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) to_dtype_kernel(const float* __restrict__ x, T* __restrict__ y, int64_t n) {
  for (int64_t e = global_tid(); e < n; e += global_stride()) y[e] = from_float<T>(x[e]);
}

// ------------------------------------------------------------------------------------------- host side

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Query rows per chunk: the most whose per-head score blocks (bytes_per_elem each) fit the budget, at least
// kMinChunkRows, at most Tq; a multiple of 16 when there is more than one chunk.
int64_t chunk_rows(const Dims& d, int64_t ldS, int64_t bytes_per_elem) {
  const int64_t per_row = std::max<int64_t>(1, d.B * d.Hq * ldS * bytes_per_elem);
  int64_t rows = std::max<int64_t>(kMinChunkRows, g_attention.workspace_bytes / per_row);
  if (rows >= d.Tq) return d.Tq;
  return std::max<int64_t>(kMinChunkRows, rows / 16 * 16);
}

// The keys the chunk's last query row can see: all of them, or up to the causal diagonal.
int64_t chunk_keys(const Dims& d, int64_t q0, int64_t qn) {
  return d.causal ? std::clamp<int64_t>(d.Tk - d.Tq + q0 + qn, 0, d.Tk) : d.Tk;
}

// Operands of the [B, T, H, Dh] tensors: rows t0.. of (b, head); `kv` reads kv head h / G from (b, h) entries.
template <typename T>
Operand rows_of(const void* base, int64_t T_, int64_t H, int64_t Dh, int64_t t0, int64_t mul, int64_t div, int64_t add) {
  const int64_t e = static_cast<int64_t>(sizeof(T));
  return {static_cast<const char*>(base) + t0 * H * Dh * e, T_ * H * Dh * e, Dh * e, mul, div, add};
}
// The score blocks [(b, h) entries of Qc x ldS]; elem bytes e.
Operand blocks_of(const void* base, int64_t Hq, int64_t Qc, int64_t ldS, int64_t e, int64_t mul, int64_t add) {
  return {static_cast<const char*>(base), Hq * Qc * ldS * e, Qc * ldS * e, mul, 1, add};
}

template <typename T>
void forward(const char* op, const Context& ctx, const Dims& d, const AttentionTensors<void>& io) {
  const cudaDataType_t tt = cuda_type(io.t);
  const int64_t e = sizeof(T), ldS = round_up(std::max<int64_t>(d.Tk, 1), 8), Qc = chunk_rows(d, ldS, 4 + e);
  const int64_t ldq = d.Hq * d.Dh, ldk = d.Hkv * d.Dh, entries = d.B * d.Hq * Qc * ldS;
  DeviceBuffer S(op, ctx, sizeof(float) * static_cast<size_t>(entries), nullptr);
  DeviceBuffer P(op, ctx, sizeof(T) * static_cast<size_t>(entries), nullptr);
  Pointers ptrs{DeviceBuffer(op, ctx, 3 * sizeof(void*) * static_cast<size_t>(kPtrStride), nullptr)};
  const Operand kv_k = rows_of<T>(io.K, d.Tk, d.Hkv, d.Dh, 0, 1, d.G, 0), kv_v = rows_of<T>(io.V, d.Tk, d.Hkv, d.Dh, 0, 1, d.G, 0);
  for (int64_t q0 = 0; q0 < d.Tq; q0 += Qc) {
    const int64_t qn = std::min(Qc, d.Tq - q0), kn = chunk_keys(d, q0, qn);
    if (kn == 0) {
      launch(op, ctx, grid_for(ctx, d.B * qn * ldq), kThreads, 0, empty_rows_kernel<T>, d.B, d.Tq, d.Hq, d.Dh, q0, qn,
             static_cast<T*>(io.O), io.lse);
      continue;
    }
    const Mat q{rows_of<T>(io.Q, d.Tq, d.Hq, d.Dh, q0, 1, 1, 0), tt, ldq}, k{kv_k, tt, ldk}, v{kv_v, tt, ldk};
    const Mat s{blocks_of(S.get(), d.Hq, Qc, ldS, 4, 1, 0), CUDA_R_32F, ldS}, p{blocks_of(P.get(), d.Hq, Qc, ldS, e, 1, 0), tt, ldS};
    const Mat o{rows_of<T>(io.O, d.Tq, d.Hq, d.Dh, q0, 1, 1, 0), tt, ldq};
    gemm_entries(op, ctx, ptrs, d.B, d.Hq, false, true, qn, kn, d.Dh, d.scale, q, k, 0.f, s);
    const Chunk c{d.B, d.Tq, d.Tk, d.Hq, q0, qn, kn, Qc, ldS, d.causal ? 1 : 0, io.mask};
    launch(op, ctx, row_grid(ctx, d.B * d.Hq * qn, true), kThreads, 0, softmax_rows_kernel<T, false>, c, S.as<float>(),
           P.as<T>(), io.lse, nullptr, nullptr, nullptr);
    gemm_entries(op, ctx, ptrs, d.B, d.Hq, false, false, qn, d.Dh, kn, 1.f, p, v, 0.f, o);
  }
}

template <typename T>
void backward(const char* op, const Context& ctx, const Dims& d, const AttentionTensors<void>& io) {
  constexpr bool kF32 = std::is_same_v<T, float>;
  const cudaDataType_t tt = cuda_type(io.t);
  const int64_t e = sizeof(T), ldS = round_up(std::max<int64_t>(d.Tk, 1), 8);
  const int64_t Qc = chunk_rows(d, ldS, 8 + 2 * e);
  const int64_t ldq = d.Hq * d.Dh, ldk = d.Hkv * d.Dh, entries = d.B * d.Hq * Qc * ldS;
  DeviceBuffer D(op, ctx, sizeof(float) * static_cast<size_t>(d.lse_elems), nullptr);
  launch(op, ctx, row_grid(ctx, std::max<int64_t>(d.lse_elems, 1), true), kThreads, 0, row_dots_kernel<T>, d.B, d.Tq,
         d.Hq, d.Dh, static_cast<const T*>(io.dO), static_cast<const T*>(io.saved_O), D.as<float>());
  // dQ, dK, dV accumulate (over the chunks and the G query heads of a kv head) in float32 from zero: in place when T
  // is float. Rows that see no key keep their zeros.
  DeviceBuffer acc(op, ctx, kF32 ? 0 : sizeof(float) * static_cast<size_t>(d.q_elems + 2 * d.kv_elems), nullptr);
  float* dQ = kF32 ? static_cast<float*>(static_cast<void*>(io.dQ)) : acc.as<float>();
  float* dK = kF32 ? static_cast<float*>(static_cast<void*>(io.dK)) : acc.as<float>() + d.q_elems;
  float* dV = kF32 ? static_cast<float*>(static_cast<void*>(io.dV)) : acc.as<float>() + d.q_elems + d.kv_elems;
  for (auto [p, n] : {std::pair{dQ, d.q_elems}, std::pair{dK, d.kv_elems}, std::pair{dV, d.kv_elems}})
    if (n > 0) CUDA_CHECK(op, cudaMemsetAsync(p, 0, sizeof(float) * static_cast<size_t>(n), ctx.stream));
  DeviceBuffer S(op, ctx, sizeof(float) * static_cast<size_t>(entries), nullptr);
  DeviceBuffer dP(op, ctx, sizeof(float) * static_cast<size_t>(entries), nullptr);
  DeviceBuffer P(op, ctx, sizeof(T) * static_cast<size_t>(entries), nullptr);
  DeviceBuffer dS(op, ctx, sizeof(T) * static_cast<size_t>(entries), nullptr);
  Pointers ptrs{DeviceBuffer(op, ctx, 3 * sizeof(void*) * static_cast<size_t>(kPtrStride), nullptr)};

  // (b, h) entries read kv head h / G; (b, g) entries (dK, dV) read query head g G + r.
  const Mat k{rows_of<T>(io.K, d.Tk, d.Hkv, d.Dh, 0, 1, d.G, 0), tt, ldk}, v{rows_of<T>(io.V, d.Tk, d.Hkv, d.Dh, 0, 1, d.G, 0), tt, ldk};
  const Mat dk{rows_of<float>(dK, d.Tk, d.Hkv, d.Dh, 0, 1, 1, 0), CUDA_R_32F, ldk};
  const Mat dv{rows_of<float>(dV, d.Tk, d.Hkv, d.Dh, 0, 1, 1, 0), CUDA_R_32F, ldk};
  for (int64_t q0 = 0; q0 < d.Tq; q0 += Qc) {
    const int64_t qn = std::min(Qc, d.Tq - q0), kn = chunk_keys(d, q0, qn);
    if (kn == 0) continue;  // these queries see no key: no gradient anywhere
    const Mat q{rows_of<T>(io.Q, d.Tq, d.Hq, d.Dh, q0, 1, 1, 0), tt, ldq}, dout{rows_of<T>(io.dO, d.Tq, d.Hq, d.Dh, q0, 1, 1, 0), tt, ldq};
    const Mat dq{rows_of<float>(dQ, d.Tq, d.Hq, d.Dh, q0, 1, 1, 0), CUDA_R_32F, ldq};
    const Mat s{blocks_of(S.get(), d.Hq, Qc, ldS, 4, 1, 0), CUDA_R_32F, ldS}, dp{blocks_of(dP.get(), d.Hq, Qc, ldS, 4, 1, 0), CUDA_R_32F, ldS};
    gemm_entries(op, ctx, ptrs, d.B, d.Hq, false, true, qn, kn, d.Dh, d.scale, q, k, 0.f, s);
    gemm_entries(op, ctx, ptrs, d.B, d.Hq, false, true, qn, kn, d.Dh, 1.f, dout, v, 0.f, dp);
    const Chunk c{d.B, d.Tq, d.Tk, d.Hq, q0, qn, kn, Qc, ldS, d.causal ? 1 : 0, io.mask};
    launch(op, ctx, row_grid(ctx, d.B * d.Hq * qn, true), kThreads, 0, softmax_rows_kernel<T, true>, c, S.as<float>(),
           P.as<T>(), nullptr, dP.as<float>(), D.as<float>(), dS.as<T>());
    for (int64_t r = 0; r < d.G; ++r) {
      // (b, g) entries: query head g G + r of the chunk's P, dS, dO and Q rows; kv head g of dK, dV
      const Mat pr{blocks_of(P.get(), d.Hq, Qc, ldS, e, d.G, r), tt, ldS}, dsr{blocks_of(dS.get(), d.Hq, Qc, ldS, e, d.G, r), tt, ldS};
      const Mat doutr{rows_of<T>(io.dO, d.Tq, d.Hq, d.Dh, q0, d.G, 1, r), tt, ldq}, qr{rows_of<T>(io.Q, d.Tq, d.Hq, d.Dh, q0, d.G, 1, r), tt, ldq};
      gemm_entries(op, ctx, ptrs, d.B, d.Hkv, true, false, kn, d.Dh, qn, 1.f, pr, doutr, 1.f, dv);
      gemm_entries(op, ctx, ptrs, d.B, d.Hkv, true, false, kn, d.Dh, qn, d.scale, dsr, qr, 1.f, dk);
    }
    const Mat ds{blocks_of(dS.get(), d.Hq, Qc, ldS, e, 1, 0), tt, ldS};
    gemm_entries(op, ctx, ptrs, d.B, d.Hq, false, false, qn, d.Dh, kn, d.scale, ds, k, 1.f, dq);
  }
  if constexpr (!kF32) {
    for (auto [from, to, n] : {std::tuple{dQ, io.dQ, d.q_elems}, std::tuple{dK, io.dK, d.kv_elems}, std::tuple{dV, io.dV, d.kv_elems}})
      if (n > 0) launch(op, ctx, grid_for(ctx, n), kThreads, 0, to_dtype_kernel<T>, static_cast<const float*>(from), static_cast<T*>(to), n);
  }
}

}  // namespace

void attention_forward_gemm(const char* op, const Context& ctx, const AttentionDims& d, const AttentionTensors<void>& io) {
  g_gemm_calls.fetch_add(1);
  dispatch_float(io.t, [&](auto tag) { forward<typename decltype(tag)::type>(op, ctx, d, io); });
}

void attention_backward_gemm(const char* op, const Context& ctx, const AttentionDims& d, const AttentionTensors<void>& io) {
  g_gemm_calls.fetch_add(1);
  dispatch_float(io.t, [&](auto tag) { backward<typename decltype(tag)::type>(op, ctx, d, io); });
}

}  // namespace vw::cuda
