// Host-side definitions shared by the CUDA kernels (declared in common.cuh): error formatting, the
// per-process context, scratch allocation, gemm_rm, and the deferred non-finite checks.
#include <algorithm>
#include <climits>
#include <cstring>
#include <cstdlib>
#include <string>
#include <mutex>
#include <vector>

#include "common.cuh"
#include "ops_cuda.h"

namespace vw::cuda {

namespace {
const char* base_name(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash ? slash + 1 : path;
}
}  // namespace

void throw_cuda_error(const char* op, cudaError_t err, const char* file, int line) {
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  if (err == cudaErrorMemoryAllocation)
    throw_runtime_error("[", op, "] out of CUDA memory (", cudaGetErrorString(err), ") at ", base_name(file), ":", line);
  throw_runtime_error("[", op, "] ", cudaGetErrorString(err), " at ", base_name(file), ":", line);
}

void throw_cublas_error(const char* op, cublasStatus_t st, const char* file, int line) {
  throw_runtime_error("[", op, "] cuBLAS ", cublasGetStatusName(st), " (", cublasGetStatusString(st), ") at ",
                      base_name(file), ":", line);
}

// ------------------------------------------------------------------------------------------- context

Context& context(const char* op) {
  static std::mutex mu;
  static Context ctx;  // never destroyed: tearing down cuBLAS after the driver at process exit crashes
  std::lock_guard<std::mutex> lock(mu);
  if (ctx.blas) return ctx;

  Context c;
  CUDA_CHECK(op, cudaGetDevice(&c.device));
  CUDA_CHECK(op, cudaDeviceGetAttribute(&c.sm_count, cudaDevAttrMultiProcessorCount, c.device));
  int pools = 0;
  CUDA_CHECK(op, cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, c.device));
  c.async_alloc = pools != 0;
  if (c.async_alloc) {
    // Keep freed workspace in the pool between calls instead of unmapping it at every synchronise (a
    // 256 MiB remap per call is measurable); the addon trims the pool when a cudaMalloc runs out.
    cudaMemPool_t pool;
    CUDA_CHECK(op, cudaDeviceGetDefaultMemPool(&pool, c.device));
    uint64_t threshold = UINT64_MAX;
    CUDA_CHECK(op, cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  }
  // A blocking stream: it waits for NativeBuffer's cudaMemcpy/cudaMemset on the legacy default stream.
  CUDA_CHECK(op, cudaStreamCreate(&c.stream));
  CUDA_CHECK(op, cudaMalloc(&c.flag_slots, sizeof(FlagSlot) * ErrorFlags::kSlots));
  CUDA_CHECK(op, cudaMallocHost(&c.flag_host, sizeof(FlagSlot) * ErrorFlags::kSlots));
  cublasStatus_t st = cublasCreate(&c.blas);
  if (st == CUBLAS_STATUS_SUCCESS) st = cublasSetStream(c.blas, c.stream);
  // Default math mode: no TF32 for float32 GEMMs (results must match the CPU backend to ~1e-5).
  if (st == CUBLAS_STATUS_SUCCESS) st = cublasSetMathMode(c.blas, CUBLAS_DEFAULT_MATH);
  if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtCreate(&c.lt);
  if (st != CUBLAS_STATUS_SUCCESS) {
    if (c.lt) cublasLtDestroy(c.lt);
    if (c.blas) cublasDestroy(c.blas);
    cudaStreamDestroy(c.stream);
    throw_cublas_error(op, st, __FILE__, __LINE__);
  }
  // 32 MiB: what cuBLAS itself reserves per handle on Hopper.
  c.lt_workspace_bytes = size_t{32} << 20;
  CUDA_CHECK(op, cudaMalloc(&c.lt_workspace, c.lt_workspace_bytes));
  ctx = c;
  return ctx;
}

// ------------------------------------------------------------------------------------------- scratch

namespace {
// After an out-of-memory error: the kernels' workspace the default pool keeps cached (release threshold = max) and
// what op-program graphs' workspace left in the graph memory pool, handed back once the stream is done with them.
void trim_pools(const Context& ctx) {
  cudaGetLastError();
  cudaMemPool_t pool;
  if (cudaStreamSynchronize(ctx.stream) == cudaSuccess && cudaDeviceGetDefaultMemPool(&pool, ctx.device) == cudaSuccess)
    cudaMemPoolTrimTo(pool, 0);
  cudaDeviceGraphMemTrim(ctx.device);
  cudaGetLastError();
}
}  // namespace

DeviceBuffer::DeviceBuffer(const char* op, const Context& ctx, size_t bytes, int64_t* tally) : ctx_(&ctx) {
  if (bytes == 0) return;
  auto try_alloc = [&]() { return ctx.async_alloc ? cudaMallocAsync(&ptr_, bytes, ctx.stream) : cudaMalloc(&ptr_, bytes); };
  cudaError_t err = try_alloc();
  if (err == cudaErrorMemoryAllocation && ctx.async_alloc) {
    trim_pools(ctx);  // and retry once
    err = try_alloc();
  }
  if (err != cudaSuccess) {
    ptr_ = nullptr;
    cudaGetLastError();
    if (err == cudaErrorMemoryAllocation)
      throw_runtime_error("[", op, "] out of CUDA memory allocating ", bytes, " bytes of workspace");
    throw_cuda_error(op, err, __FILE__, __LINE__);
  }
  if (tally) *tally += static_cast<int64_t>(bytes);
}

DeviceBuffer::~DeviceBuffer() { release(); }

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    release();
    ctx_ = o.ctx_;
    ptr_ = o.ptr_;
    o.ptr_ = nullptr;
  }
  return *this;
}

