// Row movement on CUDA (semantics: the CPU backend's rows.cpp and embedding.cpp). float32 only.
//   gather_rows / embedding_forward: dst[i, :] = src[idx[i], :], a block per destination row (grid-stride).
//   scatter_add_rows / embedding_backward: dSrc[idx[i], :] += dDst[i, :], deterministic and atomic-free:
//     the (idx, i) pairs are sorted by idx with CUB's radix sort (stable, so equal ids keep increasing i),
//     then each run of equal ids is summed, a thread per column, in order of i, in double starting from the
//     old row (a single-row run is a plain float add), exactly the CPU's grouping.
//   im2col: cols[b, P, Cin*p*p] from img[b, Cin, H, W], one thread per output element.
// The ids are checked against [0, S) on the device (an error flag with the CPU's message, raised at the op's
// end in sync mode, at the next synchronisation in async mode); the kernels skip ids outside it.
#include <cub/device/device_radix_sort.cuh>

#include "../../core/rows_args.h"
#include "engine_common.cuh"

namespace vw::cuda {

namespace {

using namespace eng;

constexpr int kRowThreads = 128;

// An id outside [0, S) (its error flag is set; raised at the next synchronisation) gives a zero row.
__global__ void __launch_bounds__(kRowThreads)
    gather_rows_kernel(const float* __restrict__ src, const int32_t* __restrict__ idx, float* __restrict__ dst, int64_t n,
                       int64_t C, int64_t S) {
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const int64_t v = idx[i];
    float* d = dst + i * C;
    if (v < 0 || v >= S) {
      for (int64_t j = threadIdx.x; j < C; j += blockDim.x) d[j] = 0.f;
      continue;
    }
    const float* s = src + v * C;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) d[j] = s[j];
  }
}

__global__ void __launch_bounds__(kThreads) iota_kernel(int32_t* __restrict__ v, int64_t n) {
  for (int64_t i = global_tid(); i < n; i += global_stride()) v[i] = static_cast<int32_t>(i);
}

// One block per run of equal sorted ids and chunk of kRowThreads columns (blockIdx.y; a block at a position that
// does not start a run exits), one thread per column: a long run (the image placeholders' id, padding) is then
// spread over C / kRowThreads blocks instead of one, and each thread issues its run's loads 8 ahead of the adds,
// which stay in order of i (the CPU's grouping, bit for bit as before). Runs of ids outside [0, S) (flagged; a
// negative id is >= 2^31 unsigned) are skipped.
__global__ void __launch_bounds__(kRowThreads)
    scatter_runs_kernel(const float* __restrict__ ddst, const uint32_t* __restrict__ keys, const int32_t* __restrict__ order,
                        float* __restrict__ dsrc, int64_t n, int64_t C, int64_t S) {
  const int64_t j = int64_t{blockIdx.y} * blockDim.x + threadIdx.x;
  for (int64_t p = blockIdx.x; p < n; p += gridDim.x) {
    const uint32_t v = keys[p];
    if (p > 0 && keys[p - 1] == v) continue;
    if (static_cast<int64_t>(v) >= S || j >= C) continue;
    int64_t q = p + 1;
    while (q < n && keys[q] == v) ++q;
    float* d = dsrc + static_cast<int64_t>(v) * C + j;
    if (q == p + 1) {
      *d += ddst[static_cast<int64_t>(order[p]) * C + j];
      continue;
    }
    double a = *d;
    int64_t k = p;
    for (; k + 8 <= q; k += 8) {
      float x[8];
#pragma unroll
      for (int u = 0; u < 8; ++u) x[u] = ddst[static_cast<int64_t>(order[k + u]) * C + j];
#pragma unroll
      for (int u = 0; u < 8; ++u) a += x[u];
    }
    for (; k < q; ++k) a += ddst[static_cast<int64_t>(order[k]) * C + j];
    *d = static_cast<float>(a);
  }
}

__global__ void __launch_bounds__(kThreads)
    im2col_kernel(const float* __restrict__ img, float* __restrict__ cols, int64_t total, int64_t Cin, int64_t H,
                  int64_t W, int64_t p, int64_t P, int64_t Wp, int64_t K) {
  for (int64_t e = global_tid(); e < total; e += global_stride()) {
    const int64_t r = e / K, k = e % K;
    const int64_t b = r / P, py = (r % P) / Wp, px = r % Wp;
    const int64_t ch = k / (p * p), ky = (k / p) % p, kx = k % p;
    cols[e] = img[((b * Cin + ch) * H + py * p + ky) * W + px * p + kx];
  }
}

