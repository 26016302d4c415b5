// Scaled dot-product attention (multi-head, grouped-query, causal, key padding), flash-attention style:
// the full [Tq, Tk] score matrix is never formed; each worker holds one [kBlockQ, Tk] score block of one
// head (plus its dP block in the backward).
//   Q [B, Tq, Hq, Dh], K, V [B, Tk, Hkv, Dh], keyMask i32 [B, Tk] (optional; 1 = visible, 0 = padding),
//   O [B, Tq, Hq, Dh], lse [B, Hq, Tq].  Query head h reads kv head h / G, G = Hq / Hkv.
//   S = scale Q K^T, P = softmax_row(S) over visible keys, O = P V, lse_t = log sum_visible exp(S_t).
//   Visible: keyMask[b, j] = 1 and, when causal, j <= Tk - Tq + t (query t sits at that absolute position,
//   so Tq new queries over a cache of Tk keys see the cache and themselves). A row with no visible key
//   gets O = 0, lse = -inf, and no gradient. Forward saves lse for the backward.
// Backward (softmax Jacobian; D_t = sum_j P_tj dP_tj = dO_t . sum_j P_tj V_j = dO_t . O_t, so the row
// dot needs no second pass over the scores):
//   dV = P^T dO,  dP = dO V^T,  dS = P * (dP - D),  dQ = scale dS K,  dK = scale dS^T Q,
// with dK, dV of a kv head summed over its G query heads. P is recomputed per block as exp(S - lse) and
// renormalised by its row sum, so the float rounding of the stored lse (2^-24 |lse|, 1e-5 relative once
// scores reach ~100) does not leak into the gradients; S itself is recomputed bit-identically.
//
// Keys are compacted per batch row: only visible keys are packed (K^T, K, V, V^T, contiguous and padded to
// 8 columns), so padding costs no work, and causal visibility becomes a prefix of the packed keys.
// The products run through gemm() below, a small register-tiled kernel (C = alpha A B, A with any strides,
// B rows contiguous), compiled for AVX2+FMA when vec.h's AVX2 build is in use. It runs inside our own
// worker threads, where OpenBLAS would stack its thread pool on ours.
// Parallel over (b, kv head) tasks, each owning its dK/dV slices; when there are fewer tasks than threads,
// tasks are also split into chunks of query blocks (the backward then sums per-chunk dK/dV partials in
// chunk order). Work items are handed out dynamically but every output has one fixed summation order, so
// results are run-to-run identical; they also do not depend on the thread count, except dK/dV when
// B * Hkv < threads (the chunk count, hence the partial sums, follows the thread count).
//
// Timing note (forward + backward, best of 40-100 runs, 2-core AMD EPYC VM shared with other jobs, AVX2):
//   B=8 T=256 Hq=Hkv=8 Dh=32 causal (a d=256 decoder):  7.2 ms (2.4 + 4.8) on 2 threads, 14.2 on 1
//   B=8 T=50 H=8 Dh=64 bidirectional (a small ViT):      1.1 ms (0.38 + 0.70) on 2 threads, 1.9 on 1
// The same code with cpu::sgemm in place of gemm(): 8.6 / 1.5 ms with OPENBLAS_NUM_THREADS=1, 25 / 2.1 ms
// on 1 thread, and ~200 ms for the decoder (backward) with OpenBLAS threading inside our workers;
// baseline SSE build (VWLMM_SIMD=generic): 40 / 4.7 ms.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "work_split.h"
#include "../core/attention_args.h"
#include "../core/error_flags.h"
#include "float32_view.h"
#include "isa.h"
#include "ops_cpu.h"
#include "parallel.h"
#include "vec.h"