void DeviceBuffer::release() noexcept {
  if (!ptr_) return;
  // Errors cannot be reported from a destructor; a failed free only leaks into the pool.
  if (ctx_->async_alloc)
    cudaFreeAsync(ptr_, ctx_->stream);
  else
    cudaFree(ptr_);
  ptr_ = nullptr;
}

// ------------------------------------------------------------------------------------------- GEMM

void gemm_rm(const char* op, cublasHandle_t handle, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
             float alpha, const void* A, cudaDataType_t type_a, int64_t lda, const void* B, cudaDataType_t type_b,
             int64_t ldb, float beta, void* C, cudaDataType_t type_c, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  const int64_t kMax = INT_MAX;
  if (M > kMax || N > kMax || K > kMax || lda > kMax || ldb > kMax || ldc > kMax)
    throw_range_error("[", op, "] GEMM sizes M=", M, " N=", N, " K=", K, " exceed cuBLAS's int range");
  CUBLAS_CHECK(op, cublasGemmEx(handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), &alpha, B, type_b,
                                static_cast<int>(ldb), A, type_a, static_cast<int>(lda), &beta, C, type_c,
                                static_cast<int>(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// ------------------------------------------------------------------------------------------- checks

namespace {

constexpr int kCheckThreads = 256;

// Lane (element within a 16-byte word) of the first non-finite value, or -1. Exponent bits all ones
// means Inf or NaN for both float32 and bfloat16.
__device__ __forceinline__ int first_nonfinite_lane(uint4 w, float*) {
  const uint32_t e = 0x7f800000u;
  if ((w.x & e) == e) return 0;
  if ((w.y & e) == e) return 1;
  if ((w.z & e) == e) return 2;
  if ((w.w & e) == e) return 3;
  return -1;
}
__device__ __forceinline__ int first_nonfinite_lane(uint4 w, __nv_bfloat16*) {
  const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    if ((words[k] & 0x7f80u) == 0x7f80u) return 2 * k;  // little endian: the low half is the earlier element
    if ((words[k] & 0x7f800000u) == 0x7f800000u) return 2 * k + 1;
  }
  return -1;
}
__device__ __forceinline__ bool nonfinite(float x) { return !isfinite(x); }
__device__ __forceinline__ bool nonfinite(__nv_bfloat16 x) { return !isfinite(__bfloat162float(x)); }

struct MinOp {
  __device__ __forceinline__ unsigned long long operator()(unsigned long long a, unsigned long long b) const {
    return a < b ? a : b;
  }
};

// First flat index of a non-finite value in x[0, n) -> atomicMin into *first_bad. The first n_vec * PER
// elements are read as 16-byte words (the caller sets n_vec = 0 for a misaligned pointer). Each thread
// visits increasing indices, so its first hit is its minimum and it can stop there.
template <typename T>
__global__ void __launch_bounds__(kCheckThreads)
    common_check_finite_kernel(const T* __restrict__ x, int64_t n, int64_t n_vec, unsigned long long* first_bad) {
  constexpr int kPer = 16 / sizeof(T);
  unsigned long long bad = ULLONG_MAX;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t i = tid; i < n_vec; i += stride) {
    const int lane = first_nonfinite_lane(reinterpret_cast<const uint4*>(x)[i], static_cast<T*>(nullptr));
    if (lane >= 0) {
      bad = static_cast<unsigned long long>(i * kPer + lane);
      break;
    }
  }
  if (bad == ULLONG_MAX) {
    for (int64_t i = n_vec * kPer + tid; i < n; i += stride) {
      if (nonfinite(x[i])) {
        bad = static_cast<unsigned long long>(i);
        break;
      }
    }
  }
  bad = block_allreduce(bad, MinOp{}, ULLONG_MAX);
  if (threadIdx.x == 0 && bad != ULLONG_MAX) atomicMin(first_bad, bad);
}

template <typename T>
void launch_check_finite(const char* op, const Context& ctx, const void* ptr, int64_t n, unsigned long long* slot) {
  if (n <= 0) return;
  constexpr int kPer = 16 / sizeof(T);
  const bool aligned = alignment(ptr) >= 16;
  const int64_t n_vec = aligned ? n / kPer : 0;
  const int64_t work = n_vec > 0 ? n_vec : n;
  // Enough blocks to saturate HBM, few enough that the per-block reduction is noise.
  const int64_t blocks = std::min<int64_t>((work + kCheckThreads - 1) / kCheckThreads, int64_t(ctx.sm_count) * 8);
  launch(op, ctx, static_cast<unsigned>(blocks), kCheckThreads, 0, common_check_finite_kernel<T>, static_cast<const T*>(ptr), n, n_vec, slot);
}

float element_as_float(const char* op, const Context& ctx, const void* ptr, int64_t i, DType t) {
  if (t == DType::BF16) {
    uint16_t bits = 0;
    CUDA_CHECK(op, cudaMemcpyAsync(&bits, elem_offset(ptr, i, t), 2, cudaMemcpyDeviceToHost, ctx.stream));
    wait_stream(op, ctx);
    const uint32_t f = static_cast<uint32_t>(bits) << 16;
    float v;
    std::memcpy(&v, &f, 4);
    return v;
  }
  float v = 0.f;
  CUDA_CHECK(op, cudaMemcpyAsync(&v, elem_offset(ptr, i, t), 4, cudaMemcpyDeviceToHost, ctx.stream));
  wait_stream(op, ctx);
  return v;
}

}  // namespace

DeviceBuffer start_checks(const char* op, const Context& ctx, DType t, const std::vector<NamedInput>& inputs,
                          int64_t* tally) {
  if (inputs.size() >= static_cast<size_t>(kLogitSlot)) throw_runtime_error("[", op, "] too many checked inputs");
  DeviceBuffer status(op, ctx, kStatusBytes, tally);
  CUDA_CHECK(op, cudaMemsetAsync(status.get(), 0xff, kStatusBytes, ctx.stream));
  unsigned long long* slots = status.as<unsigned long long>();
  int i = 0;
  for (const NamedInput& in : inputs) {
    if (t == DType::BF16)
      launch_check_finite<__nv_bfloat16>(op, ctx, in.ptr, in.n, slots + i);
    else
      launch_check_finite<float>(op, ctx, in.ptr, in.n, slots + i);
    ++i;
  }
  return status;
}

void raise_status(const char* op, const Context& ctx, const DeviceBuffer& status, DType t,
                  const std::vector<NamedInput>& inputs) {
  unsigned long long h[kStatusSlots];
  CUDA_CHECK(op, cudaMemcpyAsync(h, status.get(), kStatusBytes, cudaMemcpyDeviceToHost, ctx.stream));
  wait_stream(op, ctx);
  int i = 0;
  for (const NamedInput& in : inputs) {
    if (h[i] != ULLONG_MAX) {
      const int64_t at = static_cast<int64_t>(h[i]);
      const float v = element_as_float(op, ctx, in.ptr, at, t);
      throw_range_error("[", op, "] ", in.name, " contains a non-finite value (", v, ") at flat index ", at);
    }
    ++i;
  }
  if (h[kLogitSlot] != ULLONG_MAX) {
    const int64_t row = static_cast<int64_t>(h[kLogitSlot] >> 32);
    const uint32_t bits = static_cast<uint32_t>(h[kLogitSlot] & 0xffffffffu);
    float m;
    std::memcpy(&m, &bits, 4);
    throw_range_error("[", op, "] logits of row ", row, " are not finite (", m,
                      "): the inputs overflow float32 in the projection");
  }
}

namespace {
// The inputs a fused op checked (at most kLogitSlot), by value: one kernel fills their flag slots.
struct StatusInputs {
  const void* ptr[kLogitSlot];
  int n;
  bool bf16;
};

// slots[i] for input i (its first bad flat index and that element's float bits), then slots[n] for the logits
// (row, max bits); kNoFailure where the status word says none.
__global__ void status_to_flags_kernel(const unsigned long long* __restrict__ status, StatusInputs in, FlagSlot* slots) {
  if (threadIdx.x != 0) return;
  for (int i = 0; i < in.n; ++i) {
    const unsigned long long at = status[i];
    FlagSlot s{kNoFailure, 0};
    if (at != ULLONG_MAX) {
      const float v = in.bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(in.ptr[i])[at]) : static_cast<const float*>(in.ptr[i])[at];
      s.first = at;
      s.value = static_cast<int64_t>(__float_as_uint(v));
    }
    slots[i] = s;
  }
  const unsigned long long key = status[kLogitSlot];
  FlagSlot s{kNoFailure, 0};
  if (key != ULLONG_MAX) {
    s.first = key >> 32;
    s.value = static_cast<int64_t>(key & 0xffffffffull);
  }
  slots[in.n] = s;
}
}  // namespace

