// Scaled dot-product attention on CUDA, flash-attention style (semantics: the CPU backend's attention.cpp):
//   Q [B, Tq, Hq, Dh], K, V [B, Tk, Hkv, Dh], keyMask i32 [B, Tk] (optional, 1 visible / 0 padding),
//   O [B, Tq, Hq, Dh], lse [B, Hq, Tq] (float32 always). Query head h reads kv head h / G, G = Hq / Hkv.
//   Query t sees key j when keyMask[b, j] = 1 and, when causal, j <= Tk - Tq + t. A row that sees no key
//   gets O = 0, lse = -inf and no gradient.
// Dtypes: Q, K, V, O, dO, dQ, dK, dV all float32 or all bfloat16 (loaded to fp32 in shared memory; every
// product and sum is fp32, the lse in double); lse float32; Dh <= kMaxDh (a CUDA-only limit).
//
// Tiles: kBQ = 32 query rows x kBK = 32 keys, 128 threads. A tile row is owned by 4 consecutive lanes of one
// warp ("quad"): for scores each lane computes 8 of the row's 32 entries, for the output/gradient rows each
// lane owns the head dimensions d = lane4 + 4 i. Shared rows are DP + 1 floats apart (DP = Dh rounded up to
// 16 .. 256, zero padded), so the column accesses of the 8 quads of a warp hit distinct banks.
//   forward (one pass): a block per (b, h, query tile), last tiles first (causal tiles grow with t). Key
//     tiles stream through shared memory; online softmax (running max m and sum l per row, the output
//     accumulator rescaled by exp(m_old - m_new)); O = acc / l and lse = m + log l at the end.
//   backward, three kernels, no atomics (every output element has one writer and one summation order,
//   so results are run-to-run bit-identical):
//     1. row statistics, a block per (b, h, query tile): D_t = dO_t . O_t (double), and the exact log-sum
//        L_t = lse_t + log sum_j exp(S_tj - lse_t) over the visible keys, kept as a float hi + lo pair.
//        P = exp((S - hi) - lo) is then exactly normalised, so the float rounding of the stored lse does
//        not leak into the gradients (the CPU renormalises P by its row sum for the same reason);
//     2. dK, dV: a block per (b, kv head, key tile) owns those rows of dK and dV in registers and loops over
//        the G query heads of the kv head and the query tiles that can see the key tile, recomputing
//        S^T, P^T and dP^T = V dO^T: dV += P^T dO, dK += dS^T Q with dS = P (dP - D);
//     3. dQ: a block per (b, h, query tile) loops over the key tiles: dQ += dS K.
//   dK, dQ are scaled by `scale` once at the end.
// Key tiles past the last visible position of a causal query tile are never visited, nor query tiles
// before the first query that can see a key tile; dK/dV tiles whose keys are all padding skip the loop.
#include <type_traits>

#include "../../core/attention_args.h"
#include "attention_gemm.h"
#include "engine_common.cuh"

