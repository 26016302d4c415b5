// Multi-tensor AdamW step and sum of squares on CUDA (semantics: the CPU backend's adamw.cpp). float32 tensors.
// Both cut the k tensors into fixed chunks of kChunk elements; a table of (tensor, begin, end) chunks and the
// tensors' pointers is uploaded once per call and one block handles one chunk, so a single launch covers
// every tensor whatever their number and sizes.
//   adamw_step: the CPU's float expressions (bias corrections formed in double on the host). Extension
//     (CUDA only, see native/core/ops.def): with the int bf16Copies = 1 after n_1..n_k, k more outputs
//     c_1..c_k (bfloat16 [n_t]) receive the updated p_t rounded to bf16 in the same pass: the model copies
//     a bf16 forward reads while p stays the fp32 master. Absent or 0: the CPU's interface exactly.
//   sum_squares: per-chunk sums in double, then one block adds the chunk sums in a fixed order: the result
//     is run-to-run bit-identical.
#include <vector>

#include "../../core/adamw_args.h"
#include "engine_common.cuh"

namespace vw::cuda {

namespace {

using namespace eng;

constexpr int64_t kChunk = int64_t{1} << 15;  // elements per chunk (the CPU's kElemGrain)

using Chunk = TensorChunk;

// Chunks and per-tensor records copied to the device as one block: [Chunk x nc][Rec x k].
template <typename Rec>
DeviceBuffer upload_table(const char* op, const Context& ctx, const std::vector<Chunk>& chunks, const std::vector<Rec>& recs) {
  const size_t cb = sizeof(Chunk) * chunks.size(), rb = sizeof(Rec) * recs.size();
  std::vector<unsigned char> host(cb + rb);
  std::memcpy(host.data(), chunks.data(), cb);
  std::memcpy(host.data() + cb, recs.data(), rb);
  DeviceBuffer dev(op, ctx, host.size(), nullptr);
  // From pageable memory: returns once the host bytes are staged, so `host` may go out of scope.
  CUDA_CHECK(op, cudaMemcpyAsync(dev.get(), host.data(), host.size(), cudaMemcpyHostToDevice, ctx.stream));
  return dev;
}

struct AdamRec {
  const float* g;
  float* p;
  float* m;
  float* v;
  __nv_bfloat16* copy;  // null without bf16Copies
};

__global__ void __launch_bounds__(kThreads)
    adamw_kernel(const Chunk* __restrict__ chunks, const AdamRec* __restrict__ recs, AdamScalars s) {
  const Chunk ch = chunks[blockIdx.x];
  const AdamRec r = recs[ch.tensor];
  for (int64_t i = ch.begin + threadIdx.x; i < ch.end; i += blockDim.x) {
    const float gi = r.g[i] * s.gs;
    const float mi = s.b1 * r.m[i] + s.c1 * gi, vi = s.b2 * r.v[i] + s.c2 * gi * gi;
    r.m[i] = mi;
    r.v[i] = vi;
    const float pi = r.p[i] * s.decay - s.step_size * mi / (sqrtf(vi) * s.inv_bc2_sqrt + s.eps);
    r.p[i] = pi;
    if (r.copy) r.copy[i] = __float2bfloat16_rn(pi);
  }
}

__global__ void __launch_bounds__(kThreads)
    sum_squares_chunk_kernel(const Chunk* __restrict__ chunks, const float* const* __restrict__ xs, double* __restrict__ part) {
  const Chunk ch = chunks[blockIdx.x];
  const float* x = xs[ch.tensor];
  double s = 0;
  for (int64_t i = ch.begin + threadIdx.x; i < ch.end; i += blockDim.x) s += static_cast<double>(x[i]) * x[i];
  s = block_allreduce(s, SumOp{}, 0.0);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ void __launch_bounds__(kThreads) sum_squares_final_kernel(const double* __restrict__ part, int64_t n, float* __restrict__ out) {
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += part[i];
  s = block_allreduce(s, SumOp{}, 0.0);
  if (threadIdx.x == 0) out[0] = static_cast<float>(s);
}

void check_grid(const char* op, size_t blocks) {
  if (blocks > static_cast<size_t>(INT_MAX)) throw_range_error("[", op, "] too many elements for one launch (", blocks, " chunks)");
}

}  // namespace

void adamw_step_cuda(const OpCall& c) {
  const char* op = c.op;
  const AdamWArgs a = read_adamw_step(c, true);
  std::vector<AdamRec> recs(a.n.size());
  for (size_t t = 0; t < a.n.size(); ++t) recs[t] = {a.g[t], a.p[t], a.m[t], a.v[t], static_cast<__nv_bfloat16*>(a.copy[t])};
  const AdamScalars s = a.scalars();

  Context& ctx = context(op);
  const std::vector<Chunk> chunks = tensor_chunks(a.n, kChunk);
  if (chunks.empty()) return;
  check_grid(op, chunks.size());
  DeviceBuffer table = upload_table(op, ctx, chunks, recs);
  const Chunk* d_chunks = table.as<Chunk>();
  const AdamRec* d_recs = reinterpret_cast<const AdamRec*>(d_chunks + chunks.size());
  launch(op, ctx, static_cast<unsigned>(chunks.size()), kThreads, 0, adamw_kernel, d_chunks, d_recs, s);
}

void sum_squares_cuda(const OpCall& c) {
  const char* op = c.op;
  const SumSquaresArgs a = read_sum_squares(c);
  Context& ctx = context(op);
  const std::vector<Chunk> chunks = tensor_chunks(a.n, kChunk);
  check_grid(op, chunks.size());
  DeviceBuffer part(op, ctx, sizeof(double) * chunks.size(), nullptr);
  if (!chunks.empty()) {
    DeviceBuffer table = upload_table(op, ctx, chunks, a.x);
    const Chunk* d_chunks = table.as<Chunk>();
    const float* const* d_xs = reinterpret_cast<const float* const*>(d_chunks + chunks.size());
    launch(op, ctx, static_cast<unsigned>(chunks.size()), kThreads, 0, sum_squares_chunk_kernel, d_chunks, d_xs,
           part.as<double>());
  }  // `table` is freed stream-ordered (or by cudaFree, which waits for the device): after the kernel
  launch(op, ctx, 1, kThreads, 0, sum_squares_final_kernel, part.as<double>(), static_cast<int64_t>(chunks.size()), a.s);
}

}  // namespace vw::cuda