void defer_status(const char* op, const Context& ctx, const DeviceBuffer& status, DType t,
                  const std::vector<NamedInput>& inputs) {
  const int n = static_cast<int>(inputs.size());  // < kLogitSlot (start_checks)
  ErrorFlags& flags = error_flags();
  if (!flags.slots_free(n + 1)) drain_flags(op, ctx);
  StatusInputs in{};
  in.n = n;
  in.bf16 = t == DType::BF16;
  int first = -1;
  for (int i = 0; i < n; ++i) {
    in.ptr[i] = inputs[i].ptr;
    const int k = flags.claim_slot(ValueCheck::non_finite(op, inputs[i].name));
    if (first < 0) first = k;
  }
  const int k = flags.claim_slot(ValueCheck::logits(op));
  if (first < 0) first = k;
  launch(op, ctx, 1, 32, 0, status_to_flags_kernel, status.as<unsigned long long>(), in, ctx.flag_slots + first);
}

namespace {
__global__ void doubles_to_floats_kernel(const double* __restrict__ src, float* __restrict__ dst, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = static_cast<float>(src[i]);
}
}  // namespace

double copy_row_losses(const char* op, const Context& ctx, const double* d_loss, float* row_loss, int64_t n) {
  // A host result: the op waits here, and raises what its deferred checks (and earlier ones) found, as any
  // synchronisation does (drain_flags), so a non-finite input is never a silent NaN loss.
  if (n <= 0) {
    drain_flags(op, ctx);
    return 0.0;
  }
  // the float32 rows stay on the device; only the doubles come to the host, for the total
  const int64_t blocks = std::min<int64_t>((n + 255) / 256, int64_t(ctx.sm_count) * 8);
  launch(op, ctx, static_cast<unsigned>(blocks), 256, 0, doubles_to_floats_kernel, d_loss, row_loss, n);
  std::vector<double> loss(static_cast<size_t>(n));
  CUDA_CHECK(op, cudaMemcpyAsync(loss.data(), d_loss, sizeof(double) * n, cudaMemcpyDeviceToHost, ctx.stream));
  drain_flags(op, ctx);
  double total = 0;
  for (double v : loss) total += v;
  return total;
}

