// vwlmm.node: the CPU addon (always built). Host memory, the CPU kernels, and backendInfo().
#include <napi.h>

#include <algorithm>
#include <cstdlib>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "../cpu/gemm.h"
#include "../cpu/kernels_cpu.h"
#include "../cpu/parallel.h"
#include "../cpu/vec.h"
#include "../cpu/engine_cpu.h"
#include "engine_napi.h"
#include "kernels_napi.h"

namespace vw::napi {

namespace {
// Host memory of tensors. Blocks of 64 KiB and more are rounded up to size classes (4 per octave, so at
// most 19% waste) and kept in free lists when disposed, up to kCacheCap bytes: a training step allocates
// and frees the same sizes every step, and without reuse glibc either fragments its arenas (RSS grew by
// GBs at constant live memory) or, with a low mmap threshold, page-faults every block in again (2.5x
// slower steps). Tensors still free deterministically: dispose() returns the block to the cache at once;
// releaseCache() hands the cache back to the system. Only the JS thread allocates tensors; the mutex is
// for safety.
constexpr size_t kSmall = 64 * 1024;
constexpr size_t kCacheCap = size_t{1} << 30;
std::mutex g_cache_mu;
std::unordered_map<size_t, std::vector<void*>> g_cache;
size_t g_cached_bytes = 0;

size_t size_class(size_t bytes) {
  if (bytes <= kSmall) return (bytes + 63) / 64 * 64;
  size_t p = kSmall;
  while (p * 2 < bytes) p *= 2;  // p < bytes <= 2p: split (p, 2p] into 4 steps
  const size_t step = p / 4;
  return (bytes + step - 1) / step * step;
}

void* HostAlloc(size_t bytes) {
  const size_t cls = size_class(bytes);
  if (cls > kSmall) {
    std::lock_guard<std::mutex> g(g_cache_mu);
    auto it = g_cache.find(cls);
    if (it != g_cache.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      g_cached_bytes -= cls;
      return p;
    }
  }
#ifdef VWLMM_SANITIZE
  // Sanitizer builds: small blocks get exactly `bytes`, so ASan's redzone starts right at the end of the
  // buffer (the 64-byte rounding would hide an overflow of up to 63 bytes). Small blocks are never cached.
  if (cls <= kSmall) {
    void* q = nullptr;
    if (posix_memalign(&q, 64, bytes > 0 ? bytes : 1) != 0 || !q) throw_runtime_error("out of host memory allocating ", bytes, " bytes");
    return q;
  }
#endif
  void* p = std::aligned_alloc(64, cls);  // 64-byte alignment for vector loads
  if (!p) throw_runtime_error("out of host memory allocating ", bytes, " bytes");
  return p;
}

// NativeBuffer only knows the requested size; the class is recomputed (deterministic).
void HostFreeSized(void* p, size_t bytes) {
  const size_t cls = size_class(bytes);
  if (cls > kSmall) {
    std::lock_guard<std::mutex> g(g_cache_mu);
    if (g_cached_bytes + cls <= kCacheCap) {
      g_cache[cls].push_back(p);
      g_cached_bytes += cls;
      return;
    }
  }
  std::free(p);
}

size_t ReleaseHostCache() {
  std::lock_guard<std::mutex> g(g_cache_mu);
  const size_t freed = g_cached_bytes;
  for (auto& [cls, list] : g_cache)
    for (void* p : list) std::free(p);
  g_cache.clear();
  g_cached_bytes = 0;
  return freed;
}

void HostCopy(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }
void HostZero(void* dst, size_t n) { std::memset(dst, 0, n); }
}  // namespace

const DeviceMemory kDeviceMemory = {"cpu", HostAlloc, HostFreeSized, HostCopy, HostCopy, HostZero};

struct CpuBackend {
  static KernelStats linear_cross_entropy(const LinearCrossEntropyArgs& a) { return cpu::linear_cross_entropy_cpu(a); }
  static KernelStats visual_word_kl(const VisualWordKLArgs& a) { return cpu::visual_word_kl_cpu(a); }
  static KernelStats visual_words(const VisualWordsArgs& a) { return cpu::visual_words_cpu(a); }
  static KernelStats pseudo_image_features(const PseudoImageFeaturesArgs& a) { return cpu::pseudo_image_features_cpu(a); }
  static KernelStats pseudo_image_features_backward(const PseudoImageFeaturesArgs& a) {
    return cpu::pseudo_image_features_backward_cpu(a);
  }
};

// sgemm(transA, transB, M, N, K, A, B, C, options?) on NativeBuffers, C = alpha op(A) op(B) + beta C:
// exposed for the benchmarks' GEMM measurements and the GEMM tests. options (all optional):
//   builtin: true runs the built-in GEMM even where OpenBLAS is in use (to compare the two in one process),
//   alpha (1), beta (0; 0 overwrites C without reading it), lda / ldb / ldc: row strides >= the logical
//   widths (default: the widths), the buffers then holding (rows - 1) * ld + width elements.
Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    const char* op = "sgemm";
    if (info.Length() < 8) throw_type_error("[sgemm] expected (transA, transB, M, N, K, A, B, C), got ", info.Length(), " arguments");
    const bool ta = GemmFlag(info[0], "transA"), tb = GemmFlag(info[1], "transB");
    const int64_t M = GemmSize(info[2], "M"), N = GemmSize(info[3], "N"), K = GemmSize(info[4], "K");
    bool builtin = false;
    float alpha = 1.f, beta = 0.f;
    // Row strides: at least the stored width and 1 (as BLAS requires); read before the buffers are.
    int64_t lda = std::max<int64_t>(1, ta ? M : K), ldb = std::max<int64_t>(1, tb ? K : N), ldc = std::max<int64_t>(1, N);
    if (info.Length() > 8 && !info[8].IsUndefined() && !info[8].IsNull()) {
      if (!info[8].IsObject()) throw_type_error("[sgemm] options must be an object");
      const Napi::Object o = info[8].As<Napi::Object>();
      builtin = GetBool(o, "builtin", false, op);
      alpha = static_cast<float>(GetNumber(o, "alpha", 1, op));
      beta = static_cast<float>(GetNumber(o, "beta", 0, op));
      const auto stride = [&](const char* key, int64_t min) {
        const Napi::Value v = o.Get(key);
        if (v.IsUndefined() || v.IsNull()) return min;
        const int64_t ld = GemmSize(v, key);
        if (ld < min) throw_range_error("[sgemm] ", key, " must be >= ", min, " (the row width), got ", ld);
        return ld;
      };
      lda = stride("lda", lda), ldb = stride("ldb", ldb), ldc = stride("ldc", ldc);
    }
    // Elements a [rows, width] matrix with row stride ld spans: (rows - 1) * ld + width.
    const auto extent = [&](int64_t rows, int64_t width, int64_t ld) {
      return rows == 0 || width == 0 ? 0 : Elems(op, rows - 1, ld) + width;
    };
    const float* A = static_cast<const float*>(BufferArg(info[5], op, "A", ta ? extent(K, M, lda) : extent(M, K, lda), DType::F32));
    const float* B = static_cast<const float*>(BufferArg(info[6], op, "B", tb ? extent(N, K, ldb) : extent(K, N, ldb), DType::F32));
    float* C = static_cast<float*>(BufferArg(info[7], op, "C", extent(M, N, ldc), DType::F32));
    (builtin ? cpu::sgemm_builtin : cpu::sgemm)(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
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
  // Kernel scratch (std::vector on worker threads) of 1 MiB and more stays in mmap and goes back to the
  // system on free: with glibc's dynamic threshold such blocks drift into per-thread arenas that fragment.
  mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
#endif
  RegisterCommon<CpuBackend>(env, exports);
  RegisterEngine(env, exports, &kCpuEngine, "cpu");
  exports.Set("sgemm", Napi::Function::New(env, Sgemm, "sgemm"));
  exports.Set("releaseCache", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Napi::Number::New(info.Env(), static_cast<double>(ReleaseHostCache()));
  }));
  exports.Set("cachedBytes", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    std::lock_guard<std::mutex> g(g_cache_mu);
    return Napi::Number::New(info.Env(), static_cast<double>(g_cached_bytes));
  }));
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