namespace vw::cuda {

namespace {

using namespace eng;

constexpr int kBQ = 32;             // query rows per tile
constexpr int kBK = 32;             // keys per tile
constexpr int kAttnThreads = 128;   // 4 lanes per tile row
constexpr int64_t kMaxDh = 256;     // largest head size (DP) instantiated
constexpr int64_t kCpuPad = 8, kCpuBlockQ = 64;  // the CPU workspace constants, for its identical size check

static_assert(kAttnThreads == 4 * kBQ && kAttnThreads == 4 * kBK, "one quad of lanes per tile row");

using Dims = AttentionDims;
inline Dims read_dims(const OpCall& c) { return read_attention_dims(c, kCpuPad, kCpuBlockQ); }

// The values of the key mask (key_mask_arg; null: none), checked on the device where the CPU checks them:
// an error flag (native/core/error_flags.h). The kernels read any nonzero value as visible.
void check_mask_values(const char* op, const int32_t* mask, const Dims& d) {
  if (mask) check_values(op, context(op), ValueCheck::key_mask(op, d.Tk), mask, d.B * d.Tk);
}

void check_head_size(const char* op, const Dims& d) {
  if (d.Dh > kMaxDh) throw_range_error("[", op, "] Dh = ", d.Dh, " exceeds the CUDA backend's limit of ", kMaxDh);
}

// The tensors of either op (native/core/attention_args.h), the key mask's values checked where the CPU
// checks them, then the CUDA backend's head-size limit.
AttentionTensors<void> read_tensors(const OpCall& c, const Dims& d, bool backward) {
  const auto io =
      read_attention_tensors<void>(c, d, backward, [&](const int32_t* mask) { check_mask_values(c.op, mask, d); });
  check_head_size(c.op, d);
  return io;
}

// ------------------------------------------------------------------------------------------- device side

struct Shape {
  int64_t B, Tq, Tk, Hq, Hkv, Dh, G;
  int64_t n_qt;  // query tiles
  int causal;
  float scale;
};

Shape make_shape(const Dims& d) {
  return {d.B, d.Tq, d.Tk, d.Hq, d.Hkv, d.Dh, d.G, (d.Tq + kBQ - 1) / kBQ, d.causal ? 1 : 0, d.scale};
}

// dst[rr * (DP + 1) + e] = X[b, t0 + rr, hh, e] for rr < ROWS, e < DP; zero past T rows or Dh columns.
template <int ROWS, int DP, typename T>
__device__ __forceinline__ void load_tile(float* dst, const T* __restrict__ X, int64_t b, int64_t T_, int64_t H, int64_t hh,
                                          int64_t Dh, int64_t t0) {
  constexpr int DS = DP + 1;
  for (int e = threadIdx.x; e < ROWS * DP; e += kAttnThreads) {
    const int rr = e / DP, d = e % DP;
    const int64_t t = t0 + rr;
    float v = 0.f;
    if (t < T_ && d < Dh) v = to_float(X[((b * T_ + t) * H + hh) * Dh + d]);
    dst[rr * DS + d] = v;
  }
}

// Ms[kk] = 1 when key k0 + kk exists and is not padding (causality is applied per query).
__device__ __forceinline__ void load_mask_tile(float* Ms, const int32_t* __restrict__ mask, int64_t b, int64_t Tk, int64_t k0) {
  for (int kk = threadIdx.x; kk < kBK; kk += kAttnThreads) {
    const int64_t j = k0 + kk;
    Ms[kk] = (j < Tk && (mask == nullptr || mask[b * Tk + j] != 0)) ? 1.f : 0.f;
  }
}

__device__ __forceinline__ bool visible(const Shape& s, const float* Ms, int kk, int64_t j, int64_t t) {
  return t < s.Tq && Ms[kk] != 0.f && (!s.causal || j <= s.Tk - s.Tq + t);
}

// Keys [0, key_end) can be visible to query rows [t0, t0 + kBQ).
__device__ __forceinline__ int64_t key_end(const Shape& s, int64_t t0) {
  if (!s.causal) return s.Tk;
  const int64_t last_t = (t0 + kBQ < s.Tq ? t0 + kBQ : s.Tq) - 1;
  const int64_t e = s.Tk - s.Tq + last_t + 1;
  return e < 0 ? 0 : (e < s.Tk ? e : s.Tk);
}

// Sums over the 4 lanes of a quad (lanes 4q .. 4q + 3 of a warp).
template <typename V>
__device__ __forceinline__ V quad_sum(V v) {
  v += shfl_xor(v, 1);
  v += shfl_xor(v, 2);
  return v;
}
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(kFullMask, v, 1));
  return fmaxf(v, __shfl_xor_sync(kFullMask, v, 2));
}
__device__ __forceinline__ int quad_or(int v) {
  v |= __shfl_xor_sync(kFullMask, v, 1);
  return v | __shfl_xor_sync(kFullMask, v, 2);
}

