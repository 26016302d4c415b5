// The dropout mask as a pure function of (seed, element index), the same bits on every backend, so a mask is
// never stored or uploaded: the backward (and a gradient-checkpointing recomputation) rebuilds it from the
// seed. SplitMix64 of the counter (Steele et al. 2014; a counter-based generator of good statistical quality),
// its top 24 bits compared with an integer threshold: element i is kept iff bits >= round(p * 2^24).
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#define VW_HOST_DEVICE __host__ __device__
#else
#define VW_HOST_DEVICE
#endif

namespace vw {

VW_HOST_DEVICE inline uint32_t dropout_bits(uint64_t seed, uint64_t i) {
  uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<uint32_t>(z >> 40);  // 24 bits
}

VW_HOST_DEVICE inline bool dropout_keep(uint64_t seed, uint64_t i, uint32_t threshold) {
  return dropout_bits(seed, i) >= threshold;
}

}  // namespace vw
