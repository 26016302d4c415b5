// Host memory of tensors: size-class free lists (see host_memory.h for why).
#include "host_memory.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "../core/error.h"

namespace vw::cpu {

namespace {
// Only the JS thread allocates tensors; the mutex is for safety.
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
}  // namespace

void* host_alloc(size_t bytes) {
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
void host_free(void* p, size_t bytes) {
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

size_t release_host_cache() {
  std::lock_guard<std::mutex> g(g_cache_mu);
  const size_t freed = g_cached_bytes;
  for (auto& [cls, list] : g_cache)
    for (void* p : list) std::free(p);
  g_cache.clear();
  g_cached_bytes = 0;
  return freed;
}

void host_copy(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }
void host_zero(void* dst, size_t n) { std::memset(dst, 0, n); }

size_t cached_host_bytes() {
  std::lock_guard<std::mutex> g(g_cache_mu);
  return g_cached_bytes;
}


}  // namespace vw::cpu
