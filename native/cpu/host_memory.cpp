// Host memory of tensors: the shared caching allocator (native/core/block_cache.h) over aligned_alloc.
#include "host_memory.h"

#include <cstdlib>
#include <cstring>

#include "../core/block_cache.h"
#include "../core/error.h"

namespace vw::cpu {

namespace {
// Blocks up to 64 KiB are classes of 64-byte multiples, larger ones 4 per octave; all are cached, up to
// VWLMM_HOST_CACHE_MIB (default 1024 MiB; read once, at the first allocation). Small ones were left to malloc once:
// in a synchronous loop (Trainer.run, a user's own for loop) the buffers' wrappers are finalized only when the event
// loop turns, and malloc split each freed block for them, so every small tensor took new memory: +4 KiB of RSS per
// 4 KiB buffer allocated and disposed (400 MB per 100,000), +350 MB over 600 training steps without replay.
constexpr size_t kSmall = 64 * 1024;

size_t cache_cap() {
  const char* v = std::getenv("VWLMM_HOST_CACHE_MIB");
  if (v == nullptr || *v == '\0') return size_t{1} << 30;
  char* end = nullptr;
  const unsigned long long mib = std::strtoull(v, &end, 10);
  if (*end != '\0' || v[0] == '-' || mib > (size_t{1} << 24))
    throw_range_error("VWLMM_HOST_CACHE_MIB must be a whole number of MiB from 0 to 16777216, got '", v, "'");
  return static_cast<size_t>(mib) << 20;
}

void* raw_alloc(size_t bytes) { return std::aligned_alloc(64, bytes); }  // 64-byte alignment for vector loads
void raw_free(void* p) { std::free(p); }

BlockCache& cache() {
  static BlockCache c("host", raw_alloc, raw_free, 64, kSmall, /*cache_small=*/true, cache_cap());
  return c;
}
}  // namespace

void* host_alloc(size_t bytes) {
#ifdef VWLMM_SANITIZE
  // Sanitizer builds: small blocks get exactly `bytes`, so ASan's redzone starts right at the end of the
  // buffer (the 64-byte rounding would hide an overflow of up to 63 bytes). Small blocks are never cached.
  if (bytes <= kSmall) {
    void* q = nullptr;
    if (posix_memalign(&q, 64, bytes > 0 ? bytes : 1) != 0 || !q) throw_runtime_error("out of host memory allocating ", bytes, " bytes");
    return q;
  }
#endif
  return cache().alloc(bytes);
}

void host_free(void* p, size_t bytes) {
#ifdef VWLMM_SANITIZE
  if (bytes <= kSmall) return std::free(p);
#endif
  cache().free(p, bytes);
}

size_t release_host_cache() { return cache().release(); }
BlockCacheStats host_cache_stats() { return cache().stats(); }

void host_copy(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }
void host_zero(void* dst, size_t n) { std::memset(dst, 0, n); }

size_t cached_host_bytes() { return cache().stats().cached; }

}  // namespace vw::cpu