namespace vw::cpu {
namespace {

constexpr int64_t kBlockQ = 64;  // query rows per score block
constexpr int64_t kPad = 8;      // packed matrices have a multiple of kPad columns

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// ------------------------------------------------------------------------------------------ small GEMM
// C[M, N] (+)= alpha * sum_k A(i, k) B[k, :],  A(i, k) = A[i * rsa + k * csa],  B rows ldb apart, C rows
// ldc apart; N a multiple of kPad (B and C are padded work buffers). Register tiles of MR rows x NV
// vectors, written with GCC vector types so one source serves both builds: 8-float vectors (6 x 16
// tiles: 12 of AVX2's 16 registers hold accumulators) and 4-float ones for baseline SSE (4 x 8 tiles).
// Vectors never cross a function boundary (no ABI concerns); acc += a * b, nothing reassociated.
typedef float v16f __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));

template <typename V, int MR, int NV>
__attribute__((always_inline)) inline void gemm_tile(int64_t K, float alpha, const float* A, int64_t rsa,
                                                     int64_t csa, const float* B, int64_t ldb, bool accumulate,
                                                     float* C, int64_t ldc) {
  constexpr int L = sizeof(V) / sizeof(float);
  V acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NV; ++c) acc[r][c] = V{};
  for (int64_t k = 0; k < K; ++k) {
    V b[NV];
    for (int c = 0; c < NV; ++c) std::memcpy(&b[c], B + k * ldb + L * c, sizeof(V));
    for (int r = 0; r < MR; ++r) {
      const float a = A[r * rsa + k * csa];
      for (int c = 0; c < NV; ++c) acc[r][c] += a * b[c];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NV; ++c) {
      float* cp = C + r * ldc + L * c;
      V out = alpha * acc[r][c];
      if (accumulate) {
        V old;
        std::memcpy(&old, cp, sizeof(V));
        out += old;
      }
      std::memcpy(cp, &out, sizeof(V));
    }
}

// One strip of MR rows: tiles of NV vectors, then kPad-wide tiles for the rest.
template <typename V, int MR, int NV>
__attribute__((always_inline)) inline void gemm_strip(int64_t N, int64_t K, float alpha, const float* A, int64_t rsa,
                                                      int64_t csa, const float* B, int64_t ldb, bool accumulate,
                                                      float* C, int64_t ldc) {
  constexpr int W = NV * sizeof(V) / sizeof(float), NP = kPad * sizeof(float) / sizeof(V);
  int64_t j = 0;
  for (; j + W <= N; j += W) gemm_tile<V, MR, NV>(K, alpha, A, rsa, csa, B + j, ldb, accumulate, C + j, ldc);
  if constexpr (NP == 0)  // vectors wider than kPad (AVX-512's 16 floats): 8-float tiles for the rest
    for (; j < N; j += kPad) gemm_tile<v8f, MR, 1>(K, alpha, A, rsa, csa, B + j, ldb, accumulate, C + j, ldc);
  else if constexpr (NP < NV)
    for (; j < N; j += kPad) gemm_tile<V, MR, NP>(K, alpha, A, rsa, csa, B + j, ldb, accumulate, C + j, ldc);
}

