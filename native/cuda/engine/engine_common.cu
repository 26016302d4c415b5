// Host side of the engine ops' shared helpers (engine_common.cuh): the device range check of int32 data.
#include "engine_common.cuh"

namespace vw::cuda::eng {

namespace {

struct MinU64 {
  __device__ __forceinline__ unsigned long long operator()(unsigned long long a, unsigned long long b) const {
    return a < b ? a : b;
  }
};

// atomicMin of the first index i with x[i] outside [lo, hi) into *first (each thread visits increasing
// indices, so its first hit is its minimum).
__global__ void __launch_bounds__(kThreads)
    first_outside_kernel(const int32_t* __restrict__ x, int64_t n, int64_t lo, int64_t hi, unsigned long long* first) {
  unsigned long long bad = ULLONG_MAX;
  for (int64_t i = global_tid(); i < n; i += global_stride()) {
    const int64_t v = x[i];
    if (v < lo || v >= hi) {
      bad = static_cast<unsigned long long>(i);
      break;
    }
  }
  bad = block_allreduce(bad, MinU64{}, ULLONG_MAX);
  if (threadIdx.x == 0 && bad != ULLONG_MAX) atomicMin(first, bad);
}

}  // namespace

BadValue first_outside(const char* op, const Context& ctx, const int32_t* x, int64_t n, int64_t lo, int64_t hi) {
  if (n <= 0) return {-1, 0};
  DeviceBuffer status(op, ctx, sizeof(unsigned long long), nullptr);
  CUDA_CHECK(op, cudaMemsetAsync(status.get(), 0xff, sizeof(unsigned long long), ctx.stream));
  launch(op, ctx, grid_for(ctx, n), kThreads, 0, first_outside_kernel, x, n, lo, hi, status.as<unsigned long long>());
  // The result is read on the host: these waits are part of the op, not its end-of-op synchronisation.
  unsigned long long first = 0;
  CUDA_CHECK(op, cudaMemcpyAsync(&first, status.get(), sizeof first, cudaMemcpyDeviceToHost, ctx.stream));
  wait_stream(op, ctx);
  if (first == ULLONG_MAX) return {-1, 0};
  BadValue b{static_cast<int64_t>(first), 0};
  CUDA_CHECK(op, cudaMemcpyAsync(&b.value, x + b.index, sizeof(int32_t), cudaMemcpyDeviceToHost, ctx.stream));
  wait_stream(op, ctx);
  return b;
}

void check_row_ids(const char* op, const Context& ctx, const int32_t* idx, int64_t n, int64_t S, const char* name) {
  const BadValue b = first_outside(op, ctx, idx, n, 0, S);
  if (b.index >= 0) throw_range_error("[", op, "] ", name, "[", b.index, "] = ", b.value, " is outside [0, ", S, ")");
}

}  // namespace vw::cuda::eng