// Block -> (b, h, query tile) of the forward / row-statistics / dQ kernels, last query tiles first.
struct QueryTile {
  int64_t b, h, g, t0;
};
__device__ __forceinline__ QueryTile query_tile(const Shape& s) {
  const int64_t bh_count = s.B * s.Hq;
  const int64_t bh = blockIdx.x % bh_count, qt = s.n_qt - 1 - blockIdx.x / bh_count;
  const int64_t h = bh % s.Hq;
  return {bh / s.Hq, h, h / s.G, qt * kBQ};
}

// A kernel's dynamic shared memory: consecutive arrays of N... floats, in order. `bytes` is what its launch
// asks for and carve() points the kernel's arrays into it, so the two cannot disagree.
template <int... N>
struct SmemLayout {
  static constexpr size_t bytes = sizeof(float) * (size_t{0} + ... + static_cast<size_t>(N));
  template <typename... P>
  __device__ __forceinline__ static void carve(float* base, P*&... parts) {
    static_assert(sizeof...(P) == sizeof...(N), "one array per size");
    float* next = base;
    ((parts = reinterpret_cast<P*>(next), next += N), ...);
  }
};

// The kernels' layouts: tiles of kBQ query or kBK key rows, DP + 1 floats apart; P and dS rows one more than
// their length apart; key-mask tiles of kBK.
template <int DP>  // Q, K, V tiles, P [kBQ][kBK + 1], key mask
using ForwardSmem = SmemLayout<kBQ * (DP + 1), kBK * (DP + 1), kBK * (DP + 1), kBQ * (kBK + 1), kBK>;
template <int DP>  // Q, K tiles, key mask
using RowstatsSmem = SmemLayout<kBQ * (DP + 1), kBK * (DP + 1), kBK>;
template <int DP>  // (hi, lo) of the query rows' L as float2 [kBQ], their D [kBQ], key mask, K, V, Q, dO tiles,
                   // P^T and dS^T [kBK][kBQ + 1]
using DkdvSmem = SmemLayout<2 * kBQ, kBQ, kBK, kBK * (DP + 1), kBK * (DP + 1), kBQ * (DP + 1), kBQ * (DP + 1),
                            kBK * (kBQ + 1), kBK * (kBQ + 1)>;
template <int DP>  // Q, dO, K, V tiles, dS [kBQ][kBK + 1], key mask
using DqSmem = SmemLayout<kBQ * (DP + 1), kBQ * (DP + 1), kBK * (DP + 1), kBK * (DP + 1), kBQ * (kBK + 1), kBK>;

// Key tile k0 of kv head g of batch row b, loaded by the whole block: its K rows into Ks, its V rows into Vs
// (the second form), its key mask into Ms; ends with a barrier, so the tile is complete for every thread.
template <int DP, typename T>
__device__ __forceinline__ void load_key_tile(const Shape& s, const T* __restrict__ K, const int32_t* __restrict__ mask,
                                              int64_t b, int64_t g, int64_t k0, float* Ks, float* Ms) {
  load_tile<kBK, DP>(Ks, K, b, s.Tk, s.Hkv, g, s.Dh, k0);
  load_mask_tile(Ms, mask, b, s.Tk, k0);
  __syncthreads();
}
template <int DP, typename T>
__device__ __forceinline__ void load_key_tile(const Shape& s, const T* __restrict__ K, const T* __restrict__ V,
                                              const int32_t* __restrict__ mask, int64_t b, int64_t g, int64_t k0,
                                              float* Ks, float* Vs, float* Ms) {
  load_tile<kBK, DP>(Ks, K, b, s.Tk, s.Hkv, g, s.Dh, k0);
  load_tile<kBK, DP>(Vs, V, b, s.Tk, s.Hkv, g, s.Dh, k0);
  load_mask_tile(Ms, mask, b, s.Tk, k0);
  __syncthreads();
}