// Strips of MR rows, then the remaining rows as one narrower strip.
template <typename V, int MR, int NV>
__attribute__((always_inline)) inline void gemm_body(int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                                                     int64_t rsa, int64_t csa, const float* B, int64_t ldb,
                                                     bool accumulate, float* C, int64_t ldc) {
  int64_t i = 0;
  for (; i + MR <= M; i += MR)
    gemm_strip<V, MR, NV>(N, K, alpha, A + i * rsa, rsa, csa, B, ldb, accumulate, C + i * ldc, ldc);
  const float* Ar = A + i * rsa;
  float* Cr = C + i * ldc;
  switch (M - i) {
    case 11: gemm_strip<V, (11 < MR ? 11 : 1), NV>(N, K, alpha, Ar, rsa, csa, B, ldb, accumulate, Cr, ldc); break;
    case 10: gemm_strip<V, (10 < MR ? 10 : 1), NV>(N, K, alpha, Ar, rsa, csa, B, ldb, accumulate, Cr, ldc); break;
    case 9: gemm_strip<V, (9 < MR ? 9 : 1), NV>(N, K, alpha, Ar, rsa, csa, B, ldb, accumulate, Cr, ldc); break;
    case 8: gemm_strip<V, (8 < MR ? 8 : 1), NV>(N, K, alpha, Ar, rsa, csa, B, ldb, accumulate, Cr, ldc); break;
    case 7: gemm_strip<V, (7 < MR ? 7 : 1), NV>(N, K, alpha, Ar, rsa, csa, B, ldb, accumulate, Cr, ldc); break;
    case 6: gemm_strip<V, (6 < MR ? 6 : 1), NV>(N, K, alpha, Ar, rsa, csa, B, ldb, accumulate, Cr, ldc); break;
    case 5: gemm_strip<V, (5 < MR ? 5 : 1), NV>(N, K, alpha, Ar, rsa, csa, B, ldb, accumulate, Cr, ldc); break;
    case 4: gemm_strip<V, (4 < MR ? 4 : 1), NV>(N, K, alpha, Ar, rsa, csa, B, ldb, accumulate, Cr, ldc); break;
    case 3: gemm_strip<V, (3 < MR ? 3 : 1), NV>(N, K, alpha, Ar, rsa, csa, B, ldb, accumulate, Cr, ldc); break;
    case 2: gemm_strip<V, (2 < MR ? 2 : 1), NV>(N, K, alpha, Ar, rsa, csa, B, ldb, accumulate, Cr, ldc); break;
    case 1: gemm_strip<V, 1, NV>(N, K, alpha, Ar, rsa, csa, B, ldb, accumulate, Cr, ldc); break;
    default: break;
  }
}

using GemmFn = void (*)(int64_t, int64_t, int64_t, float, const float*, int64_t, int64_t, const float*, int64_t,
                        bool, float*, int64_t);

void gemm_generic(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t rsa, int64_t csa,
                  const float* B, int64_t ldb, bool accumulate, float* C, int64_t ldc) {
  gemm_body<v4f, 4, 2>(M, N, K, alpha, A, rsa, csa, B, ldb, accumulate, C, ldc);
}

#ifdef VWLMM_HAVE_AVX2_BUILD
// AVX-512F: 12 x 32 tiles (24 of its 32 registers accumulate). Each element is the same chain of fused multiply-adds
// as in gemm_avx2, so the two give the same bits (tests/engine/attention.test.ts).
__attribute__((target("avx512f,avx2,fma"))) void gemm_avx512(int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                                                             int64_t rsa, int64_t csa, const float* B, int64_t ldb,
                                                             bool accumulate, float* C, int64_t ldc) {
  gemm_body<v16f, 12, 2>(M, N, K, alpha, A, rsa, csa, B, ldb, accumulate, C, ldc);
}
__attribute__((target("avx2,fma"))) void gemm_avx2(int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                                                   int64_t rsa, int64_t csa, const float* B, int64_t ldb,
                                                   bool accumulate, float* C, int64_t ldc) {
  gemm_body<v8f, 6, 2>(M, N, K, alpha, A, rsa, csa, B, ldb, accumulate, C, ldc);
}
#endif

// The choice vec.h's primitives make, so VWLMM_SIMD=generic also selects the baseline GEMM (and a clang build, where
// isa.h dispatches nothing, keeps the AVX2 products); AVX-512 where isa.h allows it.
GemmFn gemm_impl() {
#ifdef VWLMM_HAVE_AVX2_BUILD
  if (vec_isa_avx2()) return vw_use_avx512() ? gemm_avx512 : gemm_avx2;
#endif
  return gemm_generic;
}

// ------------------------------------------------------------------------------------------ parameters
using Dims = AttentionDims;
inline Dims read_dims(const OpCall& c) { return read_attention_dims(c, kPad, kBlockQ); }

// Visible keys of each batch row: keys[b] lists them in order, prefix[b][j] counts those < j (Tk + 1
// entries). A causal query at position p sees the first prefix[b][p + 1] packed keys.
struct KeySets {
  std::vector<std::vector<int64_t>> keys;
  std::vector<std::vector<int64_t>> prefix;
};

