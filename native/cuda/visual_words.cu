// Visual words on CUDA: top-k of softmax(x w_vm^T) per row, streamed over row chunks (same semantics as
// native/cpu/visual_words.cpp: probabilities exp(z - lse) over the whole vocabulary, formed as exp((z - m) - log s)
// since m + log s rounds to m at huge logits; ties to the lower id).
//   Shapes: x [N, d], w_vm [V, d] (dtype); ids [N, k] int32, probs [N, k] float32 (device).
//   Per chunk of nc rows:
//     GEMM   z[nc, V] (f32) = x_c w_vm^T
//     row pass (one block per row):
//       k <= kSmallK: one read of the row: online max / sum-exp, and each thread keeps its best kSmallK
//                     (value, id) in registers; then k rounds of a block argmax over the threads' list heads
//       k >  kSmallK: one read for max / sum-exp, then k reads, each a block argmax over the entries that
//                     rank below the previous pick (no exclusion mask needed: (value, id) is a total order)
#include <algorithm>
#include <climits>

#include "common.cuh"
#include "ops_cuda.h"

namespace vw::cuda {
namespace {

constexpr int kSmallK = 16;
constexpr int kTopkThreads = 256;  // kSmallK x kTopkThreads candidates fit in 32 KiB of shared memory

struct Cand {
  float v;
  int32_t id;
};
// "better" = larger logit, then lower id (the CPU heap's order).
VW_HD bool better(const Cand& x, const Cand& y) { return x.v > y.v || (x.v == y.v && x.id < y.id); }
VW_HD Cand worst_cand() { return {-INFINITY, INT_MAX}; }  // ranks below every real entry

// A candidate plus the thread that owns it, for the block-wide argmax of the merge.
struct OwnedCand {
  float v;
  int32_t id;
  int32_t owner;
  int32_t pad;
};
struct BetterOp {
  __device__ __forceinline__ OwnedCand operator()(const OwnedCand& x, const OwnedCand& y) const {
    return better(Cand{x.v, x.id}, Cand{y.v, y.id}) ? x : y;
  }
};

struct VwRowParams {
  const float* z;          // [nc, V]
  int32_t* ids;            // [nc, k] (chunk start)
  float* probs;            // [nc, k]
  unsigned long long* status;
  int64_t row0;
  int V, k;
};

// The row's log-sum-exp kept as its two parts, max m and log s: m + log s is not representable at huge m (|m| ~ 1e30
// rounds it to m, and tied top words each came out with probability 1).
struct RowLse {
  double m, log_s;
};

__device__ __forceinline__ void write_pick(const VwRowParams& p, int r, int j, const Cand& c, RowLse lse) {
  const int64_t o = static_cast<int64_t>(r) * p.k + j;
  p.ids[o] = c.id;
  p.probs[o] = static_cast<float>(exp((static_cast<double>(c.v) - lse.m) - lse.log_s));
}

__device__ __forceinline__ RowLse finish_lse(const VwRowParams& p, int r, SoftmaxState st) {
  if (threadIdx.x == 0 && st.bad()) flag_bad_row(p.status, p.row0 + r, st.reported_max());
  return RowLse{static_cast<double>(st.m), log(static_cast<double>(st.s))};
}

// k <= kSmallK: single read of the row.
template <int VEC>
__global__ void __launch_bounds__(kTopkThreads, 1) visual_words_small_k_kernel(VwRowParams p) {
  __shared__ float s_val[kSmallK][kTopkThreads];
  __shared__ int32_t s_id[kSmallK][kTopkThreads];
  const int r = blockIdx.x;
  const float* z = p.z + static_cast<int64_t>(r) * p.V;

  // The thread's best kSmallK in descending order, kept in registers (all indices are compile-time).
  Cand best[kSmallK];
#pragma unroll
  for (int j = 0; j < kSmallK; ++j) best[j] = worst_cand();
  SoftmaxState st = softmax_empty();
  for (int v = threadIdx.x * VEC; v < p.V; v += blockDim.x * VEC) {
    float x[VEC];
    load_row<VEC>(z + v, x);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      st.add(x[j]);
      const Cand c{x[j], v + j};
      if (better(c, best[kSmallK - 1])) {  // rare after the first few: most entries stop at this compare
#pragma unroll
        for (int q = kSmallK - 1; q > 0; --q) best[q] = better(c, best[q - 1]) ? best[q - 1] : (better(c, best[q]) ? c : best[q]);
        if (better(c, best[0])) best[0] = c;
      }
    }
  }
#pragma unroll
  for (int j = 0; j < kSmallK; ++j) {
    s_val[j][threadIdx.x] = best[j].v;
    s_id[j][threadIdx.x] = best[j].id;
  }
  st = block_allreduce(st, SoftmaxMerge{}, softmax_empty());  // also the barrier for the lists above
  const RowLse lse = finish_lse(p, r, st);

