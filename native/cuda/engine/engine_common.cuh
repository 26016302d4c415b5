// Shared pieces of the CUDA engine ops (native/cuda/engine/*.cu):
//   * the backend-neutral parameter readers (native/core/op_args.h, namespace vw: found unqualified from
//     here), so both backends reject the same arguments with the same messages;
//   * the float-dtype dispatch of the bf16-capable ops (dispatch_float, native/cuda/common.cuh: one template
//     per kernel, instantiated for float and __nv_bfloat16; loads convert to float, all arithmetic is fp32 or
//     wider, stores round once);
//   * grid sizing for grid-stride passes;
//   * column_sums(): deterministic column reductions (bias / norm weight gradients) without atomics.
// Ops only enqueue work: every kernel goes through launch() (native/cuda/common.cuh) and the stream is
// waited for by run_op() (native/cuda/ops_cuda.h), so no op synchronises at its end. Data-dependent checks
// (ids, key masks) set error flags on the device (check_values, native/core/error_flags.h): no read-back.
#pragma once
#include <algorithm>
#include <climits>
#include <cstdint>

#include "../../core/op_args.h"
#include "../common.cuh"
#include "../ops_cuda.h"

namespace vw::cuda::eng {

constexpr int kThreads = 256;  // threads per block of the element-wise and row passes

// Blocks of a grid-stride pass over n items, `per_block` items per block and sweep: enough to fill the
// GPU several times over, never more than there is work (at least one).
inline unsigned grid_for(const Context& ctx, int64_t n, int64_t per_block = kThreads) {
  const int64_t want = (n + per_block - 1) / per_block;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(want, int64_t{ctx.sm_count} * 32)));
}

constexpr int kIlp = 4;  // elements per thread and sweep of ilp_pass (below)
// The grid of an ilp_pass over n items.
inline unsigned ilp_grid(const Context& ctx, int64_t n) { return grid_for(ctx, n, int64_t{kThreads} * kIlp); }

#ifdef __CUDACC__

// NaN-propagating max (the CPU's vec_max returns NaN when any element is NaN; fmaxf would drop it).
struct NanMaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return (a > b || a != a) ? a : b; }
};

// Reduction over a team of TEAM threads that share a row: one warp (TEAM = 32) or the whole block
// (TEAM = blockDim.x = kThreads). Every thread of the team gets the result.
template <int TEAM, typename T, typename Op>
__device__ __forceinline__ T team_reduce(T v, Op op, T identity) {
  if constexpr (TEAM == 32) {
    (void)identity;
    return warp_allreduce(v, op);
  } else {
    return block_allreduce(v, op, identity);
  }
}

// Row passes: rows of up to kWarpRowMax elements go to one warp each (kThreads / 32 rows per block), longer
// ones to a whole block. team_coords gives a thread its lane in the row's team and its first row / row step.
constexpr int64_t kWarpRowMax = 1024;

template <int TEAM>
__device__ __forceinline__ void team_coords(int& lane, int64_t& first, int64_t& step) {
  constexpr int kTeams = kThreads / TEAM;
  lane = static_cast<int>(threadIdx.x % TEAM);
  first = static_cast<int64_t>(blockIdx.x) * kTeams + threadIdx.x / TEAM;
  step = static_cast<int64_t>(gridDim.x) * kTeams;
}

inline unsigned row_grid(const Context& ctx, int64_t R, bool warp_rows) {
  return grid_for(ctx, R, warp_rows ? kThreads / 32 : 1);
}

// Enqueues a row pass over R rows of C elements: warp_kernel (the TEAM = 32 instance) when C <= kWarpRowMax,
// else block_kernel (TEAM = kThreads), kThreads threads per block either way.
template <typename... P, typename... A>
void launch_team_rows(const char* op, const Context& ctx, int64_t R, int64_t C, void (*warp_kernel)(P...),
                      void (*block_kernel)(P...), const A&... args) {
  if (C <= kWarpRowMax)
    launch(op, ctx, row_grid(ctx, R, true), kThreads, 0, warp_kernel, args...);
  else
    launch(op, ctx, row_grid(ctx, R, false), kThreads, 0, block_kernel, args...);
}

// ------------------------------------------------------------------------------ column reductions
// out_o[j] = sum_r f(r, j)[o] for o < NOUT, r < R, j < C, in double, with a split fixed by (R, C) alone:
// rows are cut into `chunks` contiguous chunks; a block sums a tile of 32 columns of one chunk, its 8 row
// lanes each summing their rows in order and the lanes merging in order; a second kernel adds the chunk
// partials in chunk order and hands the sums to store(j, sums). No atomics: run-to-run bit-identical.
// F: __device__ void operator()(int64_t r, int64_t j, double (&v)[NOUT]) const
// S: __device__ void operator()(int64_t j, const double (&s)[NOUT]) const
constexpr int kColTile = 32, kRowLanes = 8;

