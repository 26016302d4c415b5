// bfloat16 on the CPU: the ops that take bf16 on CUDA (ops.def "f32|bf16") take it here too, so a
// mixed-precision run (src/amp.ts) is checked in CI without a GPU. The CPU has no bf16 arithmetic of its
// own: in_float32 widens every bf16 buffer of a call into a float32 copy (exact), runs the op's float32
// kernel on the copies and rounds the bf16 outputs back once (native/core/bf16.h). That is the CUDA
// kernels' contract too (bf16 loads converted to float, fp32 arithmetic, one rounding per store), so both
// backends agree to float32 summation order. The op validates the call as given first (the shared readers
// with bf16 allowed), so the CPU and CUDA accept and reject the same dtype combinations.
#pragma once
#include <cstdint>
#include <vector>

#include "../core/bf16.h"
#include "../core/op.h"
#include "../core/op_args.h"
#include "host_memory.h"
#include "parallel.h"
#include "work_split.h"

namespace vw::cpu {

namespace detail {
// A float32 host block from the host cache, freed when the call ends (also when the kernel throws).
struct F32Block {
  float* p = nullptr;
  size_t bytes = 0;
  explicit F32Block(size_t n) : p(static_cast<float*>(host_alloc(n * sizeof(float)))), bytes(n * sizeof(float)) {}
  F32Block(F32Block&& o) noexcept : p(o.p), bytes(o.bytes) { o.p = nullptr; }
  F32Block(const F32Block&) = delete;
  ~F32Block() {
    if (p) host_free(p, bytes);
  }
};
}  // namespace detail

// kernel(call) with every bf16 buffer of `c` replaced by a float32 copy; bf16 outputs are written back
// rounded. Outputs are widened too, since "+=" outputs accumulate onto their values. The copies count as
// the op's workspace in its stats (they are beyond the budget the fused ops' chunking bounds).
template <typename Kernel>
void in_float32(const OpCall& c, Kernel&& kernel) {
  auto is_bf16 = [](const Buf& b) { return b.dtype == DType::BF16; };
  bool any = false;
  for (const Buf& b : c.in) any = any || is_bf16(b);
  for (const Buf& b : c.out) any = any || is_bf16(b);
  if (!any) return kernel(c);

  OpCall w = c;
  std::vector<detail::F32Block> blocks;
  int64_t widened = 0;
  auto widen = [&](Buf& b) {
    if (!is_bf16(b)) return;
    const int64_t n = static_cast<int64_t>(b.bytes / sizeof(uint16_t));
    b.dtype = DType::F32;
    b.bytes = static_cast<size_t>(n) * sizeof(float);
    if (n == 0) return;
    blocks.emplace_back(static_cast<size_t>(n));
    const uint16_t* src = static_cast<const uint16_t*>(b.data);
    float* dst = blocks.back().p;
    parallel_for(n, kElemGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) dst[i] = f32_from_bf16(src[i]);
    });
    b.data = dst;
    widened += static_cast<int64_t>(b.bytes);
  };
  for (Buf& b : w.in) widen(b);
  for (Buf& b : w.out) widen(b);
  OpStats st;
  w.stats = c.stats ? &st : nullptr;
  kernel(static_cast<const OpCall&>(w));
  for (size_t k = 0; k < c.out.size(); ++k) {
    if (!is_bf16(c.out[k]) || w.out[k].bytes == 0) continue;
    const float* src = static_cast<const float*>(w.out[k].data);
    uint16_t* dst = static_cast<uint16_t*>(c.out[k].data);
    parallel_for(static_cast<int64_t>(w.out[k].bytes / sizeof(float)), kElemGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) dst[i] = bf16_from_f32(src[i]);
    });
  }
  if (st.set) {
    st.workspace_bytes += widened;
    c.report(st);
  }
}

// An element-wise op whose buffers are all of input 0's float type (CUDA's element-wise frame checks them so):
// inputs in_names and outputs out_names of n elements each, checked as given, then kernel on float32 (bf16 widened).
template <size_t NI, size_t NO, typename Kernel>
void same_type_in_float32(const OpCall& c, int64_t n, const char* const (&in_names)[NI], const char* const (&out_names)[NO],
                          Kernel&& kernel) {
  const DType t = float_type_of(c.in, 0);
  for (size_t k = 0; k < NI; ++k) c.in_any(k, n, t, in_names[k]);
  for (size_t k = 0; k < NO; ++k) c.out_any(k, n, t, out_names[k]);
  in_float32(c, kernel);
}

}  // namespace vw::cpu
