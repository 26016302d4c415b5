// Host memory of tensors (the CPU addon's DeviceMemory), through the caching allocator of
// native/core/block_cache.h. Blocks of 64 KiB and more are rounded up to size
// classes (4 per octave, so at most 19% waste) and kept in free lists when disposed, up to 1 GiB
// (VWLMM_HOST_CACHE_MIB; the least recently freed blocks go back first): a
// training step allocates and frees the same sizes every step, and without reuse glibc either fragments its
// arenas (RSS grew by GBs at constant live memory) or, with a low mmap threshold, page-faults every block
// in again (2.5x slower steps). Tensors still free deterministically: dispose() returns the block to the
// cache at once; release_host_cache() hands the cache back to the system (like torch.cuda.empty_cache).
#pragma once
#include <cstddef>

#include "../core/block_cache.h"

namespace vw::cpu {

void* host_alloc(size_t bytes);               // 64-byte aligned; throws vw::Error when out of memory
void host_free(void* p, size_t bytes);        // bytes: the size given to host_alloc
void host_copy(void* dst, const void* src, size_t n);
void host_zero(void* dst, size_t n);
size_t release_host_cache();                  // bytes returned to the system
size_t cached_host_bytes();
BlockCacheStats host_cache_stats();         // reserved / cached / peak bytes, system allocations

}  // namespace vw::cpu