  // Merge: each round the best list head wins and its owner advances.
  int head = 0;
  for (int j = 0; j < p.k; ++j) {
    OwnedCand mine{-INFINITY, INT_MAX, static_cast<int32_t>(threadIdx.x), 0};
    if (head < kSmallK) mine.v = s_val[head][threadIdx.x], mine.id = s_id[head][threadIdx.x];
    const OwnedCand win = block_allreduce(mine, BetterOp{}, OwnedCand{-INFINITY, INT_MAX, -1, 0});
    if (win.owner == static_cast<int32_t>(threadIdx.x)) {
      ++head;
      write_pick(p, r, j, Cand{win.v, win.id}, lse);
    }
  }
}

// Any k: k + 1 reads of the row (normally served from L2 while the block works on it).
template <int VEC>
__global__ void __launch_bounds__(kRowThreads) visual_words_large_k_kernel(VwRowParams p) {
  const int r = blockIdx.x;
  const float* z = p.z + static_cast<int64_t>(r) * p.V;
  SoftmaxState st;
  row_softmax_state<VEC>(z, p.V, st);
  const RowLse lse = finish_lse(p, r, st);

  Cand prev{INFINITY, -1};  // ranks above every real entry
  for (int j = 0; j < p.k; ++j) {
    OwnedCand mine{-INFINITY, INT_MAX, 0, 0};
    for (int v = threadIdx.x * VEC; v < p.V; v += blockDim.x * VEC) {
      float x[VEC];
      load_row<VEC>(z + v, x);
#pragma unroll
      for (int q = 0; q < VEC; ++q) {
        const Cand c{x[q], v + q};
        if ((j == 0 || better(prev, c)) && better(c, Cand{mine.v, mine.id})) mine.v = c.v, mine.id = c.id;
      }
    }
    const OwnedCand win = block_allreduce(mine, BetterOp{}, OwnedCand{-INFINITY, INT_MAX, 0, 0});
    prev = Cand{win.v, win.id};
    if (threadIdx.x == 0) write_pick(p, r, j, prev, lse);
  }
}

void launch_row_kernel(const char* op, const Context& ctx, int64_t nc, const VwRowParams& p) {
  if (p.k <= kSmallK)
    launch_rows(op, ctx, nc, kTopkThreads, p.V, visual_words_small_k_kernel<4>, visual_words_small_k_kernel<1>, p);
  else
    launch_rows(op, ctx, nc, kRowThreads, p.V, visual_words_large_k_kernel<4>, visual_words_large_k_kernel<1>, p);
}

}  // namespace

OpStats visual_words(const VisualWordsArgs& a) {
  const char* op = "visual_words";
  check_dims(op, a.N, a.d, a.V);
  const int64_t N = a.N, d = a.d, V = a.V, k = a.k;
  const DType dt = a.dtype;
  Context& ctx = context(op);

  FusedCall call(op, ctx, dt, {NamedInput{"x", a.x, N * d}, NamedInput{"wVm", a.w_vm, V * d}}, N);
  if (N == 0) return call.finish();
  const ChunkBlocks blocks(call, a.chunk_rows, N, V, 1, 0, a.workspace_budget, false);
  const cudaDataType_t tin = cuda_type(dt);
  for (int64_t c0 = 0; c0 < N; c0 += blocks.rows) {
    const int64_t nc = std::min(blocks.rows, N - c0);
    gemm_rm(op, ctx.blas, false, true, nc, V, d, 1.f, elem_offset(a.x, c0 * d, dt), tin, d, a.w_vm, tin, d, 0.f,
            blocks.f32(0), CUDA_R_32F, V);
    VwRowParams p;
    p.z = blocks.f32(0);
    p.ids = a.ids + c0 * k;
    p.probs = a.probs + c0 * k;
    p.status = call.status();
    p.row0 = c0;
    p.V = static_cast<int>(V);
    p.k = static_cast<int>(k);
    launch_row_kernel(op, ctx, nc, p);
  }
  return call.finish();
}

// The table entries (native/core/ops.def).
void visual_words_cuda(const OpCall& c) { c.report(visual_words(read_visual_words(c))); }

}  // namespace vw::cuda