void gather(const char* op, const Context& ctx, const float* src, const int32_t* idx, float* dst, int64_t S, int64_t n,
            int64_t C) {
  if (n == 0 || C == 0) return;
  launch(op, ctx, grid_for(ctx, n, 1), kRowThreads, 0, gather_rows_kernel, src, idx, dst, n, C, S);
}

void scatter_add(const char* op, const Context& ctx, const float* ddst, const int32_t* idx, float* dsrc, int64_t S,
                 int64_t n, int64_t C) {
  if (n == 0 || C == 0) return;
  if (n > INT_MAX) throw_range_error("[", op, "] n = ", n, " exceeds the CUDA backend's limit of ", INT_MAX, " rows");
  // Valid ids lie in [0, S) and S - 1 < 2^31: sort only the bits they can set. Flagged ids outside it may then
  // split a run (their high bits are not sorted on): the result is undefined, but every write stays in dSrc.
  int end_bit = 1;
  while (end_bit < 32 && (int64_t{1} << end_bit) < S) ++end_bit;
  const int items = static_cast<int>(n);
  DeviceBuffer keys_out(op, ctx, sizeof(uint32_t) * static_cast<size_t>(n), nullptr);
  DeviceBuffer order_in(op, ctx, sizeof(int32_t) * static_cast<size_t>(n), nullptr);
  DeviceBuffer order_out(op, ctx, sizeof(int32_t) * static_cast<size_t>(n), nullptr);
  launch(op, ctx, grid_for(ctx, n), kThreads, 0, iota_kernel, order_in.as<int32_t>(), n);
  const uint32_t* keys_in = reinterpret_cast<const uint32_t*>(idx);  // non-negative ids: same order unsigned
  size_t temp_bytes = 0;
  CUDA_CHECK(op, cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, keys_out.as<uint32_t>(), order_in.as<int32_t>(),
                                                 order_out.as<int32_t>(), items, 0, end_bit, ctx.stream));
  DeviceBuffer temp(op, ctx, temp_bytes, nullptr);
  CUDA_CHECK(op, cub::DeviceRadixSort::SortPairs(temp.get(), temp_bytes, keys_in, keys_out.as<uint32_t>(), order_in.as<int32_t>(),
                                                 order_out.as<int32_t>(), items, 0, end_bit, ctx.stream));
  const int64_t column_blocks = (C + kRowThreads - 1) / kRowThreads;
  if (column_blocks > 65535) throw_range_error("[", op, "] C = ", C, " exceeds the CUDA backend's limit of ", int64_t{65535} * kRowThreads, " columns");
  launch(op, ctx, dim3(grid_for(ctx, n, 1), static_cast<unsigned>(column_blocks)), kRowThreads, 0, scatter_runs_kernel, ddst, keys_out.as<uint32_t>(),
         order_out.as<int32_t>(), dsrc, n, C, S);
}

// The body of the four row ops: the ids' device check (an error flag, native/core/error_flags.h), then the
// gather or the scatter-add, which skip ids outside [0, S).
void move_rows(const char* op, const RowMoveArgs& a) {
  Context& ctx = context(op);
  check_values(op, ctx, ValueCheck::ids(op, a.idx_name, a.S), a.idx, a.n);
  if (a.scatter)
    scatter_add(op, ctx, a.src, a.idx, a.dst, a.S, a.n, a.C);
  else
    gather(op, ctx, a.src, a.idx, a.dst, a.S, a.n, a.C);
}

}  // namespace

void embedding_forward_cuda(const OpCall& c) { move_rows(c.op, read_embedding(c, false)); }
void embedding_backward_cuda(const OpCall& c) { move_rows(c.op, read_embedding(c, true)); }
void gather_rows_cuda(const OpCall& c) { move_rows(c.op, read_gather_rows(c, false)); }
void scatter_add_rows_cuda(const OpCall& c) { move_rows(c.op, read_gather_rows(c, true)); }

void im2col_cuda(const OpCall& c) {
  const char* op = c.op;
  const Im2colArgs a = read_im2col(c);
  Context& ctx = context(op);
  const int64_t total = numel(c, {a.B, a.P, a.K});
  if (total == 0) return;
  launch(op, ctx, grid_for(ctx, total), kThreads, 0, im2col_kernel, a.img, a.cols, total, a.Cin, a.H, a.W, a.p, a.P, a.Wp,
         a.K);
}

}  // namespace vw::cuda