// Dot products over the DP columns of row a with this lane's rows sub + 4 i (i < N) of tile A (rows DP + 1
// apart): x[i] = a . A[sub + 4 i]; lane_dots2 also y[i] = b . B[sub + 4 i], in the same pass.
template <int DP, int N>
__device__ __forceinline__ void lane_dots(const float* a, const float* A, int sub, float (&x)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) x[i] = 0.f;
#pragma unroll 4
  for (int d = 0; d < DP; ++d) {
    const float ad = a[d];
#pragma unroll
    for (int i = 0; i < N; ++i) x[i] += ad * A[(sub + 4 * i) * (DP + 1) + d];
  }
}
template <int DP, int N>
__device__ __forceinline__ void lane_dots2(const float* a, const float* A, const float* b, const float* B, int sub,
                                           float (&x)[N], float (&y)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) x[i] = y[i] = 0.f;
#pragma unroll 4
  for (int d = 0; d < DP; ++d) {
    const float ad = a[d], bd = b[d];
#pragma unroll
    for (int i = 0; i < N; ++i) {
      x[i] += ad * A[(sub + 4 * i) * (DP + 1) + d];
      y[i] += bd * B[(sub + 4 * i) * (DP + 1) + d];
    }
  }
}

// ------------------------------------------------------------------------------------------- forward

template <int DP, typename T>
__global__ void __launch_bounds__(kAttnThreads)
    attention_forward_kernel(Shape s, const T* __restrict__ Q, const T* __restrict__ K, const T* __restrict__ V,
                             const int32_t* __restrict__ mask, T* __restrict__ O, float* __restrict__ lse) {
  constexpr int DS = DP + 1, NJ = DP / 4, KPT = kBK / 4, PS = kBK + 1;
  extern __shared__ float smem[];
  float *Qs, *Ks, *Vs, *Ps, *Ms;
  ForwardSmem<DP>::carve(smem, Qs, Ks, Vs, Ps, Ms);

  const QueryTile qt = query_tile(s);
  const int r = threadIdx.x >> 2, sub = threadIdx.x & 3;
  const int64_t t = qt.t0 + r;
  load_tile<kBQ, DP>(Qs, Q, qt.b, s.Tq, s.Hq, qt.h, s.Dh, qt.t0);

  float m = -INFINITY, l = 0.f;
  int any = 0;  // this lane saw a visible key
  float o[NJ];
#pragma unroll
  for (int jd = 0; jd < NJ; ++jd) o[jd] = 0.f;
  const int64_t kend = key_end(s, qt.t0);
  for (int64_t k0 = 0; k0 < kend; k0 += kBK) {
    __syncthreads();  // the previous tile is consumed (and Qs is complete on the first pass)
    load_key_tile<DP>(s, K, V, mask, qt.b, qt.g, k0, Ks, Vs, Ms);
    float sc[KPT];
    lane_dots<DP>(Qs + r * DS, Ks, sub, sc);
    float tmax = -INFINITY;
#pragma unroll
    for (int i = 0; i < KPT; ++i) {
      const int kk = sub + 4 * i;
      const bool vis = visible(s, Ms, kk, k0 + kk, t);
      sc[i] = vis ? s.scale * sc[i] : -INFINITY;
      any |= vis ? 1 : 0;
      tmax = fmaxf(tmax, sc[i]);
    }
    const float m_new = fmaxf(m, quad_max(tmax));
    const float alpha = m == -INFINITY ? 0.f : expf(m - m_new);
    float psum = 0.f;
#pragma unroll
    for (int i = 0; i < KPT; ++i) {
      const float p = sc[i] == -INFINITY ? 0.f : expf(sc[i] - m_new);
      Ps[r * PS + sub + 4 * i] = p;
      psum += p;
    }
    l = l * alpha + quad_sum(psum);
    m = m_new;
#pragma unroll
    for (int jd = 0; jd < NJ; ++jd) o[jd] *= alpha;
    __syncwarp();  // the quad's P row is complete
#pragma unroll 4
    for (int kk = 0; kk < kBK; ++kk) {
      const float p = Ps[r * PS + kk];
#pragma unroll
      for (int jd = 0; jd < NJ; ++jd) o[jd] += p * Vs[kk * DS + sub + 4 * jd];
    }
  }
  any = quad_or(any);
  if (t < s.Tq) {
    const float inv = any ? 1.f / l : 0.f;
    T* orow = O + ((qt.b * s.Tq + t) * s.Hq + qt.h) * s.Dh;
#pragma unroll
    for (int jd = 0; jd < NJ; ++jd) {
      const int d = sub + 4 * jd;
      if (d < s.Dh) orow[d] = from_float<T>(any ? o[jd] * inv : 0.f);
    }
    if (sub == 0)
      lse[(qt.b * s.Hq + qt.h) * s.Tq + t] =
          any ? static_cast<float>(static_cast<double>(m) + log(static_cast<double>(l))) : -INFINITY;
  }
}

