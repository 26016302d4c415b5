// vwlmm_cuda.node: the CUDA addon (built when nvcc and cuBLAS are found). Device memory, the CUDA kernels,
// and backendInfo(). Mirrors addon_cpu.cc. Loading it never touches the GPU: the CUDA runtime is linked
// statically and only reaches the driver on the first call, so on a machine without a driver the module
// loads, backendInfo() reports { available: false, reason }, and every other call throws a plain Error.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <napi.h>

#include <string>

#include "../cuda/engine_cuda.h"
#include "../cuda/kernels_cuda.h"
#include "engine_napi.h"
#include "kernels_napi.h"

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
  }
  cudaGetLastError();
}

void* DeviceAlloc(size_t bytes) {
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    TrimWorkspacePool();
    err = cudaMalloc(&p, bytes);
  }
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    throw_runtime_error("out of CUDA memory allocating ", bytes, " bytes");
  }
  if (err != cudaSuccess) ThrowCuda("cudaMalloc", err);
  return p;
}
// Called from dispose() and GC finalizers, which cannot throw; a failed free (driver gone at exit) is moot.
void DeviceFree(void* p, size_t /*bytes*/) {
  if (cudaFree(p) != cudaSuccess) cudaGetLastError();
}
void Upload(void* dst, const void* src, size_t n) {
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

}  // namespace

const DeviceMemory kDeviceMemory = {"cuda", DeviceAlloc, DeviceFree, Upload, Download, Zero};

struct CudaBackend {
  static KernelStats linear_cross_entropy(const LinearCrossEntropyArgs& a) { return cuda::linear_cross_entropy_cuda(a); }
  static KernelStats visual_word_kl(const VisualWordKLArgs& a) { return cuda::visual_word_kl_cuda(a); }
  static KernelStats visual_words(const VisualWordsArgs& a) { return cuda::visual_words_cuda(a); }
  static KernelStats pseudo_image_features(const PseudoImageFeaturesArgs& a) { return cuda::pseudo_image_features_cuda(a); }
  static KernelStats pseudo_image_features_backward(const PseudoImageFeaturesArgs& a) {
    return cuda::pseudo_image_features_backward_cuda(a);
  }
};

// sgemm(transA, transB, M, N, K, A, B, C, { dtype }?) on NativeBuffers, C = op(A) op(B) in float32; A and
// B are float32, or bfloat16 with { dtype: 'bfloat16' }. Same signature as the CPU addon's: the
// benchmark's cuBLAS ceiling.
Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    const char* op = "sgemm";
    if (info.Length() < 8) throw_type_error("[sgemm] expected (transA, transB, M, N, K, A, B, C, options?)");
    const bool ta = GemmFlag(info[0], "transA"), tb = GemmFlag(info[1], "transB");
    const int64_t M = GemmSize(info[2], "M"), N = GemmSize(info[3], "N"), K = GemmSize(info[4], "K");
    const DType t = GetDType(OptsArg(info, 8, op), op);
    const void* A = BufferArg(info[5], op, "A", Elems(op, M, K), t);
    const void* B = BufferArg(info[6], op, "B", Elems(op, K, N), t);
    float* C = static_cast<float*>(BufferArg(info[7], op, "C", Elems(op, M, N), DType::F32));
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

// The engine ops with a CUDA implementation (native/cuda/engine/*.cu); any other engine op throws
// "[op] has no cuda implementation" from engineCall.
const EngineRegistry kCudaEngine = {
    {"matmul", cuda::matmul_cuda},
    {"sum_rows", cuda::sum_rows_cuda},
    {"embedding_forward", cuda::embedding_forward_cuda},
    {"embedding_backward", cuda::embedding_backward_cuda},
    {"rms_norm_forward", cuda::rms_norm_forward_cuda},
    {"rms_norm_backward", cuda::rms_norm_backward_cuda},
    {"layer_norm_forward", cuda::layer_norm_forward_cuda},
    {"layer_norm_backward", cuda::layer_norm_backward_cuda},
    {"rope", cuda::rope_cuda},
    {"softmax_forward", cuda::softmax_forward_cuda},
    {"softmax_backward", cuda::softmax_backward_cuda},
    {"activation_forward", cuda::activation_forward_cuda},
    {"activation_backward", cuda::activation_backward_cuda},
    {"swiglu_forward", cuda::swiglu_forward_cuda},
    {"swiglu_backward", cuda::swiglu_backward_cuda},
    {"axpby", cuda::axpby_cuda},
    {"mul", cuda::mul_cuda},
    {"add_broadcast", cuda::add_broadcast_cuda},
    {"copy_2d", cuda::copy_2d_cuda},
    {"gather_rows", cuda::gather_rows_cuda},
    {"scatter_add_rows", cuda::scatter_add_rows_cuda},
    {"im2col", cuda::im2col_cuda},
    {"attention_forward", cuda::attention_forward_cuda},
    {"attention_backward", cuda::attention_backward_cuda},
    {"adamw_step", cuda::adamw_step_cuda},
    {"sum_squares", cuda::sum_squares_cuda},
    {"fill", cuda::fill_cuda},
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  RegisterCommon<CudaBackend>(env, exports);
  RegisterEngine(env, exports, &kCudaEngine, "cuda");
  exports.Set("sgemm", Napi::Function::New(env, Sgemm, "sgemm"));
  exports.Set("backendInfo", Napi::Function::New(env, BackendInfo, "backendInfo"));
  return exports;
}

NODE_API_MODULE(vwlmm_cuda, Init)

}  // namespace vw::napi
