// Parameters and tensors of attention_forward / attention_backward (native/core/ops.def), read and checked
// once for both backends so the CPU and CUDA ops validate in the same order with the same messages.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

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

// The key mask slot: the int32 [B, Tk] buffer when hasMask, else null (a buffer given anyway is an error).
// Its values (0 or 1) are the backend's to check: the CPU on the host, CUDA on the device.
inline const int32_t* key_mask_arg(const OpCall& c, size_t slot, const AttentionDims& d) {
  if (d.has_mask) return c.in_i32(slot, d.B * d.Tk, "keyMask");
  if (c.has_in(slot)) throw_type_error("[", c.op, "] keyMask is given but hasMask = 0");
  return nullptr;
}

// The tensors of attention_forward (in [Q, K, V, keyMask?] out [O, lse]) and attention_backward (in [dO, Q,
// K, V, O, lse, keyMask?] out [dQ, dK, dV]). F = float: all float32 (the CPU); F = void: Q, K, V, O and
// their gradients all of the float type of input 0, float32 or bfloat16 (CUDA). lse is float32 always.
template <typename F>
struct AttentionTensors {
  DType t = DType::F32;
  const F* Q = nullptr;
  const F* K = nullptr;
  const F* V = nullptr;
  const int32_t* mask = nullptr;      // null without hasMask
  F* O = nullptr;                     // forward
  float* lse = nullptr;               // forward
  const F* dO = nullptr;              // backward
  const F* saved_O = nullptr;         // backward: the forward's O
  const float* saved_lse = nullptr;   // backward: the forward's lse
  F* dQ = nullptr;                    // backward
  F* dK = nullptr;                    // backward
  F* dV = nullptr;                    // backward
};

// check_mask(mask) runs as soon as the key mask is read, before the outputs are: the backend checks the
// mask's values there (key_mask_arg).
template <typename F, typename CheckMask>
AttentionTensors<F> read_attention_tensors(const OpCall& c, const AttentionDims& d, bool backward, CheckMask&& check_mask) {
  static_assert(std::is_same_v<F, float> || std::is_void_v<F>, "float32 views or untyped ones");
  AttentionTensors<F> a;
  if constexpr (std::is_void_v<F>) a.t = float_type_of(c.in, 0);
  auto in = [&](size_t k, int64_t n, const char* name) { return static_cast<const F*>(c.in_any(k, n, a.t, name)); };
  auto out = [&](size_t k, int64_t n, const char* name) { return static_cast<F*>(c.out_any(k, n, a.t, name)); };
  const size_t q = backward ? 1 : 0;  // Q, K, V follow dO in the backward
  if (backward) a.dO = in(0, d.q_elems, "dO");
  a.Q = in(q, d.q_elems, "Q");
  a.K = in(q + 1, d.kv_elems, "K");
  a.V = in(q + 2, d.kv_elems, "V");
  if (backward) {
    a.saved_O = in(4, d.q_elems, "O");
    a.saved_lse = c.in_f32(5, d.lse_elems, "lse");
  }
  a.mask = key_mask_arg(c, backward ? 6 : 3, d);
  check_mask(a.mask);
  if (backward) {
    a.dQ = out(0, d.q_elems, "dQ");
    a.dK = out(1, d.kv_elems, "dK");
    a.dV = out(2, d.kv_elems, "dV");
  } else {
    a.O = out(0, d.q_elems, "O");
    a.lse = c.out_f32(1, d.lse_elems, "lse");
  }
  return a;
}

}  // namespace vw