// ------------------------------------------------------------------------------------------- backward

// 1. stats[t] = (hi, lo) of L_t = lse_t + log sum_visible exp(S_tj - lse_t), or (+inf, 0) when the row has
//    no visible key or lse_t = -inf (P = 0 then); Dd[t] = dO_t . O_t.
template <int DP, typename T>
__global__ void __launch_bounds__(kAttnThreads)
    attention_rowstats_kernel(Shape s, const T* __restrict__ Q, const T* __restrict__ K, const int32_t* __restrict__ mask,
                              const T* __restrict__ dO, const T* __restrict__ O, const float* __restrict__ lse,
                              float2* __restrict__ stats, float* __restrict__ Dd) {
  constexpr int DS = DP + 1, KPT = kBK / 4;
  extern __shared__ float smem[];
  float *Qs, *Ks, *Ms;
  RowstatsSmem<DP>::carve(smem, Qs, Ks, Ms);

  const QueryTile qt = query_tile(s);
  const int r = threadIdx.x >> 2, sub = threadIdx.x & 3;
  const int64_t t = qt.t0 + r;
  const int64_t row = (qt.b * s.Hq + qt.h) * s.Tq + t;
  load_tile<kBQ, DP>(Qs, Q, qt.b, s.Tq, s.Hq, qt.h, s.Dh, qt.t0);
  const float shift = t < s.Tq ? lse[row] : -INFINITY;

  float sum = 0.f;
  int any = 0;
  const int64_t kend = key_end(s, qt.t0);
  for (int64_t k0 = 0; k0 < kend; k0 += kBK) {
    __syncthreads();
    load_key_tile<DP>(s, K, mask, qt.b, qt.g, k0, Ks, Ms);
    float sc[KPT];
    lane_dots<DP>(Qs + r * DS, Ks, sub, sc);
#pragma unroll
    for (int i = 0; i < KPT; ++i) {
      const int kk = sub + 4 * i;
      if (visible(s, Ms, kk, k0 + kk, t)) {
        any = 1;
        if (shift != -INFINITY) sum += expf(s.scale * sc[i] - shift);
      }
    }
  }
  sum = quad_sum(sum);
  any = quad_or(any);
  double dd = 0;
  if (t < s.Tq) {
    const int64_t base = ((qt.b * s.Tq + t) * s.Hq + qt.h) * s.Dh;
    for (int64_t d = sub; d < s.Dh; d += 4)
      dd += static_cast<double>(to_float(dO[base + d])) * static_cast<double>(to_float(O[base + d]));
  }
  dd = quad_sum(dd);
  if (t < s.Tq && sub == 0) {
    float2 st = make_float2(INFINITY, 0.f);
    if (any && shift != -INFINITY) {
      const double L = static_cast<double>(shift) + log(static_cast<double>(sum));
      const Split sp = split(L);
      st = make_float2(sp.hi, sp.lo);
    }
    stats[row] = st;
    Dd[row] = static_cast<float>(dd);
  }
}

