// Multi-tensor AdamW step and sum of squares on CUDA (semantics: the CPU backend's adamw.cpp). float32 tensors.
// Both cut the k tensors into fixed chunks of kChunk elements; a table of (tensor, begin, end) chunks and the
// tensors' pointers is uploaded once per call and one block handles one chunk, so a single launch covers
// every tensor whatever their number and sizes. The AdamW step reads and writes a tensor's elements four at a time
// (16-byte words) when all its pointers allow it: scalar accesses kept one element's four loads in flight per thread,
// and the issue's model (~390M parameters, ~11 GB of traffic) measured 6.0 ms a step, under half the H200's bandwidth.
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
  int vec;              // g, p, m, v 16-byte aligned and copy 8-byte aligned: 4 elements per access
};

// One element's update: the CPU's float expressions (native/cpu/adamw.cpp), in place on m, v and p.
__device__ __forceinline__ void adam_update(float g, float& m, float& v, float& p, const AdamScalars& s) {
  const float gi = g * s.gs;
  m = s.b1 * m + s.c1 * gi;
  v = s.b2 * v + s.c2 * gi * gi;
  p = p * s.decay - s.step_size * m / (sqrtf(v) * s.inv_bc2_sqrt + s.eps);
}

__global__ void __launch_bounds__(kThreads)
    adamw_kernel(const Chunk* __restrict__ chunks, const AdamRec* __restrict__ recs, AdamScalars s) {
  const Chunk ch = chunks[blockIdx.x];
  const AdamRec r = recs[ch.tensor];
  int64_t tail = ch.begin;  // chunks begin at multiples of kChunk, so a vec tensor's words are aligned
  if (r.vec) {
    const int64_t words = (ch.end - ch.begin) / 4;
    for (int64_t k = threadIdx.x; k < words; k += blockDim.x) {
      const int64_t i = ch.begin + 4 * k;
      const float4 g = *reinterpret_cast<const float4*>(r.g + i);
      float4 m = *reinterpret_cast<const float4*>(r.m + i), v = *reinterpret_cast<const float4*>(r.v + i),
             p = *reinterpret_cast<const float4*>(r.p + i);
      adam_update(g.x, m.x, v.x, p.x, s);
      adam_update(g.y, m.y, v.y, p.y, s);
      adam_update(g.z, m.z, v.z, p.z, s);
      adam_update(g.w, m.w, v.w, p.w, s);
      *reinterpret_cast<float4*>(r.m + i) = m;
      *reinterpret_cast<float4*>(r.v + i) = v;
      *reinterpret_cast<float4*>(r.p + i) = p;
      if (r.copy) {
        const __nv_bfloat162 lo = __floats2bfloat162_rn(p.x, p.y), hi = __floats2bfloat162_rn(p.z, p.w);
        uint2 w;
        memcpy(&w.x, &lo, 4);
        memcpy(&w.y, &hi, 4);
        *reinterpret_cast<uint2*>(r.copy + i) = w;
      }
    }
    tail = ch.begin + 4 * words;
  }
  for (int64_t i = tail + threadIdx.x; i < ch.end; i += blockDim.x) {
    float m = r.m[i], v = r.v[i], p = r.p[i];
    adam_update(r.g[i], m, v, p, s);
    r.m[i] = m;
    r.v[i] = v;
    r.p[i] = p;
    if (r.copy) r.copy[i] = __float2bfloat16_rn(p);
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
  static_assert(kChunk % 4 == 0, "a chunk's first word must stay aligned");
  for (size_t t = 0; t < a.n.size(); ++t) {
    AdamRec& r = recs[t];
    r = {a.g[t], a.p[t], a.m[t], a.v[t], static_cast<__nv_bfloat16*>(a.copy[t]), 0};
    r.vec = alignment(r.g) >= 16 && alignment(r.p) >= 16 && alignment(r.m) >= 16 && alignment(r.v) >= 16 && alignment(r.copy) >= 8;
  }
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