void wait_stream(const char* op, const Context& ctx) {
  count_host_sync();
  CUDA_CHECK(op, cudaStreamSynchronize(ctx.stream));
}

namespace {
__global__ void sum_losses_kernel(const double* __restrict__ x, int64_t n, double scale, const double* __restrict__ d_scale,
                                  float* __restrict__ out) {
  // one block, a fixed order: deterministic
  __shared__ double s[256];
  double v = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) v += x[i];
  s[threadIdx.x] = v;
  __syncthreads();
  for (int k = blockDim.x / 2; k > 0; k >>= 1) {
    if (static_cast<int>(threadIdx.x) < k) s[threadIdx.x] += s[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = static_cast<float>(s[0] * (d_scale ? *d_scale : scale));
}
}  // namespace

void device_row_losses(const char* op, const Context& ctx, const double* d_loss, float* row_loss, int64_t n, double scale,
                       float* loss, const double* d_scale) {
  if (n > 0) {
    const int64_t blocks = std::min<int64_t>((n + 255) / 256, int64_t(ctx.sm_count) * 8);
    launch(op, ctx, static_cast<unsigned>(blocks), 256, 0, doubles_to_floats_kernel, d_loss, row_loss, n);
  }
  launch(op, ctx, 1, 256, 0, sum_losses_kernel, d_loss, n, scale, d_scale, loss);
}

OpStats finish_losses(const char* op, const Context& ctx, FusedCall& call, const double* d_loss, float* row_loss, int64_t n,
                      Reduction reduction, int64_t rows, float* loss) {
  OpStats st = call.finish();
  if (loss) {
    device_row_losses(op, ctx, d_loss, row_loss, n, loss_scale(reduction, rows), loss);
    st.loss = std::nan("");
  } else {
    // with no rows too: the wait raises what the call's deferred checks found (a NaN weight), as the CPU does in the op
    const double total = copy_row_losses(op, ctx, d_loss, row_loss, n);
    st.loss = n > 0 ? reduce_loss(total, reduction, rows) : 0.0;
  }
  return st;
}

// ------------------------------------------------------------------------------------------- error flags

namespace {

struct MinU64 {
  __device__ __forceinline__ unsigned long long operator()(unsigned long long a, unsigned long long b) const {
    return a < b ? a : b;
  }
};

// atomicMin of the first index i with x[i] failing `c` into slot->first (each thread visits increasing
// indices, so its first hit is its minimum).
__global__ void __launch_bounds__(256)
    flag_first_failure_kernel(const int32_t* __restrict__ x, int64_t n, ValueCheck c, FlagSlot* slot) {
  unsigned long long bad = ULLONG_MAX;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (!c.passes(x[i])) {
      bad = static_cast<unsigned long long>(i);
      break;
    }
  }
  bad = block_allreduce(bad, MinU64{}, ULLONG_MAX);
  if (threadIdx.x == 0 && bad != ULLONG_MAX) atomicMin(reinterpret_cast<unsigned long long*>(&slot->first), bad);
}

// The failing value, read while x is still what the check saw (stream order).
__global__ void flag_value_kernel(const int32_t* __restrict__ x, FlagSlot* slot) {
  if (slot->first != kNoFailure) slot->value = x[slot->first];
}

}  // namespace