template <int NOUT, typename F>
__global__ void __launch_bounds__(kColTile* kRowLanes)
    column_partial_kernel(F f, int64_t R, int64_t C, int64_t rows_per, double* __restrict__ partial) {
  __shared__ double sh[NOUT][kRowLanes][kColTile];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kColTile + threadIdx.x;
  const int64_t chunk = blockIdx.y;
  const int64_t r0 = chunk * rows_per, r1 = r0 + rows_per < R ? r0 + rows_per : R;
  double acc[NOUT];
#pragma unroll
  for (int o = 0; o < NOUT; ++o) acc[o] = 0.0;
  if (j < C) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kRowLanes) {
      double v[NOUT];
      f(r, j, v);
#pragma unroll
      for (int o = 0; o < NOUT; ++o) acc[o] += v[o];
    }
  }
#pragma unroll
  for (int o = 0; o < NOUT; ++o) sh[o][threadIdx.y][threadIdx.x] = acc[o];
  __syncthreads();
  if (threadIdx.y == 0 && j < C) {
#pragma unroll
    for (int o = 0; o < NOUT; ++o) {
      double s = 0.0;
      for (int l = 0; l < kRowLanes; ++l) s += sh[o][l][threadIdx.x];
      partial[(chunk * NOUT + o) * C + j] = s;
    }
  }
}

template <int NOUT, typename S>
__global__ void __launch_bounds__(kThreads)
    column_final_kernel(const double* __restrict__ partial, int64_t chunks, int64_t C, S store) {
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < C;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double s[NOUT];
#pragma unroll
    for (int o = 0; o < NOUT; ++o) s[o] = 0.0;
    for (int64_t ch = 0; ch < chunks; ++ch) {
#pragma unroll
      for (int o = 0; o < NOUT; ++o) s[o] += partial[(ch * NOUT + o) * C + j];
    }
    store(j, s);
  }
}

// Host launcher of the two kernels above (C >= 1; R may be 0: every sum is then 0 and store still runs).
template <int NOUT, typename F, typename S>
void column_sums(const char* op, const Context& ctx, int64_t R, int64_t C, F f, S store) {
  if (C <= 0) return;
  const int64_t tiles = (C + kColTile - 1) / kColTile;
  if (tiles > INT_MAX) throw_range_error("[", op, "] C = ", C, " exceeds the CUDA backend's column limit");
  // About 1024 blocks in all, at least 32 rows per chunk, at most 1024 chunks.
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>({(R + 31) / 32, std::max<int64_t>(1, 1024 / tiles), 1024}));
  const int64_t rows_per = std::max<int64_t>(1, (R + chunks - 1) / chunks);
  DeviceBuffer partial(op, ctx, sizeof(double) * static_cast<size_t>(chunks * NOUT * C), nullptr);
  launch(op, ctx, dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(chunks)), dim3(kColTile, kRowLanes), 0,
         column_partial_kernel<NOUT, F>, f, R, C, rows_per, partial.as<double>());
  launch(op, ctx, grid_for(ctx, C), kThreads, 0, column_final_kernel<NOUT, S>, partial.as<double>(), chunks, C, store);
  // `partial` is freed stream-ordered, after the kernels.
}

// Grid-stride index helpers.
__device__ __forceinline__ int64_t global_tid() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t global_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// store(i, value(i)) for every i in [0, n), kIlp elements per thread and sweep, all loaded before any is stored.
// Why: a plain grid-stride pass over a 4-byte stream keeps one load in flight per thread, 8 KiB per SM at full
// occupancy, a fraction of what covers an H200's memory latency (the 2026-12-04 profile: casts and axpbys well
// below its bandwidth). `value` reads only inputs, so the kIlp loads issue together. A thread's elements lie a grid
// apart, so each load of a warp stays coalesced and no alignment is needed; an output may alias its input element
// for element (each element is read before it is written, by the same thread). Launch with ilp_grid.
template <typename V, typename Value, typename Store>
__device__ __forceinline__ void ilp_pass(int64_t n, Value value, Store store) {
  const int64_t stride = global_stride();
  for (int64_t base = global_tid(); base < n; base += kIlp * stride) {
    V v[kIlp];
#pragma unroll
    for (int u = 0; u < kIlp; ++u)
      if (base + u * stride < n) v[u] = value(base + u * stride);
#pragma unroll
    for (int u = 0; u < kIlp; ++u)
      if (base + u * stride < n) store(base + u * stride, v[u]);
  }
}

#endif  // __CUDACC__

}  // namespace vw::cuda::eng