// 2. dK, dV of one key tile of one (b, kv head).
template <int DP, typename T>
__global__ void __launch_bounds__(kAttnThreads)
    attention_dkdv_kernel(Shape s, const T* __restrict__ Q, const T* __restrict__ K, const T* __restrict__ V,
                          const int32_t* __restrict__ mask, const T* __restrict__ dO, const float2* __restrict__ stats,
                          const float* __restrict__ Dd, T* __restrict__ dK, T* __restrict__ dV) {
  constexpr int DS = DP + 1, NJ = DP / 4, QPT = kBQ / 4, PS = kBQ + 1;
  extern __shared__ float smem[];
  float2* Ls;
  float *Dsh, *Ms, *Ks, *Vs, *Qs, *dOs, *Ps, *dSs;
  DkdvSmem<DP>::carve(smem, Ls, Dsh, Ms, Ks, Vs, Qs, dOs, Ps, dSs);

  const int64_t bg_count = s.B * s.Hkv;
  const int64_t bg = blockIdx.x % bg_count, k0 = static_cast<int64_t>(blockIdx.x / bg_count) * kBK;
  const int64_t b = bg / s.Hkv, g = bg % s.Hkv;
  const int kk = threadIdx.x >> 2, sub = threadIdx.x & 3;
  const int64_t j = k0 + kk;
  load_key_tile<DP>(s, K, V, mask, b, g, k0, Ks, Vs, Ms);
  const bool any_key = __syncthreads_or(threadIdx.x < kBK && Ms[threadIdx.x] != 0.f);

  float dk[NJ], dv[NJ];
#pragma unroll
  for (int jd = 0; jd < NJ; ++jd) dk[jd] = dv[jd] = 0.f;
  // The first query that can see key k0 (causal): Tk - Tq + t >= k0.
  int64_t t_first = s.causal ? k0 - (s.Tk - s.Tq) : 0;
  if (t_first < 0) t_first = 0;
  if (any_key) {
    for (int64_t h = g * s.G; h < (g + 1) * s.G; ++h) {
      for (int64_t t0 = t_first / kBQ * kBQ; t0 < s.Tq; t0 += kBQ) {
        __syncthreads();  // the previous query tile is consumed
        load_tile<kBQ, DP>(Qs, Q, b, s.Tq, s.Hq, h, s.Dh, t0);
        load_tile<kBQ, DP>(dOs, dO, b, s.Tq, s.Hq, h, s.Dh, t0);
        for (int rr = threadIdx.x; rr < kBQ; rr += kAttnThreads) {
          const int64_t t = t0 + rr, row = (b * s.Hq + h) * s.Tq + t;
          Ls[rr] = t < s.Tq ? stats[row] : make_float2(INFINITY, 0.f);
          Dsh[rr] = t < s.Tq ? Dd[row] : 0.f;
        }
        __syncthreads();
        float sc[QPT], dp[QPT];
        lane_dots2<DP>(Ks + kk * DS, Qs, Vs + kk * DS, dOs, sub, sc, dp);
#pragma unroll
        for (int i = 0; i < QPT; ++i) {
          const int rr = sub + 4 * i;
          const float2 L = Ls[rr];
          const float p = visible(s, Ms, kk, j, t0 + rr) ? expf((s.scale * sc[i] - L.x) - L.y) : 0.f;
          Ps[kk * PS + rr] = p;
          dSs[kk * PS + rr] = p * (dp[i] - Dsh[rr]);
        }
        __syncwarp();  // the quad's rows of P^T and dS^T are complete
#pragma unroll 4
        for (int rr = 0; rr < kBQ; ++rr) {
          const float p = Ps[kk * PS + rr], ds = dSs[kk * PS + rr];
#pragma unroll
          for (int jd = 0; jd < NJ; ++jd) {
            dv[jd] += p * dOs[rr * DS + sub + 4 * jd];
            dk[jd] += ds * Qs[rr * DS + sub + 4 * jd];
          }
        }
      }
    }
  }
  if (j < s.Tk) {
    const int64_t base = ((b * s.Tk + j) * s.Hkv + g) * s.Dh;
#pragma unroll
    for (int jd = 0; jd < NJ; ++jd) {
      const int d = sub + 4 * jd;
      if (d < s.Dh) {
        dK[base + d] = from_float<T>(s.scale * dk[jd]);
        dV[base + d] = from_float<T>(dv[jd]);
      }
    }
  }
}