// The visible keys of the key mask read by key_mask_arg (null: every key), whose values are checked here.
// A bad value is raised here in sync mode; in async mode (native/core/error_flags.h) it counts as visible.
KeySets key_sets(const OpCall& c, const int32_t* mask, const Dims& d) {
  if (mask) error_flags().check_on_host(ValueCheck::key_mask(c.op, d.Tk), mask, d.B * d.Tk);
  KeySets ks;
  ks.keys.resize(static_cast<size_t>(d.B));
  ks.prefix.resize(static_cast<size_t>(d.B));
  for (int64_t b = 0; b < d.B; ++b) {
    auto& keys = ks.keys[b];
    auto& prefix = ks.prefix[b];
    prefix.resize(static_cast<size_t>(d.Tk + 1));
    prefix[0] = 0;
    for (int64_t j = 0; j < d.Tk; ++j) {
      const int32_t m = mask ? mask[b * d.Tk + j] : 1;
      if (m) keys.push_back(j);
      prefix[j + 1] = static_cast<int64_t>(keys.size());
    }
  }
  return ks;
}

// Number of packed keys query t of batch row b sees.
int64_t visible(const Dims& d, const KeySets& ks, int64_t b, int64_t t) {
  const int64_t n = static_cast<int64_t>(ks.keys[b].size());
  if (!d.causal) return n;
  const int64_t pos = d.Tk - d.Tq + t;
  return pos < 0 ? 0 : ks.prefix[b][std::min(pos, d.Tk - 1) + 1];
}

// ------------------------------------------------------------------------------------------ scheduling
// Work item = (task (b, g), chunk of query blocks). More chunks than one only when tasks < threads: then
// about threads / tasks of them (at most max_chunks).
struct Schedule {
  int64_t tasks, nqb, chunks, items;
  int64_t task(int64_t item) const { return item % tasks; }
  // Causal blocks grow heavier with t: the last chunks go first.
  int64_t chunk(int64_t item) const { return chunks - 1 - item / tasks; }
  int64_t block_begin(int64_t ch) const { return ch * nqb / chunks; }
};

Schedule make_schedule(const Dims& d, int64_t max_chunks) {
  Schedule s;
  s.tasks = d.B * d.Hkv;
  s.nqb = (d.Tq + kBlockQ - 1) / kBlockQ;
  const int64_t threads = num_threads();
  s.chunks = 1;
  if (s.tasks < threads) s.chunks = std::max<int64_t>(1, std::min({s.nqb, max_chunks, (threads + s.tasks - 1) / s.tasks}));
  s.items = s.tasks * s.chunks;
  return s;
}

// Runs item(state, it) for every item, items claimed dynamically by the workers; each worker makes its
// own state (scratch memory) once. Which worker runs an item never changes its arithmetic.
template <typename Make, typename Fn>
void run_items(int64_t items, const Make& make_state, const Fn& item) {
  if (items <= 0) return;
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(items, num_threads());
  parallel_for(workers, 1, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; ++w) {
      auto state = make_state();
      for (int64_t it = next.fetch_add(1); it < items; it = next.fetch_add(1)) item(*state, it);
    }
  });
}

// Packed keys/values of one (b, g) task and the per-worker scratch of its query blocks.
struct Workspace {
  int64_t Dh, Dhp, ldk, nvis;
  std::unique_ptr<float[]> mem;
  float *kt, *vt, *kc, *vc;  // K^T, V^T [Dh, ldk];  K, V [nvis, Dhp]
  float *s, *dp;             // score / probability block and dP / dS block [kBlockQ, ldk]
  float *blk, *blk2;         // [kBlockQ, Dhp]: O or dQ rows; packed dO or Q rows
  float *dk, *dv;            // dK, dV of the packed keys [nvis, Dhp]
  float inv[kBlockQ];
  double dot[kBlockQ];

