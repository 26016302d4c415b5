// Shared pieces of the CUDA kernels (native/cuda/*.cu): error macros that throw vw::Error, the per-process
// stream + cuBLAS handle, RAII device scratch, the float-dtype dispatch, the row-major GEMM helpers, the
// deferred input/logit checks and the frame of a fused-op call (FusedCall, ChunkBlocks), and device helpers
// (bf16 conversion, warp/block reductions, online-softmax states, vector row access, row-pass launches).
//
// Conventions shared by every op (see native/core/fused_args.h for the math):
//   * all work runs on one blocking stream (context().stream), so it is ordered after the cudaMemcpy /
//     cudaMemset of NativeBuffer (legacy default stream); run_op decides when the host waits for it;
//   * data-dependent argument checks (ids, key masks) are device kernels that set error flags
//     (check_values, native/core/error_flags.h), raised at the next synchronisation;
//   * logits are float32 [chunk, V] blocks; a row pass is one thread block per row;
//   * errors found on the device (non-finite inputs, non-finite logit rows) are recorded in a small status
//     array and raised once at the end (raise_status), in the CPU backend's order, so the normal path has
//     no host round trip per chunk.
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "../core/dtype.h"
#include "../core/host_sync.h"
#include "../core/error.h"
#include "../core/error_flags.h"
#include "../core/fused_args.h"

namespace vw::cuda {

// ------------------------------------------------------------------------------------------- errors

// Throw vw::Error (runtime) "[op] <message> at file:line"; never exit or abort.
[[noreturn]] void throw_cuda_error(const char* op, cudaError_t err, const char* file, int line);
[[noreturn]] void throw_cublas_error(const char* op, cublasStatus_t st, const char* file, int line);

#define CUDA_CHECK(op, expr)                                                                   \
  do {                                                                                         \
    const cudaError_t vw_cuda_err_ = (expr);                                                   \
    if (vw_cuda_err_ != cudaSuccess) ::vw::cuda::throw_cuda_error((op), vw_cuda_err_, __FILE__, __LINE__); \
  } while (0)

#define CUBLAS_CHECK(op, expr)                                                                 \
  do {                                                                                         \
    const cublasStatus_t vw_cublas_st_ = (expr);                                               \
    if (vw_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                                \
      ::vw::cuda::throw_cublas_error((op), vw_cublas_st_, __FILE__, __LINE__);                 \
  } while (0)

// Catches launch-configuration errors right after a <<<>>> launch.
#define CUDA_CHECK_LAUNCH(op) CUDA_CHECK(op, cudaGetLastError())

// ------------------------------------------------------------------------------------------- context

struct Context {
  int device = -1;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  // cuBLASLt, for GEMMs with an epilogue (engine/matmul.cu), and its workspace, allocated with the context so that a
  // GEMM's algorithm (picked for this size) is the same eagerly and in a CUDA graph capture, which cannot allocate it.
  cublasLtHandle_t lt = nullptr;
  void* lt_workspace = nullptr;
  size_t lt_workspace_bytes = 0;
  int sm_count = 1;
  bool async_alloc = false;  // stream-ordered allocator (cudaMallocAsync) supported
  // The error flags' device slots (native/core/error_flags.h) and their pinned host copy, ErrorFlags::kSlots each.
  FlagSlot* flag_slots = nullptr;
  FlagSlot* flag_host = nullptr;
};

// The per-process context, created on first use on the then-current device (the module init never
// touches the GPU). Throws vw::Error naming `op` when there is no usable device.
Context& context(const char* op);

// ------------------------------------------------------------------------------------------- scratch

// RAII device scratch from the stream-ordered pool; adds its size to *tally (OpStats.workspace_bytes).
// Freed (stream-ordered) on every exit path, including exceptions.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const char* op, const Context& ctx, size_t bytes, int64_t* tally);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ctx_(o.ctx_), ptr_(o.ptr_) { o.ptr_ = nullptr; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;

  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }
  void* get() const { return ptr_; }

 private:
  void release() noexcept;
  const Context* ctx_ = nullptr;
  void* ptr_ = nullptr;
};

// ------------------------------------------------------------------------------------------- args

// The argument readers (native/core/fused_args.h) have checked rows >= 0, d >= 1, V >= 1 and the float
// type; the CUDA backend adds its int32 limit: row passes index a row with int and cuBLAS takes int sizes /
// leading dimensions.
inline void check_dims(const char* op, int64_t rows, int64_t d, int64_t V) {
  const int64_t kMax = std::numeric_limits<int32_t>::max();
  if (rows > kMax || d > kMax || V > kMax)
    throw_range_error("[", op, "] sizes rows=", rows, " d=", d, " V=", V, " exceed the CUDA backend's limit of ", kMax);
}

