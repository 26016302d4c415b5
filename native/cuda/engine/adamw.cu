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
#include <string>
#include <vector>

#include "engine_common.cuh"

namespace vw::cuda {

namespace {

using namespace eng;

constexpr int64_t kChunk = int64_t{1} << 15;  // elements per chunk (the CPU's kElemGrain)

struct Chunk {
  int64_t tensor, begin, end;
};

std::vector<Chunk> make_chunks(const std::vector<int64_t>& sizes) {
  std::vector<Chunk> chunks;
  for (size_t t = 0; t < sizes.size(); ++t)
    for (int64_t b = 0; b < sizes[t]; b += kChunk) chunks.push_back({static_cast<int64_t>(t), b, std::min(sizes[t], b + kChunk)});
  return chunks;
}

std::string nth(const char* name, int64_t t) { return std::string(name) + "[" + std::to_string(t) + "]"; }

// The k sizes after `first` integer parameters; `extra` optional trailing integers are allowed (their count
// is returned in *n_extra).
std::vector<int64_t> tensor_sizes(const OpCall& c, size_t first, size_t extra, size_t* n_extra) {
  const int64_t k = size_arg(c, 0, "k");
  const size_t base = first + static_cast<size_t>(k);
  if (c.i.size() < base || c.i.size() > base + extra) {
    if (extra == 0)
      throw_type_error("[", c.op, "] expects ", base, " integer parameters for k = ", k, ", got ", c.i.size());
    throw_type_error("[", c.op, "] expects ", base, " integer parameters for k = ", k, " (", base + extra,
                     " with bf16Copies), got ", c.i.size());
  }
  if (n_extra) *n_extra = c.i.size() - base;
  std::vector<int64_t> n(static_cast<size_t>(k));
  for (int64_t t = 0; t < k; ++t) n[t] = size_arg(c, first + t, nth("n", t).c_str());
  return n;
}

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

struct AdamScalars {
  float b1, b2, c1, c2, decay, step_size, inv_bc2_sqrt, eps, gs;
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
  size_t n_extra = 0;
  const std::vector<int64_t> n = tensor_sizes(c, 2, 1, &n_extra);
  const int64_t k = static_cast<int64_t>(n.size());
  const bool copies = n_extra == 1 && flag_arg(c, 2 + static_cast<size_t>(k), "bf16Copies");
  const int64_t step = c.ip(1, "step");
  if (step < 1) throw_range_error("[", op, "] step must be >= 1 (the count of steps taken, this one included), got ", step);
  const double lr = finite_arg(c, 0, "lr"), beta1 = finite_arg(c, 1, "beta1"), beta2 = finite_arg(c, 2, "beta2");
  const double eps = finite_arg(c, 3, "eps"), wd = finite_arg(c, 4, "weightDecay"), gscale = finite_arg(c, 5, "gradScale");
  if (lr < 0) throw_range_error("[", op, "] lr must be >= 0, got ", lr);
  if (!(beta1 >= 0 && beta1 < 1)) throw_range_error("[", op, "] beta1 must be in [0, 1), got ", beta1);
  if (!(beta2 >= 0 && beta2 < 1)) throw_range_error("[", op, "] beta2 must be in [0, 1), got ", beta2);
  if (eps < 0) throw_range_error("[", op, "] eps must be >= 0, got ", eps);
  if (wd < 0) throw_range_error("[", op, "] weightDecay must be >= 0, got ", wd);
  expect_counts(c, static_cast<size_t>(k), static_cast<size_t>((copies ? 4 : 3) * k));
  std::vector<AdamRec> recs(static_cast<size_t>(k));
  for (int64_t t = 0; t < k; ++t) {
    AdamRec& r = recs[t];
    r.g = c.in_f32(t, n[t], nth("g", t).c_str());
    r.p = c.out_f32(t, n[t], nth("p", t).c_str());
    r.m = c.out_f32(k + t, n[t], nth("m", t).c_str());
    r.v = c.out_f32(2 * k + t, n[t], nth("v", t).c_str());
    r.copy = copies ? static_cast<__nv_bfloat16*>(c.out_any(3 * k + t, n[t], DType::BF16, nth("c", t).c_str())) : nullptr;
  }
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  AdamScalars s;
  s.b1 = static_cast<float>(beta1);
  s.b2 = static_cast<float>(beta2);
  s.c1 = static_cast<float>(1.0 - beta1);
  s.c2 = static_cast<float>(1.0 - beta2);
  s.decay = static_cast<float>(1.0 - lr * wd);
  s.step_size = static_cast<float>(lr / bc1);
  s.inv_bc2_sqrt = static_cast<float>(1.0 / std::sqrt(bc2));
  s.eps = static_cast<float>(eps);
  s.gs = static_cast<float>(gscale);

  Context& ctx = context(op);
  const std::vector<Chunk> chunks = make_chunks(n);
  if (chunks.empty()) return;
  check_grid(op, chunks.size());
  DeviceBuffer table = upload_table(op, ctx, chunks, recs);
  const Chunk* d_chunks = table.as<Chunk>();
  const AdamRec* d_recs = reinterpret_cast<const AdamRec*>(d_chunks + chunks.size());
  launch(op, ctx, static_cast<unsigned>(chunks.size()), kThreads, 0, adamw_kernel, d_chunks, d_recs, s);
}

void sum_squares_cuda(const OpCall& c) {
  const char* op = c.op;
  const std::vector<int64_t> n = tensor_sizes(c, 1, 0, nullptr);
  const int64_t k = static_cast<int64_t>(n.size());
  expect_counts(c, static_cast<size_t>(k), 1);
  std::vector<const float*> xs(n.size());
  for (int64_t t = 0; t < k; ++t) xs[t] = c.in_f32(t, n[t], nth("x", t).c_str());
  float* out = c.out_f32(0, 1, "s");
  Context& ctx = context(op);
  const std::vector<Chunk> chunks = make_chunks(n);
  check_grid(op, chunks.size());
  DeviceBuffer part(op, ctx, sizeof(double) * chunks.size(), nullptr);
  if (!chunks.empty()) {
    DeviceBuffer table = upload_table(op, ctx, chunks, xs);
    const Chunk* d_chunks = table.as<Chunk>();
    const float* const* d_xs = reinterpret_cast<const float* const*>(d_chunks + chunks.size());
    launch(op, ctx, static_cast<unsigned>(chunks.size()), kThreads, 0, sum_squares_chunk_kernel, d_chunks, d_xs,
           part.as<double>());
  }  // `table` is freed stream-ordered (or by cudaFree, which waits for the device): after the kernel
  launch(op, ctx, 1, kThreads, 0, sum_squares_final_kernel, part.as<double>(), static_cast<int64_t>(chunks.size()), out);
}

}  // namespace vw::cuda
