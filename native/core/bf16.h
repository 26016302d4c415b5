// bfloat16 <-> float32 on the host, bit for bit as the CUDA intrinsics (__float2bfloat16_rn,
// __bfloat162float) and torch's .to(torch.bfloat16): round to nearest even, NaN stays a (quiet) NaN, values
// past the largest bf16 round to +-inf. The CPU backend stores bf16 as these 16-bit words and computes in
// float32 (native/cpu/float32_view.h); src/bf16.ts is the same conversion in TypeScript.
#pragma once
#include <cstdint>
#include <cstring>

namespace vw {

inline uint16_t bf16_from_f32(float x) {
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  // A NaN whose payload sits in the low 16 bits would round to inf: keep the top bits and set the quiet bit.
  if ((b & 0x7f800000u) == 0x7f800000u && (b & 0x007fffffu) != 0) return static_cast<uint16_t>((b >> 16) | 0x0040u);
  return static_cast<uint16_t>((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

inline float f32_from_bf16(uint16_t h) {
  const uint32_t b = static_cast<uint32_t>(h) << 16;
  float x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

}  // namespace vw