  Workspace(const Dims& d, bool backward) : Dh(d.Dh), Dhp(round_up(d.Dh, kPad)), ldk(0), nvis(0) {
    const int64_t ldmax = round_up(d.Tk, kPad);
    const int64_t kv = d.Dh * ldmax, rows = d.Tk * Dhp, blkn = kBlockQ * ldmax, bd = kBlockQ * Dhp;
    const int64_t total = backward ? 2 * kv + 4 * rows + 2 * blkn + 2 * bd : kv + rows + blkn + bd;
    mem.reset(new float[static_cast<size_t>(std::max<int64_t>(total, 1))]);
    float* p = mem.get();
    auto take = [&](int64_t n) {
      float* r = p;
      p += n;
      return r;
    };
    kt = take(kv);
    vc = take(rows);
    s = take(blkn);
    blk = take(bd);
    vt = kc = dp = blk2 = dk = dv = nullptr;
    if (backward) {
      vt = take(kv);
      kc = take(rows);
      dp = take(blkn);
      blk2 = take(bd);
      dk = take(rows);
      dv = take(rows);
    }
  }

  // Packs the visible keys of rows X[b, :, g, :] into xt (transposed) and/or xc (rows); pads are zero.
  void pack(const float* X, const Dims& d, const std::vector<int64_t>& keys, int64_t b, int64_t g, float* xt, float* xc) {
    nvis = static_cast<int64_t>(keys.size());
    ldk = round_up(nvis, kPad);
    for (int64_t n = 0; n < nvis; ++n) {
      const float* x = X + ((b * d.Tk + keys[n]) * d.Hkv + g) * Dh;
      if (xt)
        for (int64_t e = 0; e < Dh; ++e) xt[e * ldk + n] = x[e];
      if (xc) {
        std::memcpy(xc + n * Dhp, x, static_cast<size_t>(Dh) * sizeof(float));
        std::fill(xc + n * Dhp + Dh, xc + (n + 1) * Dhp, 0.f);
      }
    }
    if (xt)
      for (int64_t e = 0; e < Dh; ++e) std::fill(xt + e * ldk + nvis, xt + (e + 1) * ldk, 0.f);
  }

  // Rows [t0, t0 + R) of head h of X [B, Tq, Hq, Dh] into blk2 [R, Dhp] (pads zero).
  void pack_rows(const float* X, const Dims& d, int64_t b, int64_t h, int64_t t0, int64_t R) {
    for (int64_t r = 0; r < R; ++r) {
      std::memcpy(blk2 + r * Dhp, X + ((b * d.Tq + t0 + r) * d.Hq + h) * Dh, static_cast<size_t>(Dh) * sizeof(float));
      std::fill(blk2 + r * Dhp + Dh, blk2 + (r + 1) * Dhp, 0.f);
    }
  }
};

// S = scale Q_blk K^T over the first n_max packed keys of the block's query rows.
void scores(GemmFn gemm, Workspace& w, const Dims& d, const float* Q, int64_t b, int64_t h, int64_t t0, int64_t R,
            int64_t n_max) {
  const float* q = Q + ((b * d.Tq + t0) * d.Hq + h) * d.Dh;
  gemm(R, round_up(n_max, kPad), d.Dh, d.scale, q, d.Hq * d.Dh, 1, w.kt, w.ldk, false, w.s, w.ldk);
}

// A few queries over many keys (generation's decode step: Tq = 1 over the KV cache). Packing K and V per (b, kv
// head) costs more than the products there (at B 16, 8 heads, 260 cached keys it was ~2 ms of a 2.2 ms call:
// every cached key written once more per step and layer), so each (b, query head) reads its visible keys and values
// in place: s_j = scale q.k_j (double dot, rounded), p = exp(s - max), O = sum_j p_j v_j / sum p, lse = max + log
// sum p: the blocked path's quantities, summed in key order.
constexpr int64_t kDirectMaxTq = 4;

