// vwlmm_cuda.node: the CUDA addon (built when nvcc and cuBLAS are found): the op table bound to the CUDA
// kernels, device memory, sgemm and backendInfo(). Mirrors addon_cpu.cc. Loading it never touches the GPU: the CUDA runtime is linked
// statically and only reaches the driver on the first call, so on a machine without a driver the module
// loads, backendInfo() reports { available: false, reason }, and every other call throws a plain Error.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <napi.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../core/error_flags.h"
#include "../core/host_sync.h"
#include "../cuda/ops_cuda.h"
#include "../distributed/nccl_communicator.h"
#include "args.h"
#include "dist_napi.h"
#include "op_napi.h"

namespace vw::napi {

namespace {

[[noreturn]] void ThrowCuda(const char* what, cudaError_t err) {
  cudaGetLastError();  // clear a non-sticky error
  throw_runtime_error("[cuda] ", what, ": ", cudaGetErrorString(err));
}

// The kernels allocate their workspace from the device's default stream-ordered pool and keep it cached
// between calls; give it back before reporting that a buffer does not fit.
void TrimWorkspacePool() {
  int dev = 0;
  cudaMemPool_t pool;
  if (cudaGetDevice(&dev) == cudaSuccess && cudaDeviceGetDefaultMemPool(&pool, dev) == cudaSuccess) {
    cudaDeviceSynchronize();
    cudaMemPoolTrimTo(pool, 0);
    cudaDeviceGraphMemTrim(dev);  // what op-program graphs' workspace left cached (graph memory nodes)
  }
  cudaGetLastError();
}

// The raw allocator under the block cache: nullptr when out of memory (after giving the kernels' workspace
// pool back), so the cache can empty itself and retry.
void* RawDeviceAlloc(size_t bytes) {
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    TrimWorkspacePool();
    err = cudaMalloc(&p, bytes);
  }
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return nullptr;
  }
  if (err != cudaSuccess) ThrowCuda("cudaMalloc", err);
  return p;
}
// Called from dispose() and GC finalizers, which cannot throw; a failed free (driver gone at exit) is moot.
void RawDeviceFree(void* p) {
  if (cudaFree(p) != cudaSuccess) cudaGetLastError();
}

// Tensors' device memory: every size cached (cudaMalloc costs tens of microseconds and cudaFree synchronises
// the device), 512-byte classes up to 1 MiB, then 4 per octave; no cap (torch.cuda.empty_cache() is
// releaseCache()). Ran on an H200 (2026-12-04) in every CUDA test; the CPU backend runs the same cache
// (tests/engine/memory_cache.test.ts).
BlockCache& DeviceCache() {
  static BlockCache c("CUDA", RawDeviceAlloc, RawDeviceFree, 512, size_t{1} << 20, /*cache_small=*/true, SIZE_MAX);
  return c;
}
void* DeviceAlloc(size_t bytes) { return DeviceCache().alloc(bytes); }
void DeviceFree(void* p, size_t bytes) { DeviceCache().free(p, bytes); }
BlockCacheStats DeviceCacheStats() { return DeviceCache().stats(); }
size_t ReleaseDeviceCache() {
  const size_t freed = DeviceCache().release();
  TrimWorkspacePool();
  return freed;
}
// Async mode (native/core/error_flags.h): through pinned staging on the ops' stream, no host wait; else one
// synchronous copy on the legacy default stream (which the ops' blocking stream is ordered after).
void Upload(void* dst, const void* src, size_t n) {
  if (error_flags().async()) {
    if (cuda::upload_staged(dst, src, n)) return;
    if (n > 0) count_host_sync();  // larger than the staging takes: the copy below waits for the ops' stream
  }
  const cudaError_t err = cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice);
  if (err != cudaSuccess) ThrowCuda("cudaMemcpy host -> device", err);
}
void Download(void* dst, const void* src, size_t n) {
  const cudaError_t err = cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost);
  if (err != cudaSuccess) ThrowCuda("cudaMemcpy device -> host", err);
}
// On the legacy default stream: the kernels' (blocking) stream waits for it.
void Zero(void* dst, size_t n) {
  const cudaError_t err = cudaMemset(dst, 0, n);
  if (err != cudaSuccess) ThrowCuda("cudaMemset", err);
}

// A recorded op call runs its host code as it is captured: its kernels go into the graph.
void RunOp(OpFn fn, const OpCall& call) { fn(call); }

}  // namespace

const GraphHooks kGraphHooks = {RunOp, cuda::graph_begin, cuda::graph_end,    cuda::graph_launch,  cuda::graph_wait,
                                cuda::graph_destroy, cuda::graph_nodes, cuda::graph_upload, cuda::graph_zero,
                                cuda::pinned_alloc, cuda::pinned_free};

const DeviceMemory kDeviceMemory = {"cuda",           DeviceAlloc,          DeviceFree,
                                    Upload,           Download,             Zero,
                                    DeviceCacheStats, ReleaseDeviceCache,   cuda::flags_before_read,
                                    cuda::flags_after_read, cuda::synchronize, &kGraphHooks};