inline void check_dtype(const char* op, DType t) {
  if (t != DType::F32 && t != DType::BF16)
    throw_type_error("[", op, "] the CUDA backend computes in float32 or bfloat16, got ", dtype_name(t));
}

inline cudaDataType_t cuda_type(DType t) { return t == DType::BF16 ? CUDA_R_16BF : CUDA_R_32F; }

template <typename T>
struct Tag {
  using type = T;
};

// f(Tag<float>{}) or f(Tag<__nv_bfloat16>{}): the C++ type of a float DType.
template <typename F>
void dispatch_float(DType t, F&& f) {
  if (t == DType::BF16)
    f(Tag<__nv_bfloat16>{});
  else
    f(Tag<float>{});
}

// Largest power of two dividing p's address, at most 256 (cudaMalloc's alignment, and cuBLASLt's default assumption):
// whether wide loads and stores may touch it.
inline int alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  int k = 1;
  while (k < 256 && a % (2 * k) == 0) k *= 2;
  return k;
}

// p + elems elements of type t (pointer arithmetic on the untyped tensors of the argument structs).
inline const void* elem_offset(const void* p, int64_t elems, DType t) {
  return static_cast<const char*>(p) + elems * static_cast<int64_t>(dtype_size(t));
}
inline void* elem_offset(void* p, int64_t elems, DType t) {
  return static_cast<char*>(p) + elems * static_cast<int64_t>(dtype_size(t));
}

// ------------------------------------------------------------------------------------------- GEMM

// Row-major C[M,N] = alpha op(A) op(B) + beta C with op(A) [M,K], op(B) [K,N] and leading dimensions in
// elements of the row-major layout. cuBLAS is column-major: a row-major X is the column-major X^T, so this
// computes C^T = op(B)^T op(A)^T, i.e. swaps the operands (and M/N) and keeps the transpose flags.
// Always CUBLAS_COMPUTE_32F: float32 inputs stay true fp32 (no TF32), bf16 inputs use tensor cores with
// fp32 accumulation. With beta = 0, C is write-only (may hold garbage).
void gemm_rm(const char* op, cublasHandle_t handle, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
             float alpha, const void* A, cudaDataType_t type_a, int64_t lda, const void* B, cudaDataType_t type_b,
             int64_t ldb, float beta, void* C, cudaDataType_t type_c, int64_t ldc);

// The backward of a chunk's logits z = x_c W^T (x_c [nc, d], W [V, d], both of type tin) from dz [nc, V]
// (type tg): dx_c = dz W (type tin), dW = dz^T x_c + beta dW (float32); a null dx_c or dW is not wanted, and
// its GEMM is skipped.
inline void logits_backward(const char* op, cublasHandle_t handle, int64_t nc, int64_t V, int64_t d, const void* dz,
                            cudaDataType_t tg, const void* w, const void* x_c, cudaDataType_t tin, void* dx_c, float* dw,
                            float beta) {
  if (dx_c) gemm_rm(op, handle, false, false, nc, d, V, 1.f, dz, tg, V, w, tin, d, 0.f, dx_c, tin, d);
  if (dw) gemm_rm(op, handle, true, false, V, d, nc, 1.f, dz, tg, V, x_c, tin, d, beta, dw, CUDA_R_32F, d);
}

// ------------------------------------------------------------------------------------------- checks

// Status words of one op call (device, unsigned long long, all bits set = nothing found):
//   slot i < kLogitSlot: first flat index of a non-finite value in input i;
//   kLogitSlot: (global row << 32 | float bits of that row's max) of the first row whose logits are not
//   finite (atomicMin keeps the lowest row).
constexpr int kStatusSlots = 8;
constexpr int kLogitSlot = kStatusSlots - 1;
constexpr size_t kStatusBytes = kStatusSlots * sizeof(unsigned long long);

struct NamedInput {
  const char* name;  // the JS-facing argument name used in the message ("h", "wVm", ...)
  const void* ptr;
  int64_t n;
};

// Allocates the status words, clears them, and queues a non-finite scan of each input (slot = position).
DeviceBuffer start_checks(const char* op, const Context& ctx, DType t, const std::vector<NamedInput>& inputs,
                          int64_t* tally);

