// Parameters and buffers of rms_norm_forward/backward and layer_norm_forward/backward (native/core/ops.def),
// read and checked once for both backends, so the CPU and CUDA ops validate in the same order with the
// same messages. Rows of C; R rows.
#pragma once
#include <cmath>
#include <cstdint>

#include "op_args.h"

namespace vw {

// Both norms: C >= 1 (a row's statistics are a mean over its C values), eps finite and >= 0.
inline void norm_dims(const OpCall& c, int64_t& R, int64_t& C) {
  R = size_arg(c, 0, "R"), C = size_arg(c, 1, "C");
  if (C < 1) throw_range_error("[", c.op, "] C must be >= 1, got ", C);
}
inline double norm_eps(const OpCall& c) {
  const double eps = c.fp(0, "eps");
  if (!(eps >= 0) || !std::isfinite(eps)) throw_range_error("[", c.op, "] eps must be finite and >= 0, got ", eps);
  return eps;
}

// RMSNorm: x, y, dy, dx of dtype t, w of dtype tw (both float32 unless the backend takes bfloat16:
// `bf16` = true, then each is the dtype of its buffer), rstd and dw float32.
struct RmsNormArgs {
  int64_t R = 0, C = 0, n = 0;  // n = R C
  DType t = DType::F32, tw = DType::F32;
  double eps = 0;               // forward
  const void* x = nullptr;
  const void* w = nullptr;
  const void* dy = nullptr;     // backward
  void* out = nullptr;          // forward: y; backward: dx
  float* rstd = nullptr;        // forward: written
  const float* saved_rstd = nullptr;  // backward: the forward's rstd
  float* dw = nullptr;          // backward (+=)
};

// in [x[R,C], w[C]] out [y, rstd[R]], i [R, C] f [eps].
inline RmsNormArgs read_rms_norm_forward(const OpCall& c, bool bf16) {
  RmsNormArgs a;
  // Checked sizes and product (R * C must not wrap past the buffer checks).
  norm_dims(c, a.R, a.C);
  a.n = numel(c, {a.R, a.C});
  a.eps = norm_eps(c);
  if (bf16) a.t = float_type_of(c.in, 0), a.tw = float_type_of(c.in, 1);
  a.x = c.in_any(0, a.n, a.t, "x");
  a.w = c.in_any(1, a.C, a.tw, "w");
  a.out = c.out_any(0, a.n, a.t, "y");
  a.rstd = c.out_f32(1, a.R, "rstd");
  return a;
}

// in [dy, x, w, rstd] out [dx, dw +=], i [R, C].
inline RmsNormArgs read_rms_norm_backward(const OpCall& c, bool bf16) {
  RmsNormArgs a;
  norm_dims(c, a.R, a.C);
  a.n = numel(c, {a.R, a.C});
  if (bf16) a.t = float_type_of(c.in, 0), a.tw = float_type_of(c.in, 2);
  a.dy = c.in_any(0, a.n, a.t, "dy");
  a.x = c.in_any(1, a.n, a.t, "x");
  a.w = c.in_any(2, a.C, a.tw, "w");
  a.saved_rstd = c.in_f32(3, a.R, "rstd");
  a.out = c.out_any(0, a.n, a.t, "dx");
  a.dw = c.out_f32(1, a.C, "dw");
  return a;
}

// LayerNorm, float32 only.
struct LayerNormArgs {
  int64_t R = 0, C = 0;
  double eps = 0;                    // forward
  const float* x = nullptr;
  const float* w = nullptr;
  const float* b = nullptr;          // forward
  const float* dy = nullptr;         // backward
  const float* saved_rstd = nullptr; // backward: the forward's rstd (its mean is recomputed)
  float* out = nullptr;              // forward: Y; backward: dX
  float* mean = nullptr;             // forward
  float* rstd = nullptr;             // forward
  float* dw = nullptr;               // backward (+=)
  float* db = nullptr;               // backward (+=)
};


// in [X[R,C], w[C], b[C]] out [Y, mean[R], rstd[R]], i [R, C] f [eps].
inline LayerNormArgs read_layer_norm_forward(const OpCall& c) {
  LayerNormArgs a;
  norm_dims(c, a.R, a.C);
  a.eps = norm_eps(c);
  a.x = c.in_f32(0, numel(c, {a.R, a.C}), "X");
  a.w = c.in_f32(1, a.C, "w");
  a.b = c.in_f32(2, a.C, "b");
  a.out = c.out_f32(0, numel(c, {a.R, a.C}), "Y");
  a.mean = c.out_f32(1, a.R, "mean");
  a.rstd = c.out_f32(2, a.R, "rstd");
  return a;
}

// in [dY, X, w, mean, rstd] out [dX, dw +=, db +=], i [R, C]. The saved mean is only checked for its size:
// both backends recompute it in double.
inline LayerNormArgs read_layer_norm_backward(const OpCall& c) {
  LayerNormArgs a;
  norm_dims(c, a.R, a.C);
  const int64_t RC = numel(c, {a.R, a.C});
  a.dy = c.in_f32(0, RC, "dY");
  a.x = c.in_f32(1, RC, "X");
  a.w = c.in_f32(2, a.C, "w");
  c.in_f32(3, a.R, "mean");
  a.saved_rstd = c.in_f32(4, a.R, "rstd");
  a.out = c.out_f32(0, RC, "dX");
  a.dw = c.out_f32(1, a.C, "dw");
  a.db = c.out_f32(2, a.C, "db");
  return a;
}

}  // namespace vw