// sgemm(transA, transB, M, N, K, A, B, C, { dtype }?) on NativeBuffers, C = op(A) op(B) in float32; A and
// B are float32, or bfloat16 with { dtype: 'bfloat16' }. Same signature as the CPU addon's: the
// benchmark's cuBLAS ceiling.
Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    const char* op = "sgemm";
    if (info.Length() < 8) throw_type_error("[sgemm] expected (transA, transB, M, N, K, A, B, C, options?)");
    const bool ta = GemmFlag(info[0], "transA"), tb = GemmFlag(info[1], "transB");
    const int64_t M = GemmSize(info[2], "M"), N = GemmSize(info[3], "N"), K = GemmSize(info[4], "K");
    DType t = DType::F32;
    if (info.Length() > 8 && !info[8].IsUndefined() && !info[8].IsNull()) {
      if (!info[8].IsObject()) throw_type_error("[sgemm] options must be an object");
      const Napi::Value dt = info[8].As<Napi::Object>().Get("dtype");
      if (!dt.IsUndefined() && !dt.IsNull()) t = dtype_from_name(dt.IsString() ? dt.As<Napi::String>().Utf8Value() : "", op);
    }
    const OpCall c = GemmBuffers(info, t);
    const void* A = c.in_any(0, GemmElems(M, K), t, "A");
    const void* B = c.in_any(1, GemmElems(K, N), t, "B");
    float* C = c.out_f32(0, GemmElems(M, N), "C");
    cuda::gemm_cuda(ta, tb, M, N, K, A, B, C, t);
    return info.Env().Undefined();
  });
}

// { device: 'cuda', available, ... }: never throws, also without a driver or a GPU.
Napi::Value BackendInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("device", "cuda");
  o.Set("napiVersion", NAPI_VERSION);
  int runtime = 0;
  if (cudaRuntimeGetVersion(&runtime) == cudaSuccess) o.Set("cudaRuntimeVersion", runtime);  // 1000 major + 10 minor
  int major = 0, minor = 0, patch = 0;
  if (cublasGetProperty(MAJOR_VERSION, &major) == CUBLAS_STATUS_SUCCESS &&
      cublasGetProperty(MINOR_VERSION, &minor) == CUBLAS_STATUS_SUCCESS &&
      cublasGetProperty(PATCH_LEVEL, &patch) == CUBLAS_STATUS_SUCCESS)
    o.Set("cublasVersion", major * 10000 + minor * 100 + patch);  // CUBLAS_VERSION's encoding
  {
    // data-parallel over NCCL: compiled in, found at run time (dlopen), or why not; the addon works without it
    const dist::NcclStatus st = dist::nccl_status();
    Napi::Object n = Napi::Object::New(env);
    n.Set("compiled", st.compiled);
    n.Set("available", st.available);
    if (st.available) {
      n.Set("library", st.library);
      n.Set("version", st.version);
    } else {
      n.Set("reason", st.reason);
    }
    o.Set("nccl", n);
  }

  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    cudaGetLastError();
    o.Set("available", false);
    o.Set("reason", err != cudaSuccess ? cudaGetErrorString(err) : "no CUDA device found");
    o.Set("deviceCount", 0);
    return o;
  }
  int dev = 0, driver = 0;
  cudaDeviceProp prop;
  cudaError_t e2 = cudaGetDevice(&dev);
  if (e2 == cudaSuccess) e2 = cudaGetDeviceProperties(&prop, dev);
  if (e2 != cudaSuccess) {
    cudaGetLastError();
    o.Set("available", false);
    o.Set("reason", cudaGetErrorString(e2));
    o.Set("deviceCount", count);
    return o;
  }
  o.Set("available", true);
  o.Set("deviceCount", count);
  o.Set("deviceIndex", dev);
  o.Set("deviceName", prop.name);
  o.Set("computeCapability", std::to_string(prop.major) + "." + std::to_string(prop.minor));
  o.Set("totalMemory", static_cast<double>(prop.totalGlobalMem));
  o.Set("multiProcessorCount", prop.multiProcessorCount);
  if (cudaDriverGetVersion(&driver) == cudaSuccess) o.Set("cudaDriverVersion", driver);
  cudaGetLastError();
  return o;
}

// selectDevice(n): GPU n becomes this process's device (src/device.ts: 'cuda:N'). One process drives one GPU:
// the buffers, streams and cuBLAS handles of the ops belong to the device current when they were made, so
// switching is refused once memory is held on another device.
Napi::Value SelectDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    const double n = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) ThrowCuda("cudaGetDeviceCount", err);
    if (!(n >= 0) || n != static_cast<double>(static_cast<int>(n)) || n >= count)
      throw_range_error("[cuda] device index ", n, " does not exist: this machine has ", count, " CUDA device(s), cuda:0 to cuda:", count - 1);
    int current = 0;
    if (cudaGetDevice(&current) != cudaSuccess) cudaGetLastError();
    if (current == static_cast<int>(n)) return env.Undefined();
    if (NativeBuffer::live_count.load() > 0)
      throw_runtime_error("[cuda] cannot move this process to cuda:", static_cast<int>(n), ": it holds ", NativeBuffer::live_count.load(),
                          " buffers on cuda:", current, " (one process drives one GPU; choose the device before creating tensors)");
    const cudaError_t e2 = cudaSetDevice(static_cast<int>(n));
    if (e2 != cudaSuccess) ThrowCuda("cudaSetDevice", e2);
    return env.Undefined();
  });
}