void check_values(const char* op, const Context& ctx, const ValueCheck& c, const int32_t* x, int64_t n) {
  if (n <= 0) return;
  ErrorFlags& flags = error_flags();
  if (flags.slots_full()) drain_flags(op, ctx);
  FlagSlot* slot = ctx.flag_slots + flags.claim_slot(c);
  CUDA_CHECK(op, cudaMemsetAsync(slot, 0xff, sizeof(FlagSlot), ctx.stream));
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>((n + 255) / 256, int64_t{ctx.sm_count} * 32));
  launch(op, ctx, static_cast<unsigned>(blocks), 256, 0, flag_first_failure_kernel, x, n, c, slot);
  launch(op, ctx, 1, 1, 0, flag_value_kernel, x, slot);
}

void fetch_flags(const Context& ctx) {
  const int used = error_flags().slots_used();
  if (used > 0)
    CUDA_CHECK("error flags", cudaMemcpyAsync(ctx.flag_host, ctx.flag_slots, sizeof(FlagSlot) * used,
                                              cudaMemcpyDeviceToHost, ctx.stream));
}

void drain_flags(const char* op, const Context& ctx) {
  fetch_flags(ctx);
  wait_stream(op, ctx);
  if (error_flags().pending()) error_flags().raise_pending(ctx.flag_host);
}

// Nothing is pending before any op has run, so these never create the context.
void flags_before_read() {
  if (error_flags().slots_used() > 0) fetch_flags(context("NativeBuffer.read"));
}
void flags_after_read() {
  if (error_flags().pending()) error_flags().raise_pending(context("NativeBuffer.read").flag_host);
}
void synchronize() {
  const char* op = "synchronize";
  if (error_flags().pending()) {
    drain_flags(op, context(op));
  } else {
    CUDA_CHECK(op, cudaDeviceSynchronize());
  }
}