void attention_forward_direct(const Dims& d, const KeySets& ks, const float* Q, const float* K, const float* V, float* O,
                              float* lse) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  parallel_for(d.B * d.Hq, 1, [&](int64_t i0, int64_t i1) {
    std::vector<float> p(static_cast<size_t>(std::max<int64_t>(d.Tk, 1)));
    std::vector<float> acc(static_cast<size_t>(d.Dh));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / d.Hq, h = i % d.Hq, g = h / d.G;
      const auto& keys = ks.keys[b];
      for (int64_t t = 0; t < d.Tq; ++t) {
        const float* q = Q + ((b * d.Tq + t) * d.Hq + h) * d.Dh;
        float* o = O + ((b * d.Tq + t) * d.Hq + h) * d.Dh;
        float& l = lse[(b * d.Hq + h) * d.Tq + t];
        const int64_t n = visible(d, ks, b, t);
        if (n == 0) {
          std::fill_n(o, d.Dh, 0.f);
          l = neg_inf;
          continue;
        }
        for (int64_t k = 0; k < n; ++k)
          p[k] = d.scale * static_cast<float>(vec_dot(q, K + ((b * d.Tk + keys[k]) * d.Hkv + g) * d.Dh, d.Dh));
        const float m = vec_max(p.data(), n);
        vec_exp(p.data(), p.data(), n, m, 0.0, 1.f);
        const double sum = vec_sum(p.data(), n);
        l = static_cast<float>(m + std::log(sum));
        std::fill(acc.begin(), acc.end(), 0.f);
        for (int64_t k = 0; k < n; ++k) {
          const float* v = V + ((b * d.Tk + keys[k]) * d.Hkv + g) * d.Dh;
          const float pk = p[k];
#pragma omp simd
          for (int64_t e = 0; e < d.Dh; ++e) acc[e] += pk * v[e];
        }
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t e = 0; e < d.Dh; ++e) o[e] = acc[e] * inv;
      }
    }
  });
}

}  // namespace

// ------------------------------------------------------------------------------------------ forward
namespace {
void attention_forward_f32(const OpCall& c) {
  const Dims d = read_dims(c);
  KeySets ks;
  const auto io = read_attention_tensors<float>(c, d, false, [&](const int32_t* mask) { ks = key_sets(c, mask, d); });
  const float *Q = io.Q, *K = io.K, *V = io.V;
  float *O = io.O, *lse = io.lse;
  if (d.q_elems == 0) return;
  if (d.Tq <= kDirectMaxTq) return attention_forward_direct(d, ks, Q, K, V, O, lse);

  const GemmFn gemm = gemm_impl();
  const Schedule sc = make_schedule(d, std::numeric_limits<int64_t>::max());
  const float neg_inf = -std::numeric_limits<float>::infinity();
  auto make_state = [&] { return std::make_unique<Workspace>(d, false); };
  run_items(sc.items, make_state, [&](Workspace& w, int64_t it) {
    const int64_t task = sc.task(it), ch = sc.chunk(it);
    const int64_t b = task / d.Hkv, g = task % d.Hkv;
    w.pack(K, d, ks.keys[b], b, g, w.kt, nullptr);
    w.pack(V, d, ks.keys[b], b, g, nullptr, w.vc);
    for (int64_t qb = sc.block_begin(ch); qb < sc.block_begin(ch + 1); ++qb) {
      const int64_t t0 = qb * kBlockQ, R = std::min(kBlockQ, d.Tq - t0);
      const int64_t n_max = visible(d, ks, b, t0 + R - 1);  // visibility grows with t
      for (int64_t h = g * d.G; h < (g + 1) * d.G; ++h) {
        float* lse_h = lse + (b * d.Hq + h) * d.Tq;
        float* o_blk = O + ((b * d.Tq + t0) * d.Hq + h) * d.Dh;
        const int64_t ldo = d.Hq * d.Dh;
        if (n_max == 0) {
          for (int64_t r = 0; r < R; ++r) {
            std::fill_n(o_blk + r * ldo, d.Dh, 0.f);
            lse_h[t0 + r] = neg_inf;
          }
          continue;
        }
        scores(gemm, w, d, Q, b, h, t0, R, n_max);
        // Row softmax with the max shift (no overflow for any finite scores); the 1 / sum is applied to O.
        for (int64_t r = 0; r < R; ++r) {
          float* p = w.s + r * w.ldk;
          const int64_t n = visible(d, ks, b, t0 + r);
          if (n == 0) {
            lse_h[t0 + r] = neg_inf;
            w.inv[r] = 0.f;
          } else {
            const float m = vec_max(p, n);
            vec_exp(p, p, n, m, 0.0, 1.f);
            const double sum = vec_sum(p, n);
            lse_h[t0 + r] = static_cast<float>(m + std::log(sum));
            w.inv[r] = static_cast<float>(1.0 / sum);
          }
          std::fill(p + n, p + n_max, 0.f);
        }
        gemm(R, w.Dhp, n_max, 1.f, w.s, w.ldk, 1, w.vc, w.Dhp, false, w.blk, w.Dhp);
        for (int64_t r = 0; r < R; ++r) {
          const float* ob = w.blk + r * w.Dhp;
          float* o = o_blk + r * ldo;
          for (int64_t e = 0; e < d.Dh; ++e) o[e] = ob[e] * w.inv[r];
        }
      }
    }
  });
}
}  // namespace