// Synchronises the stream, reads the status words and throws the first error in the CPU backend's order:
// inputs in the given order, then the first non-finite logit row.
void raise_status(const char* op, const Context& ctx, const DeviceBuffer& status, DType t,
                  const std::vector<NamedInput>& inputs);

// The same findings as error flags (native/core/error_flags.h: NonFinite per input, then Logits), with no host wait:
// a kernel copies the status words, and each input's bad element, into claimed slots, raised at the next
// synchronisation in the same order (async mode; a fused op then never waits, and a CUDA graph can hold it).
void defer_status(const char* op, const Context& ctx, const DeviceBuffer& status, DType t,
                  const std::vector<NamedInput>& inputs);

// The frame of one fused-op call: the non-finite checks of its inputs, queued at once (start_checks), and
// the tally of the scratch it allocates (scratch(), ChunkBlocks); finish() raises what the checks found,
// in the CPU backend's order (raise_status; in async mode deferred to the next synchronisation: defer_status), and
// returns the stats with the workspace used.
class FusedCall {
 public:
  FusedCall(const char* op, const Context& ctx, DType t, std::vector<NamedInput> inputs, int64_t rows)
      : op_(op), ctx_(ctx), t_(t), inputs_(std::move(inputs)), status_(start_checks(op, ctx, t, inputs_, &ws_)) {
    stats.rows = rows;
  }
  DeviceBuffer scratch(size_t bytes) { return DeviceBuffer(op_, ctx_, bytes, &ws_); }
  unsigned long long* status() const { return status_.as<unsigned long long>(); }
  int64_t workspace_bytes() const { return ws_; }
  OpStats finish() {
    if (error_flags().async())
      defer_status(op_, ctx_, status_, t_, inputs_);
    else
      raise_status(op_, ctx_, status_, t_, inputs_);
    stats.workspace_bytes = ws_;
    return stats;
  }

  OpStats stats;  // rows set here; chunk_rows (ChunkBlocks) and loss are the op's

 private:
  const char* op_;
  const Context& ctx_;
  DType t_;
  std::vector<NamedInput> inputs_;
  int64_t ws_ = 0;
  DeviceBuffer status_;
};

// The [rows, V] logit blocks a fused op streams its row chunks through: `f32` float32 blocks, then `bf16`
// bfloat16 ones (the blocks a row pass writes for the bf16 GEMMs, since cuBLAS wants A and B of one type).
// Sized by plan_chunks (native/core/fused_args.h) from the call's chunkRows and the budget left after the scratch
// already taken: float32 blocks of `rows` rows; bfloat16 blocks of `group_rows` rows when `grouped` (the op runs
// several row passes into them before its backward GEMMs), else of `rows`. Allocated through `call`, which records
// both in its stats.
class ChunkBlocks {
 public:
  ChunkBlocks(FusedCall& call, int64_t requested, int64_t n, int64_t V, int f32, int bf16, int64_t budget, bool grouped)
      : ChunkBlocks(call, V, f32, bf16, plan_chunks(requested, n, V, f32, bf16, budget - call.workspace_bytes(), grouped)) {}
  float* f32(int k) const { return f32_[k].as<float>(); }
  void* bf16(int k) const { return k < static_cast<int>(bf16_.size()) ? bf16_[k].get() : nullptr; }  // null if not asked for

  const int64_t rows;        // per logit chunk
  const int64_t group_rows;  // per gradient group (a multiple of nothing: its last chunk may be shorter)

  // The n rows in order: chunk(c0, nc, at) for each logit chunk (at: its first row within its group, where its
  // gradient rows go), then group(g0, ng) once the group's chunks are done.
  template <typename Chunk, typename Group>
  void each(int64_t n, Chunk&& chunk, Group&& group) const {
    for (int64_t g0 = 0; g0 < n; g0 += group_rows) {
      const int64_t ng = std::min(group_rows, n - g0);
      for (int64_t c0 = g0; c0 < g0 + ng; c0 += rows) chunk(c0, std::min(rows, g0 + ng - c0), c0 - g0);
      group(g0, ng);
    }
  }

 private:
  ChunkBlocks(FusedCall& call, int64_t V, int f32, int bf16, ChunkPlan p) : rows(p.logit_rows), group_rows(p.group_rows) {
    for (int k = 0; k < f32; ++k) f32_.push_back(call.scratch(sizeof(float) * rows * V));
    for (int k = 0; k < bf16; ++k) bf16_.push_back(call.scratch(sizeof(__nv_bfloat16) * group_rows * V));
    call.stats.chunk_rows = rows;
    call.stats.group_rows = group_rows;
  }