// ------------------------------------------------------------------------------------------- staged uploads
// A ring of pinned chunks: a chunk is refilled only after the copy from it has finished (its event), so the host
// waits only when uploads lap the ring faster than the device drains it (counted as a host synchronisation). An
// upload larger than a chunk goes in pieces (a batch's pixels: 16 x 3 x 224 x 224 float32 is 9.6 MB), up to
// kStageMax; larger ones (weights) take the synchronous copy, which on the legacy stream also waits for the ops.
namespace {
constexpr size_t kStageBytes = size_t{8} << 20;
constexpr int kStageChunks = 8;
constexpr size_t kStageMax = size_t{64} << 20;
struct StageChunk {
  void* host = nullptr;
  cudaEvent_t done = nullptr;
  bool in_flight = false;
};
void stage_piece(void* dst, const void* src, size_t bytes);
}  // namespace

bool upload_staged(void* dst, const void* src, size_t bytes) {
  if (bytes == 0 || bytes > kStageMax) return false;
  for (size_t off = 0; off < bytes; off += kStageBytes)
    stage_piece(static_cast<char*>(dst) + off, static_cast<const char*>(src) + off, std::min(kStageBytes, bytes - off));
  return true;
}

namespace {
void stage_piece(void* dst, const void* src, size_t bytes) {
  const char* op = "NativeBuffer.write";
  static StageChunk ring[kStageChunks];  // never freed: pinned memory lives as long as the process
  static int next = 0;
  Context& ctx = context(op);
  StageChunk& c = ring[next];
  next = (next + 1) % kStageChunks;
  if (!c.host) {
    CUDA_CHECK(op, cudaMallocHost(&c.host, kStageBytes));
    CUDA_CHECK(op, cudaEventCreateWithFlags(&c.done, cudaEventDisableTiming));
  }
  if (c.in_flight && cudaEventQuery(c.done) == cudaErrorNotReady) {
    count_host_sync();
    CUDA_CHECK(op, cudaEventSynchronize(c.done));
  }
  cudaGetLastError();  // cudaEventQuery's cudaErrorNotReady is not an error
  std::memcpy(c.host, src, bytes);
  CUDA_CHECK(op, cudaMemcpyAsync(dst, c.host, bytes, cudaMemcpyHostToDevice, ctx.stream));
  CUDA_CHECK(op, cudaEventRecord(c.done, ctx.stream));
  c.in_flight = true;
}
}  // namespace

// ------------------------------------------------------------------------------------------- graphs of op programs
// An op program (native/napi/program.cc) captures one replay: its op calls enqueue their kernels, cuBLAS calls,
// stream-ordered workspace (cudaMallocAsync: graph memory nodes) and error-flag kernels into a graph instead of
// running them, and its uploads and fills are copies from the program's pinned memory and memsets on the ops'
// stream. Relaxed mode: an op's host-side calls that are no stream work (cudaFuncSetAttribute) are allowed; one
// that waits (a read to the host) invalidates the capture, and the program then replays call by call.
namespace {
struct ProgramGraph {
  cudaGraphExec_t exec = nullptr;
  cudaEvent_t done = nullptr;
  size_t nodes = 0;
  bool launched = false;
};
constexpr const char* kGraphOp = "op program graph";

std::string cuda_why(const char* what, cudaError_t err) {
  cudaGetLastError();  // a failed capture leaves no sticky error; clear what it set
  return str_cat(what, ": ", cudaGetErrorString(err));
}
}  // namespace

// (Called in async mode only: program.cc replays call by call in sync mode, where every op waits for its work.)
bool graph_begin(std::string* why) {
  Context& ctx = context(kGraphOp);
  if (!ctx.async_alloc) {
    // workspace from cudaMalloc / cudaFree: freed during the capture, a launch would use memory no longer its own
    *why = "the device has no stream-ordered memory pools (cudaMallocAsync), which captured workspace needs";
    return false;
  }
  const cudaError_t err = cudaStreamBeginCapture(ctx.stream, cudaStreamCaptureModeRelaxed);
  if (err != cudaSuccess) {
    *why = cuda_why("cudaStreamBeginCapture", err);
    return false;
  }
  return true;
}

