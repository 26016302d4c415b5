// Parameters of attention_forward / attention_backward (native/core/ops.def), read and checked
// once for both backends so the CPU and CUDA ops validate in the same order with the same messages.
#pragma once
#include <cmath>
#include <cstdint>

#include "op_args.h"

namespace vw {

struct AttentionDims {
  int64_t B, Tq, Tk, Hq, Hkv, Dh, G;
  bool causal, has_mask;
  float scale;
  int64_t q_elems, kv_elems, lse_elems;
};

// pad / block_q: the CPU workspace constants; their size check bounds the workspace on both backends.
inline AttentionDims read_attention_dims(const OpCall& c, int64_t pad, int64_t block_q) {
  AttentionDims d;
  d.B = size_arg(c, 0, "B");
  d.Tq = size_arg(c, 1, "Tq");
  d.Tk = size_arg(c, 2, "Tk");
  d.Hq = size_arg(c, 3, "Hq");
  d.Hkv = size_arg(c, 4, "Hkv");
  d.Dh = size_arg(c, 5, "Dh");
  d.causal = flag_arg(c, 6, "causal");
  d.has_mask = flag_arg(c, 7, "hasMask");
  const double scale = finite_arg(c, 0, "scale");
  if (d.Hq < 1 || d.Hkv < 1 || d.Dh < 1)
    throw_range_error("[", c.op, "] Hq, Hkv, Dh must be >= 1, got ", d.Hq, ", ", d.Hkv, ", ", d.Dh);
  if (d.Hq % d.Hkv != 0)
    throw_range_error("[", c.op, "] Hq = ", d.Hq, " query heads must be a multiple of Hkv = ", d.Hkv, " kv heads");
  if (!std::isfinite(static_cast<float>(scale))) throw_range_error("[", c.op, "] scale ", scale, " overflows float32");
  d.G = d.Hq / d.Hkv;
  d.scale = static_cast<float>(scale);
  d.q_elems = numel(c, {d.B, d.Tq, d.Hq, d.Dh});
  d.kv_elems = numel(c, {d.B, d.Tk, d.Hkv, d.Dh});
  d.lse_elems = numel(c, {d.B, d.Hq, d.Tq});
  numel(c, {add_elems(c, d.Tk, pad), add_elems(c, d.Dh, pad + block_q), 8});
  return d;
}

}  // namespace vw