  std::vector<DeviceBuffer> f32_, bf16_;
};

// Writes n device doubles as float32 to `row_loss` (device) and returns their sum in double (synchronous:
// the sum is a host result of the op; the wait raises the pending error flags, drain_flags).
double copy_row_losses(const char* op, const Context& ctx, const double* d_loss, float* row_loss, int64_t n);

// The same float32 rows, and loss[0] = float(scale * sum) computed on the device (no host wait: the fused
// losses' `loss` output); with d_scale, the scale is read there instead (one the device computed). d_loss may be
// null when n = 0 (loss 0).
void device_row_losses(const char* op, const Context& ctx, const double* d_loss, float* row_loss, int64_t n, double scale,
                       float* loss, const double* d_scale = nullptr);

// A fused loss's end: call.finish(), then the row losses d_loss [n] to the float rowLoss output and the loss reduced
// over `rows`: with a loss output kept on the device (stats.loss NaN: nothing is read), else read back and reduced.
// n = 0 (no row counts; d_loss may be null): the loss is 0.
OpStats finish_losses(const char* op, const Context& ctx, FusedCall& call, const double* d_loss, float* row_loss, int64_t n,
                      Reduction reduction, int64_t rows, float* loss);

// The host waits for the ops' stream: the one way ops synchronise, counted as a host synchronisation
// (native/core/host_sync.h).
void wait_stream(const char* op, const Context& ctx);

// Error flags (native/core/error_flags.h) on the device.
// check_values enqueues a device check of x[0, n) (a slot claimed and reset, a scan kernel, a kernel that
// records the failing value), forcing a drain first when every slot is pending; no host wait.
void check_values(const char* op, const Context& ctx, const ValueCheck& c, const int32_t* x, int64_t n);
// Enqueues the copy of the claimed slots to ctx.flag_host (nothing when none is claimed).
void fetch_flags(const Context& ctx);
// Waits for the stream and raises the first failed pending check, clearing them all.
void drain_flags(const char* op, const Context& ctx);

// ================================================================================== device helpers
#ifdef __CUDACC__

// Every kernel launch of the CUDA ops goes through here: enqueued on the ops' stream, then the launch is
// checked (a bad configuration is reported at once, naming the op). Waiting for the work is run_op's
// (native/cuda/ops_cuda.h), once per op, so how launches synchronise and report is a one-place change.
template <typename... P, typename... A>
void launch(const char* op, const Context& ctx, dim3 grid, dim3 block, size_t smem, void (*kernel)(P...), A&&... args) {
  kernel<<<grid, block, smem, ctx.stream>>>(std::forward<A>(args)...);
  CUDA_CHECK_LAUNCH(op);
}

// Host-callable too, so the online-reduction math can be unit-tested without a GPU.
#define VW_HD __host__ __device__ __forceinline__

constexpr int kRowThreads = 512;  // threads per row block of the row passes
constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// exp(z - m) that is 1 (not NaN) when z == m == +-inf: -inf entries seen before the first finite logit
// are wiped by the next rescale, and +inf rows are reported by the max check anyway.
VW_HD float exp_shift(float z, float m) { return z == m ? 1.f : expf(z - m); }

// A double as float hi + lo: (x - hi) - lo is exact to the float rounding of the result, so subtracting a
// large per-row constant (an lse ~ 1e3) from a logit does not lose the 2^-24 |constant| a single float
// would (the CPU backend's SPLIT in native/cpu/vec.cpp).
struct Split {
  float hi, lo;
};
VW_HD Split split(double x) {
  const float hi = static_cast<float>(x);
  return {hi, static_cast<float>(x - static_cast<double>(hi))};
}

// Shuffles any 4-byte-multiple trivially copyable value word by word.
template <typename T>
__device__ __forceinline__ T shfl_xor(T v, int lane_mask) {
  static_assert(sizeof(T) % 4 == 0, "shfl_xor needs a 4-byte multiple");
  constexpr int kWords = sizeof(T) / 4;
  uint32_t w[kWords];
  memcpy(w, &v, sizeof(T));
#pragma unroll
  for (int i = 0; i < kWords; ++i) w[i] = __shfl_xor_sync(kFullMask, w[i], lane_mask);
  memcpy(&v, w, sizeof(T));
  return v;
}

