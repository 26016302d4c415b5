// vwlmm.node: the CPU addon (always built). Host memory, the CPU kernels, and backendInfo().
#include <napi.h>

#include <cstdlib>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <cstring>

#include "../cpu/gemm.h"
#include "../cpu/kernels_cpu.h"
#include "../cpu/parallel.h"
#include "../cpu/vec.h"
#include "../cpu/engine_cpu.h"
#include "engine_napi.h"
#include "kernels_napi.h"

namespace vw::napi {

namespace {
void* HostAlloc(size_t bytes) {
  // 64-byte alignment for vector loads; round the size up as aligned_alloc requires.
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!p) throw_runtime_error("out of host memory allocating ", bytes, " bytes");
  return p;
}
void HostFree(void* p) { std::free(p); }
void HostCopy(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }
void HostZero(void* dst, size_t n) { std::memset(dst, 0, n); }
}  // namespace

const DeviceMemory kDeviceMemory = {"cpu", HostAlloc, HostFree, HostCopy, HostCopy, HostZero};

struct CpuBackend {
  static KernelStats linear_cross_entropy(const LinearCrossEntropyArgs& a) { return cpu::linear_cross_entropy_cpu(a); }
  static KernelStats visual_word_kl(const VisualWordKLArgs& a) { return cpu::visual_word_kl_cpu(a); }
  static KernelStats visual_words(const VisualWordsArgs& a) { return cpu::visual_words_cpu(a); }
  static KernelStats pseudo_image_features(const PseudoImageFeaturesArgs& a) { return cpu::pseudo_image_features_cpu(a); }
  static KernelStats pseudo_image_features_backward(const PseudoImageFeaturesArgs& a) {
    return cpu::pseudo_image_features_backward_cpu(a);
  }
};

// sgemm(transA, transB, M, N, K, A, B, C) on NativeBuffers, C = op(A) op(B): exposed for the benchmark's
// ceiling measurement and the tests of the fallback GEMM.
Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    const char* op = "sgemm";
    if (info.Length() < 8) throw_type_error("[sgemm] expected (transA, transB, M, N, K, A, B, C)");
    bool ta = info[0].ToBoolean(), tb = info[1].ToBoolean();
    int64_t M = info[2].As<Napi::Number>().Int64Value(), N = info[3].As<Napi::Number>().Int64Value(),
            K = info[4].As<Napi::Number>().Int64Value();
    if (M < 0 || N < 0 || K < 0) throw_range_error("[sgemm] negative size");
    const float* A = static_cast<const float*>(BufferArg(info[5], op, "A", M * K, DType::F32));
    const float* B = static_cast<const float*>(BufferArg(info[6], op, "B", K * N, DType::F32));
    float* C = static_cast<float*>(BufferArg(info[7], op, "C", M * N, DType::F32));
    cpu::sgemm(ta, tb, M, N, K, 1.f, A, ta ? M : K, B, tb ? K : N, 0.f, C, N);
    return info.Env().Undefined();
  });
}

// The CPU implements every engine op (a missing one fails to link).
const EngineRegistry kCpuEngine = {
#define VW_ENGINE_OP(name) {#name, cpu::name##_cpu},
#include "../core/engine_ops.def"
#undef VW_ENGINE_OP
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
#ifdef __GLIBC__
  // Kernels allocate and free MB-sized scratch on several threads every call. With glibc's dynamic mmap
  // threshold those blocks move into per-thread arenas after the first frees, and the arenas fragment:
  // a training run's RSS grew by GBs while the live memory stayed constant. A fixed threshold keeps
  // large blocks in mmap, returned to the system on free.
  mallopt(M_MMAP_THRESHOLD, 64 * 1024);
#endif
  RegisterCommon<CpuBackend>(env, exports);
  RegisterEngine(env, exports, &kCpuEngine, "cpu");
  exports.Set("sgemm", Napi::Function::New(env, Sgemm, "sgemm"));
  exports.Set("backendInfo", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("device", "cpu");
    o.Set("gemm", cpu::gemm_backend_name());
    o.Set("threads", cpu::num_threads());
    o.Set("simd", cpu::vec_isa_name());
    o.Set("napiVersion", NAPI_VERSION);
    return o;
  }));
  return exports;
}

NODE_API_MODULE(vwlmm, Init)

}  // namespace vw::napi