void* graph_end(std::string* why) {
  Context& ctx = context(kGraphOp);
  cudaGraph_t g = nullptr;
  cudaError_t err = cudaStreamEndCapture(ctx.stream, &g);
  if (err != cudaSuccess || !g) {
    if (g) cudaGraphDestroy(g);
    *why = cuda_why("cudaStreamEndCapture", err != cudaSuccess ? err : cudaErrorStreamCaptureInvalidated);
    return nullptr;
  }
  auto* pg = new ProgramGraph();
  cudaGraphGetNodes(g, nullptr, &pg->nodes);
  err = cudaGraphInstantiate(&pg->exec, g, 0);
  cudaGraphDestroy(g);
  if (err == cudaSuccess) err = cudaEventCreateWithFlags(&pg->done, cudaEventDisableTiming);
  if (err != cudaSuccess) {
    *why = cuda_why("cudaGraphInstantiate", err);
    graph_destroy(pg);
    return nullptr;
  }
  return pg;
}

void graph_launch(void* graph) {
  auto* pg = static_cast<ProgramGraph*>(graph);
  Context& ctx = context(kGraphOp);
  cudaError_t err = cudaGraphLaunch(pg->exec, ctx.stream);
  if (err == cudaErrorMemoryAllocation) {
    trim_pools(ctx);  // the graph's workspace comes from the graph memory pool; retry once
    err = cudaGraphLaunch(pg->exec, ctx.stream);
  }
  CUDA_CHECK(kGraphOp, err);
  CUDA_CHECK(kGraphOp, cudaEventRecord(pg->done, ctx.stream));
  pg->launched = true;
}

void graph_wait(void* graph) {
  auto* pg = static_cast<ProgramGraph*>(graph);
  if (!pg->launched) return;
  if (cudaEventQuery(pg->done) == cudaErrorNotReady) {
    count_host_sync();
    CUDA_CHECK(kGraphOp, cudaEventSynchronize(pg->done));
  }
  cudaGetLastError();  // cudaEventQuery's cudaErrorNotReady is not an error
}

void graph_destroy(void* graph) {
  auto* pg = static_cast<ProgramGraph*>(graph);
  if (!pg) return;
  if (pg->exec) cudaGraphExecDestroy(pg->exec);
  if (pg->done) cudaEventDestroy(pg->done);
  cudaGetLastError();  // at exit the driver may be gone: moot
  delete pg;
}

size_t graph_nodes(void* graph) { return static_cast<ProgramGraph*>(graph)->nodes; }

void graph_upload(void* dst, const void* pinned_src, size_t n) {
  if (n == 0) return;
  CUDA_CHECK(kGraphOp, cudaMemcpyAsync(dst, pinned_src, n, cudaMemcpyHostToDevice, context(kGraphOp).stream));
}

void graph_zero(void* dst, size_t n) {
  if (n == 0) return;
  CUDA_CHECK(kGraphOp, cudaMemsetAsync(dst, 0, n, context(kGraphOp).stream));
}

void* pinned_alloc(size_t n) {
  void* p = nullptr;
  CUDA_CHECK(kGraphOp, cudaMallocHost(&p, n > 0 ? n : 1));
  return p;
}

void pinned_free(void* p) {
  if (p && cudaFreeHost(p) != cudaSuccess) cudaGetLastError();
}

// Every op ends here (run_op). Async mode (CUDA's default; setAsync(true)): no wait; what is read waits, and
// raises the failed checks then. Sync mode (setAsync(false), VWLMM_CUDA_ASYNC=0 at load): the host waits for the
// stream after each op and raises the op's failed checks (an H200 ran the GPU test files both ways, 2026-12-04).
void finish_op(const char* op) {
  if (error_flags().async()) return;
  drain_flags(op, context(op));
}

}  // namespace vw::cuda

namespace vw::cuda {

void gemm_cuda(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const void* A, const void* B, float* C,
               DType ab_type) {
  const char* op = "sgemm";
  check_dtype(op, ab_type);
  if (M < 0 || N < 0 || K < 0) throw_range_error("[", op, "] negative size");
  Context& ctx = context(op);
  if (M > 0 && N > 0 && K == 0) {  // cuBLAS with k = 0 and beta = 0 is not guaranteed to write C
    CUDA_CHECK(op, cudaMemsetAsync(C, 0, sizeof(float) * M * N, ctx.stream));
  } else {
    const cudaDataType_t t = cuda_type(ab_type);
    gemm_rm(op, ctx.blas, trans_a, trans_b, M, N, K, 1.f, A, t, trans_a ? M : K, B, t, trans_b ? K : N, 0.f, C,
            CUDA_R_32F, N);
  }
  wait_stream(op, ctx);
}

}  // namespace vw::cuda