// ------------------------------------------------------------------------------------------ backward
namespace {

// dX[b, :, g, :] = the packed rows xc for visible keys, 0 for the others.
void scatter_keys(float* dX, const float* xc, int64_t ldc, const Dims& d, const KeySets& ks, int64_t b, int64_t g) {
  const auto& keys = ks.keys[b];
  size_t n = 0;
  for (int64_t j = 0; j < d.Tk; ++j) {
    float* x = dX + ((b * d.Tk + j) * d.Hkv + g) * d.Dh;
    if (n < keys.size() && keys[n] == j) {
      std::memcpy(x, xc + static_cast<int64_t>(n) * ldc, static_cast<size_t>(d.Dh) * sizeof(float));
      ++n;
    } else {
      std::fill_n(x, d.Dh, 0.f);
    }
  }
}

void attention_backward_f32(const OpCall& c) {
  const Dims d = read_dims(c);
  KeySets ks;
  const auto io = read_attention_tensors<float>(c, d, true, [&](const int32_t* mask) { ks = key_sets(c, mask, d); });
  const float *dO = io.dO, *Q = io.Q, *K = io.K, *V = io.V, *O = io.saved_O, *lse = io.saved_lse;
  float *dQ = io.dQ, *dK = io.dK, *dV = io.dV;
  if (d.B * d.Hkv == 0) return;

  const GemmFn gemm = gemm_impl();
  const int64_t Dhp = round_up(d.Dh, kPad);
  // Chunked tasks keep private dK/dV partials (2 [Tk, Dhp] each): cap them at 128 MiB in all.
  const int64_t partial_elems = 2 * std::max<int64_t>(d.Tk, 1) * Dhp;
  const int64_t cap = std::max<int64_t>(1, (int64_t{32} << 20) / partial_elems / (d.B * d.Hkv));
  const Schedule sc = make_schedule(d, cap);
  std::vector<float> partials;
  if (sc.chunks > 1) partials.resize(static_cast<size_t>(sc.items * partial_elems));

  auto make_state = [&] { return std::make_unique<Workspace>(d, true); };
  run_items(sc.items, make_state, [&](Workspace& w, int64_t it) {
    const int64_t task = sc.task(it), ch = sc.chunk(it);
    const int64_t b = task / d.Hkv, g = task % d.Hkv;
    w.pack(K, d, ks.keys[b], b, g, w.kt, w.kc);
    w.pack(V, d, ks.keys[b], b, g, w.vt, w.vc);
    float* dk = w.dk;
    float* dv = w.dv;
    if (sc.chunks > 1) {
      dk = partials.data() + (task * sc.chunks + ch) * partial_elems;
      dv = dk + partial_elems / 2;
    }
    std::fill_n(dk, w.nvis * Dhp, 0.f);
    std::fill_n(dv, w.nvis * Dhp, 0.f);
    const int64_t ldq = d.Hq * d.Dh;
    for (int64_t qb = sc.block_begin(ch); qb < sc.block_begin(ch + 1); ++qb) {
      const int64_t t0 = qb * kBlockQ, R = std::min(kBlockQ, d.Tq - t0);
      const int64_t n_max = visible(d, ks, b, t0 + R - 1);
      for (int64_t h = g * d.G; h < (g + 1) * d.G; ++h) {
        const int64_t row0 = ((b * d.Tq + t0) * d.Hq + h) * d.Dh;  // rows of head h are ldq apart
        const float* lse_h = lse + (b * d.Hq + h) * d.Tq;
        if (n_max == 0) {
          for (int64_t r = 0; r < R; ++r) std::fill_n(dQ + row0 + r * ldq, d.Dh, 0.f);
          continue;
        }
        // P = exp(S - lse) / rowsum (see the header); rows without visible keys stay 0.
        scores(gemm, w, d, Q, b, h, t0, R, n_max);
        for (int64_t r = 0; r < R; ++r) {
          float* p = w.s + r * w.ldk;
          const int64_t n = visible(d, ks, b, t0 + r);
          const float l = lse_h[t0 + r];
          if (n == 0 || l == -std::numeric_limits<float>::infinity()) {
            std::fill(p, p + n_max, 0.f);
            w.dot[r] = 0;
            continue;
          }
          vec_exp(p, p, n, l, 0.0, 1.f);
          const float inv = static_cast<float>(1.0 / vec_sum(p, n));
          for (int64_t j = 0; j < n; ++j) p[j] *= inv;
          std::fill(p + n, p + n_max, 0.f);
          w.dot[r] = vec_dot(dO + row0 + r * ldq, O + row0 + r * ldq, d.Dh);
        }
        // dV += P^T dO
        w.pack_rows(dO, d, b, h, t0, R);
        gemm(n_max, Dhp, R, 1.f, w.s, 1, w.ldk, w.blk2, Dhp, true, dv, Dhp);
        // dS = P * (dO V^T - D)
        gemm(R, round_up(n_max, kPad), d.Dh, 1.f, dO + row0, ldq, 1, w.vt, w.ldk, false, w.dp, w.ldk);
        for (int64_t r = 0; r < R; ++r)
          vec_softmax_grad(w.dp + r * w.ldk, w.s + r * w.ldk, n_max, static_cast<float>(w.dot[r]));
        // dQ = scale dS K
        gemm(R, Dhp, n_max, d.scale, w.dp, w.ldk, 1, w.kc, Dhp, false, w.blk, Dhp);
        for (int64_t r = 0; r < R; ++r)
          std::memcpy(dQ + row0 + r * ldq, w.blk + r * Dhp, static_cast<size_t>(d.Dh) * sizeof(float));
        // dK += scale dS^T Q
        w.pack_rows(Q, d, b, h, t0, R);
        gemm(n_max, Dhp, R, d.scale, w.dp, 1, w.ldk, w.blk2, Dhp, true, dk, Dhp);
      }
    }
    if (sc.chunks == 1) {
      scatter_keys(dK, dk, Dhp, d, ks, b, g);
      scatter_keys(dV, dv, Dhp, d, ks, b, g);
    }
  });
  if (sc.chunks > 1) {
    // Partials summed in chunk order: the same order on every run.
    parallel_for(sc.tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t task = t0; task < t1; ++task) {
        float* acc = partials.data() + task * sc.chunks * partial_elems;
        for (int64_t ch = 1; ch < sc.chunks; ++ch) {
          const float* p = acc + ch * partial_elems;
          for (int64_t e = 0; e < partial_elems; ++e) acc[e] += p[e];
        }
        const int64_t b = task / d.Hkv, g = task % d.Hkv;
        scatter_keys(dK, acc, Dhp, d, ks, b, g);
        scatter_keys(dV, acc + partial_elems / 2, Dhp, d, ks, b, g);
      }
    });
  }
}
}  // namespace

// bf16 Q, K, V, O, dO and gradients (autocast's attention; lse float32) run the float32 kernels on widened copies
// (float32_view.h), checked first as CUDA checks them: one float type for all of them.
void attention_forward_cpu(const OpCall& c) {
  read_attention_tensors<void>(c, read_dims(c), false, [](const int32_t*) {});
  in_float32(c, attention_forward_f32);
}

void attention_backward_cpu(const OpCall& c) {
  read_attention_tensors<void>(c, read_dims(c), true, [](const int32_t*) {});
  in_float32(c, attention_backward_f32);
}

}  // namespace vw::cpu