// 3. dQ of one query tile of one (b, h).
template <int DP, typename T>
__global__ void __launch_bounds__(kAttnThreads)
    attention_dq_kernel(Shape s, const T* __restrict__ Q, const T* __restrict__ K, const T* __restrict__ V,
                        const int32_t* __restrict__ mask, const T* __restrict__ dO, const float2* __restrict__ stats,
                        const float* __restrict__ Dd, T* __restrict__ dQ) {
  constexpr int DS = DP + 1, NJ = DP / 4, KPT = kBK / 4, PS = kBK + 1;
  extern __shared__ float smem[];
  float *Qs, *dOs, *Ks, *Vs, *dSs, *Ms;
  DqSmem<DP>::carve(smem, Qs, dOs, Ks, Vs, dSs, Ms);

  const QueryTile qt = query_tile(s);
  const int r = threadIdx.x >> 2, sub = threadIdx.x & 3;
  const int64_t t = qt.t0 + r;
  const int64_t row = (qt.b * s.Hq + qt.h) * s.Tq + t;
  load_tile<kBQ, DP>(Qs, Q, qt.b, s.Tq, s.Hq, qt.h, s.Dh, qt.t0);
  load_tile<kBQ, DP>(dOs, dO, qt.b, s.Tq, s.Hq, qt.h, s.Dh, qt.t0);
  const float2 L = t < s.Tq ? stats[row] : make_float2(INFINITY, 0.f);
  const float Dt = t < s.Tq ? Dd[row] : 0.f;

  float dq[NJ];
#pragma unroll
  for (int jd = 0; jd < NJ; ++jd) dq[jd] = 0.f;
  const int64_t kend = key_end(s, qt.t0);
  for (int64_t k0 = 0; k0 < kend; k0 += kBK) {
    __syncthreads();
    load_key_tile<DP>(s, K, V, mask, qt.b, qt.g, k0, Ks, Vs, Ms);
    float sc[KPT], dp[KPT];
    lane_dots2<DP>(Qs + r * DS, Ks, dOs + r * DS, Vs, sub, sc, dp);
#pragma unroll
    for (int i = 0; i < KPT; ++i) {
      const int kk = sub + 4 * i;
      const float p = visible(s, Ms, kk, k0 + kk, t) ? expf((s.scale * sc[i] - L.x) - L.y) : 0.f;
      dSs[r * PS + kk] = p * (dp[i] - Dt);
    }
    __syncwarp();
#pragma unroll 4
    for (int kk = 0; kk < kBK; ++kk) {
      const float ds = dSs[r * PS + kk];
#pragma unroll
      for (int jd = 0; jd < NJ; ++jd) dq[jd] += ds * Ks[kk * DS + sub + 4 * jd];
    }
  }
  if (t < s.Tq) {
    T* qrow = dQ + ((qt.b * s.Tq + t) * s.Hq + qt.h) * s.Dh;
#pragma unroll
    for (int jd = 0; jd < NJ; ++jd) {
      const int d = sub + 4 * jd;
      if (d < s.Dh) qrow[d] = from_float<T>(s.scale * dq[jd]);
    }
  }
}

// ------------------------------------------------------------------------------------------- host side

// f(std::integral_constant<int, DP>{}) with DP the smallest instantiated head size >= Dh (Dh <= kMaxDh).
template <typename F>
void dispatch_head(int64_t Dh, F&& f) {
  if (Dh <= 16)
    f(std::integral_constant<int, 16>{});
  else if (Dh <= 32)
    f(std::integral_constant<int, 32>{});
  else if (Dh <= 64)
    f(std::integral_constant<int, 64>{});
  else if (Dh <= 128)
    f(std::integral_constant<int, 128>{});
  else
    f(std::integral_constant<int, 256>{});
}

