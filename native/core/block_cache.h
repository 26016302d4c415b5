// A caching allocator over a backend's raw one (host RAM: aligned_alloc; CUDA: cudaMalloc), shared by the
// backends. A training step allocates and frees the same sizes every step: blocks go back to free lists kept
// per size class and the next request of that class reuses one, so a steady-state step asks the system for
// nothing (PyTorch's caching allocator; on CUDA this removes cudaMalloc, and cudaFree's implicit device
// synchronisation, from the step). Classes: multiples of `granule` up to `small`, then 4 per octave (at most
// 19% waste). Blocks at most `small` are cached only when `cache_small` (native/cpu/host_memory.cpp says why the
// host caches them); the cache holds at most `cap` bytes: a freed block that would pass it first
// evicts the least recently freed blocks (back to the system), so that the cache follows the sizes in use. (Keeping
// the old blocks and returning the new one instead, once shapes changed, e.g. answering batches of another prompt
// length, sent every block of the new sizes back to the system and page-faulted it in again: 1,300-1,500 system
// allocations per batch, 40% slower answers.)
// A failed system allocation empties the cache and tries once more before reporting out of memory.
// Stream order: a block freed while a kernel still uses it is safe to reuse for work queued after it on the
// same stream (every op of the CUDA backend runs on one stream), as in PyTorch.
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "error.h"

namespace vw {

struct BlockCacheStats {
  size_t reserved = 0;       // held from the system: blocks in use (their class size) plus cached ones
  size_t cached = 0;         // in the free lists
  size_t peak_reserved = 0;  // the most `reserved` has been since the start (or the last release())
  uint64_t system_allocs = 0;  // requests the cache could not serve (a cacheable class with an empty list)
  uint64_t uncached_allocs = 0;  // blocks of classes the cache never holds (small ones where !cache_small)
  uint64_t cache_hits = 0;
  uint64_t evictions = 0;      // cached blocks handed back to make room under the cap for a block freed later
};

// The size class of a request of `bytes`: multiples of `granule` up to `small`, then 4 per octave (at most 19% waste).
// Deterministic, so a free recomputes a block's class from its size (BlockCache, and op programs' pools).
inline size_t block_size_class(size_t bytes, size_t granule, size_t small) {
  if (bytes <= small) return (bytes + granule - 1) / granule * granule;
  size_t p = small;
  while (p * 2 < bytes) p *= 2;  // p < bytes <= 2p: split (p, 2p] into 4 steps
  const size_t step = p / 4;
  return (bytes + step - 1) / step * step;
}

class BlockCache {
 public:
  using RawAlloc = void* (*)(size_t bytes);  // nullptr when out of memory; throws vw::Error on other failures
  using RawFree = void (*)(void* p);

  BlockCache(const char* what, RawAlloc raw_alloc, RawFree raw_free, size_t granule, size_t small, bool cache_small, size_t cap)
      : what_(what), raw_alloc_(raw_alloc), raw_free_(raw_free), granule_(granule), small_(small), cache_small_(cache_small), cap_(cap) {}
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  // The class a request of `bytes` is served from (deterministic: free() recomputes it from the size).
  size_t size_class(size_t bytes) const { return block_size_class(bytes, granule_, small_); }
  bool cacheable(size_t cls) const { return cls > small_ || cache_small_; }

  void* alloc(size_t bytes) {
    const size_t cls = size_class(bytes == 0 ? 1 : bytes);
    std::lock_guard<std::mutex> g(mu_);
    if (cacheable(cls)) {
      auto it = free_.find(cls);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back().p;
        it->second.pop_back();
        stats_.cached -= cls;
        ++stats_.cache_hits;
        return p;
      }
      ++stats_.system_allocs;
    } else {
      ++stats_.uncached_allocs;
    }
    void* p = raw_alloc_(cls);
    if (!p && stats_.cached > 0) {
      release_locked();
      p = raw_alloc_(cls);
    }
    if (!p) throw_runtime_error("out of ", what_, " memory allocating ", bytes, " bytes (", stats_.reserved, " bytes reserved, none of them cached)");
    stats_.reserved += cls;
    if (stats_.reserved > stats_.peak_reserved) stats_.peak_reserved = stats_.reserved;
    return p;
  }

  // bytes: the size given to alloc().
  void free(void* p, size_t bytes) {
    if (!p) return;
    const size_t cls = size_class(bytes == 0 ? 1 : bytes);
    std::lock_guard<std::mutex> g(mu_);
    if (cacheable(cls) && cls <= cap_) {
      while (stats_.cached + cls > cap_) evict_oldest_locked();
      free_[cls].push_back({p, ++clock_});
      stats_.cached += cls;
      return;
    }
    stats_.reserved -= cls;
    raw_free_(p);
  }

  // Hands every cached block back to the system; returns the bytes freed (torch.cuda.empty_cache()).
  size_t release() {
    std::lock_guard<std::mutex> g(mu_);
    const size_t freed = release_locked();
    stats_.peak_reserved = stats_.reserved;
    return freed;
  }

  BlockCacheStats stats() const {
    std::lock_guard<std::mutex> g(mu_);
    return stats_;
  }

 private:
  // Hands back the block freed longest ago: the first (oldest) entry of the list whose first entry is oldest (each
  // list is a stack, so its entries are in the order they were freed). A scan over the classes: it runs only once
  // the cache is full, and only for blocks larger than `small` on the host.
  void evict_oldest_locked() {
    auto oldest = free_.end();
    uint64_t stamp = std::numeric_limits<uint64_t>::max();
    for (auto it = free_.begin(); it != free_.end(); ++it)
      if (!it->second.empty() && it->second.front().stamp < stamp) stamp = it->second.front().stamp, oldest = it;
    if (oldest == free_.end()) throw_runtime_error(what_, " cache: nothing to evict with ", stats_.cached, " bytes cached");
    raw_free_(oldest->second.front().p);
    oldest->second.erase(oldest->second.begin());
    stats_.cached -= oldest->first;
    stats_.reserved -= oldest->first;
    ++stats_.evictions;
  }

  size_t release_locked() {
    const size_t freed = stats_.cached;
    for (auto& [cls, list] : free_)
      for (const Cached& c : list) raw_free_(c.p);
    free_.clear();
    stats_.reserved -= freed;
    stats_.cached = 0;
    return freed;
  }

  const char* what_;
  RawAlloc raw_alloc_;
  RawFree raw_free_;
  const size_t granule_, small_;
  const bool cache_small_;
  const size_t cap_;
  mutable std::mutex mu_;
  struct Cached {
    void* p;
    uint64_t stamp;  // when it was freed (clock_)
  };
  std::unordered_map<size_t, std::vector<Cached>> free_;
  uint64_t clock_ = 0;
  BlockCacheStats stats_;
};

}  // namespace vw