template <typename T, typename Op>
__device__ __forceinline__ T warp_allreduce(T v, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, shfl_xor(v, o));
  return v;
}

// Reduction over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets the
// result. `identity` pads the missing warps; op must be associative and commutative up to rounding.
// Ends with a barrier, so it can be called back to back.
template <typename T, typename Op>
__device__ T block_allreduce(T v, Op op, T identity) {
  __shared__ T warp_vals[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = warp_allreduce(v, op);
  if (lane == 0) warp_vals[warp] = v;
  __syncthreads();
  v = lane < n_warps ? warp_vals[lane] : identity;
  v = warp_allreduce(v, op);
  __syncthreads();
  return v;
}

struct SumOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};

// Online softmax state of a set of logits: m = max (NaN never enters it: a NaN logit poisons s instead),
// s = sum exp(z - m). Empty: m = -inf, s = 0.
struct SoftmaxState {
  float m, s;
  VW_HD void add(float z) {
    if (z > m) {
      s = s * exp_shift(m, z) + 1.f;
      m = z;
    } else {
      s += exp_shift(z, m);
    }
  }
  // The row's max as the CPU reports it: NaN when any logit was NaN.
  VW_HD float reported_max() const { return s != s ? s : m; }
  VW_HD bool bad() const { return !isfinite(reported_max()); }
};
VW_HD SoftmaxState softmax_empty() { return {-INFINITY, 0.f}; }
struct SoftmaxMerge {
  VW_HD SoftmaxState operator()(SoftmaxState a, SoftmaxState b) const {
    const float m = fmaxf(a.m, b.m);
    return {m, a.s * exp_shift(a.m, m) + b.s * exp_shift(b.m, m)};
  }
};

// Records a non-finite logit row (global index `row`, reported max `val`); the lowest row wins.
__device__ __forceinline__ void flag_bad_row(unsigned long long* status, int64_t row, float val) {
  const unsigned long long key =
      (static_cast<unsigned long long>(row) << 32) | static_cast<unsigned long long>(__float_as_uint(val));
  atomicMin(status + kLogitSlot, key);
}

// Enqueues a fused op's row pass: one block of `threads` per row of the nc-row chunk, running vec4 when
// V % 4 == 0 (every row then starts 16-byte aligned, see load_row below) and vec1 otherwise.
template <typename P>
void launch_rows(const char* op, const Context& ctx, int64_t nc, unsigned threads, int V, void (*vec4)(P), void (*vec1)(P),
                 const P& p) {
  launch(op, ctx, static_cast<unsigned>(nc), threads, 0, V % 4 == 0 ? vec4 : vec1, p);
}

// Vector access to a row: VEC = 4 when V % 4 == 0 (every row then starts 16-byte aligned in a float block
// and 8-byte aligned in a bf16 block), else 1.
template <int VEC>
__device__ __forceinline__ void load_row(const float* p, float (&v)[VEC]) {
  if constexpr (VEC == 4) {
    const float4 x = *reinterpret_cast<const float4*>(p);
    v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
  } else {
#pragma unroll
    for (int j = 0; j < VEC; ++j) v[j] = p[j];
  }
}

template <int VEC, typename T>
__device__ __forceinline__ void store_row(T* p, const float (&v)[VEC]) {
  if constexpr (VEC == 4 && sizeof(T) == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else if constexpr (VEC == 4 && sizeof(T) == 2) {
    __nv_bfloat162 lo = __floats2bfloat162_rn(v[0], v[1]), hi = __floats2bfloat162_rn(v[2], v[3]);
    uint2 w;
    memcpy(&w.x, &lo, 4);
    memcpy(&w.y, &hi, 4);
    *reinterpret_cast<uint2*>(p) = w;
  } else {
#pragma unroll
    for (int j = 0; j < VEC; ++j) p[j] = from_float<T>(v[j]);
  }
}

// The online softmax state of the V logits of row z (one read, VEC at a time), merged over the block into st:
// every thread gets the row's state.
template <int VEC>
__device__ __forceinline__ void row_softmax_state(const float* z, int V, SoftmaxState& st) {
  st = softmax_empty();
  for (int v = threadIdx.x * VEC; v < V; v += blockDim.x * VEC) {
    float x[VEC];
    load_row<VEC>(z + v, x);
#pragma unroll
    for (int j = 0; j < VEC; ++j) st.add(x[j]);
  }
  st = block_allreduce(st, SoftmaxMerge{}, softmax_empty());
}

#endif  // __CUDACC__

}  // namespace vw::cuda