// Launches `blocks` tiles of kAttnThreads through launch(), opting into more than 48 KiB of dynamic shared
// memory when needed.
template <typename... KArgs, typename... Args>
void launch_tiles(const char* op, const Context& ctx, void (*kernel)(KArgs...), int64_t blocks, size_t smem,
                  Args... args) {
  if (blocks <= 0) return;
  if (blocks > INT_MAX) throw_range_error("[", op, "] too many attention tiles for one launch (", blocks, ")");
  if (smem > 48 * 1024) {
    int optin = 0;
    CUDA_CHECK(op, cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, ctx.device));
    if (smem > static_cast<size_t>(optin))
      throw_range_error("[", op, "] this head size needs ", smem, " bytes of shared memory per block; the device allows ", optin);
    CUDA_CHECK(op, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  launch(op, ctx, static_cast<unsigned>(blocks), kAttnThreads, smem, kernel, args...);
}

}  // namespace

void attention_forward_cuda(const OpCall& c) {
  const char* op = c.op;
  const Dims d = read_dims(c);
  const auto io = read_tensors(c, d, false);
  Context& ctx = context(op);
  if (d.q_elems == 0) return;
  if (attention_uses_gemm(d, io.t)) return attention_forward_gemm(op, ctx, d, io);

  const Shape s = make_shape(d);
  dispatch_float(io.t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_head(d.Dh, [&](auto dp) {
      constexpr int DP = decltype(dp)::value;
      launch_tiles(op, ctx, attention_forward_kernel<DP, T>, s.B * s.Hq * s.n_qt, ForwardSmem<DP>::bytes,
                   s, static_cast<const T*>(io.Q), static_cast<const T*>(io.K), static_cast<const T*>(io.V), io.mask,
                   static_cast<T*>(io.O), io.lse);
    });
  });
}

void attention_backward_cuda(const OpCall& c) {
  const char* op = c.op;
  const Dims d = read_dims(c);
  const auto io = read_tensors(c, d, true);
  Context& ctx = context(op);
  if (d.B * d.Hkv == 0) return;
  if (attention_uses_gemm(d, io.t)) return attention_backward_gemm(op, ctx, d, io);

  const Shape s = make_shape(d);
  DeviceBuffer stats(op, ctx, sizeof(float2) * static_cast<size_t>(d.lse_elems), nullptr);
  DeviceBuffer dd(op, ctx, sizeof(float) * static_cast<size_t>(d.lse_elems), nullptr);
  const int64_t q_blocks = s.B * s.Hq * s.n_qt, kv_blocks = s.B * s.Hkv * ((s.Tk + kBK - 1) / kBK);
  dispatch_float(io.t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T *dOp = static_cast<const T*>(io.dO), *Qp = static_cast<const T*>(io.Q), *Kp = static_cast<const T*>(io.K),
            *Vp = static_cast<const T*>(io.V), *Op = static_cast<const T*>(io.saved_O);
    const float2* st = stats.as<float2>();
    const float* D = dd.as<float>();
    dispatch_head(d.Dh, [&](auto dp) {
      constexpr int DP = decltype(dp)::value;
      launch_tiles(op, ctx, attention_rowstats_kernel<DP, T>, q_blocks, RowstatsSmem<DP>::bytes, s, Qp, Kp, io.mask, dOp, Op,
                   io.saved_lse, stats.as<float2>(), dd.as<float>());
      launch_tiles(op, ctx, attention_dkdv_kernel<DP, T>, kv_blocks, DkdvSmem<DP>::bytes, s, Qp, Kp, Vp, io.mask, dOp, st, D,
                   static_cast<T*>(io.dK), static_cast<T*>(io.dV));
      launch_tiles(op, ctx, attention_dq_kernel<DP, T>, q_blocks, DqSmem<DP>::bytes, s, Qp, Kp, Vp, io.mask, dOp, st, D,
                   static_cast<T*>(io.dQ));
    });
  });
}

}  // namespace vw::cuda