// The GPU's process group: NCCL. options: uniqueId (rank 0's, 128 bytes, from the rendezvous), rank, worldSize,
// localRank, localWorldSize (src/distributed/rendezvous.ts ncclRendezvous).
dist::Communicator* OpenDeviceCommunicator(const std::string& backend, const Napi::Object& o, double timeout_s) {
  if (backend != "nccl") throw_type_error("[distInit] the cuda backend runs process groups over 'nccl', not '", backend, "' (MPI is the cpu backend's)");
  const Napi::Value id = o.Get("uniqueId");
  if (!id.IsTypedArray() || id.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) throw_type_error("[distInit] options.uniqueId must be a Uint8Array (rank 0's NCCL unique id)");
  const Napi::Uint8Array bytes = id.As<Napi::Uint8Array>();
  const auto number = [&](const char* key, double lo, double hi) {
    const Napi::Value v = o.Get(key);
    const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= lo && d <= hi) || d != static_cast<double>(static_cast<int>(d))) throw_range_error("[distInit] options.", key, " must be an integer in [", lo, ", ", hi, "]");
    return static_cast<int>(d);
  };
  const int size = number("worldSize", 1, 1 << 20), rank = number("rank", 0, size - 1);
  const int local_size = number("localWorldSize", 1, size), local_rank = number("localRank", 0, local_size - 1);
  return dist::open_nccl(std::string(reinterpret_cast<const char*>(bytes.Data()), bytes.ByteLength()), rank, size, local_rank, local_size, timeout_s);
}

// attentionSettings(kernel?, workspaceBytes?): which kernels run attention on CUDA (native/cuda/ops_cuda.h),
// changed where given; returns the previous { kernel, workspaceBytes } and gemmCalls (cuda::attention_gemm_calls).
// src/index.ts setCudaAttention checks the values first; these checks keep a direct call safe.
Napi::Value AttentionSettingsFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    cuda::AttentionSettings s = cuda::attention_settings();
    if (info.Length() > 0 && !info[0].IsUndefined() && !info[0].IsNull()) {
      const std::string k = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
      if (!cuda::attention_kernel_from_name(k.c_str(), s.kernel))
        throw_type_error("[attentionSettings] kernel must be 'auto', 'tiled' or 'gemm'");
    }
    if (info.Length() > 1 && !info[1].IsUndefined() && !info[1].IsNull()) {
      const double b = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
      if (!(b >= 1) || b > 9007199254740991.0 || b != static_cast<double>(static_cast<int64_t>(b)))
        throw_range_error("[attentionSettings] workspaceBytes must be an integer >= 1");
      s.workspace_bytes = static_cast<int64_t>(b);
    }
    const cuda::AttentionSettings was = cuda::set_attention_settings(s);
    Napi::Object o = Napi::Object::New(env);
    o.Set("kernel", cuda::attention_kernel_name(was.kernel));
    o.Set("workspaceBytes", static_cast<double>(was.workspace_bytes));
    o.Set("gemmCalls", static_cast<double>(cuda::attention_gemm_calls()));
    return o;
  });
}

// Every op of the table, each launched through run_op (native/cuda/ops_cuda.h): a missing one fails to link.
const OpEntry kCudaOps[] = {
#define VW_OP(name, inputs, outputs, ints, floats) {#name, cuda::run_op<cuda::name##_cuda>, inputs, outputs, ints, floats},
#include "../core/ops.def"
#undef VW_OP
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // CUDA starts in async mode (native/core/error_flags.h): no op waits for its kernels. VWLMM_CUDA_ASYNC=0 starts
  // it in sync mode (each op waits and raises its own checks: CUDA_LAUNCH_BLOCKING's use); setAsync() changes it.
  const char* async = std::getenv("VWLMM_CUDA_ASYNC");
  error_flags().set_async(async == nullptr || std::string(async) != "0");
  RegisterOps(env, exports, kCudaOps, "cuda");
  exports.Set("sgemm", Napi::Function::New(env, Sgemm, "sgemm"));
  exports.Set("backendInfo", Napi::Function::New(env, BackendInfo, "backendInfo"));
  exports.Set("selectDevice", Napi::Function::New(env, SelectDevice, "selectDevice"));
  exports.Set("attentionSettings", Napi::Function::New(env, AttentionSettingsFn, "attentionSettings"));
  RegisterDist(env, exports, OpenDeviceCommunicator);
  exports.Set("ncclUniqueId", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Guard(info.Env(), [&]() -> Napi::Value {
      const std::string id = dist::nccl_unique_id();
      Napi::Uint8Array out = Napi::Uint8Array::New(info.Env(), id.size());
      std::memcpy(out.Data(), id.data(), id.size());
      return out;
    });
  }, "ncclUniqueId"));
  return exports;
}

NODE_API_MODULE(vwlmm_cuda, Init)

}  // namespace vw::napi
