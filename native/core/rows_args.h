// Parameters and buffers of the row-movement ops (native/core/ops.def: embedding_forward/backward,
// copy_2d, gather_rows, scatter_add_rows, im2col), read and checked once for both backends, so the CPU
// and CUDA ops validate in the same order with the same messages. All float32.
#pragma once
#include <cstdint>

#include "op_args.h"

namespace vw {

// A row gather dst[i, :] = src[idx[i], :] (src [S, C], idx i32 [n], dst [n, C]) or, `scatter`, its adjoint
// dst[idx[i], :] += src[i, :] (src [n, C], dst [S, C]). The ids are checked against [0, S) by the
// backend (on the host or the device), naming `idx_name`.
struct RowMoveArgs {
  int64_t S = 0, n = 0, C = 0;
  bool scatter = false;
  const char* idx_name = "idx";
  const float* src = nullptr;
  const int32_t* idx = nullptr;
  float* dst = nullptr;
};

// gather_rows in [src[S,C], idx] out [dst[n,C]]; scatter_add_rows (scatter) in [dDst[n,C], idx] out
// [dSrc[S,C]]; i [S, n, C].
inline RowMoveArgs read_gather_rows(const OpCall& c, bool scatter) {
  RowMoveArgs a;
  a.scatter = scatter;
  a.S = size_arg(c, 0, "S"), a.n = size_arg(c, 1, "n"), a.C = size_arg(c, 2, "C");
  a.src = c.in_f32(0, numel(c, {scatter ? a.n : a.S, a.C}), scatter ? "dDst" : "src");
  a.idx = c.in_i32(1, a.n, "idx");
  a.dst = c.out_f32(0, numel(c, {scatter ? a.S : a.n, a.C}), scatter ? "dSrc" : "dst");
  return a;
}

// embedding_forward in [ids[n], W[V,D]] out [Y[n,D]] (a gather of W's rows); embedding_backward
// (backward) in [ids, dY[n,D]] out [dW[V,D]] (the scatter-add of dY into dW); i [n, V, D]: S = V, C = D.
inline RowMoveArgs read_embedding(const OpCall& c, bool backward) {
  RowMoveArgs a;
  a.scatter = backward;
  a.idx_name = "ids";
  a.n = size_arg(c, 0, "n"), a.S = size_arg(c, 1, "V"), a.C = size_arg(c, 2, "D");
  a.idx = c.in_i32(0, a.n, "ids");
  a.src = c.in_f32(1, numel(c, {backward ? a.n : a.S, a.C}), backward ? "dY" : "W");
  a.dst = c.out_f32(0, numel(c, {backward ? a.S : a.n, a.C}), backward ? "dW" : "Y");
  return a;
}

// copy_2d: dst[d_off + r d_stride + j] (=|+=) src[s_off + r s_stride + j], r < rows, j < cols.
struct Copy2dArgs {
  int64_t rows = 0, cols = 0, s_stride = 0, d_stride = 0, s_off = 0, d_off = 0;
  bool acc = false;
  bool empty = true;  // rows == 0 || cols == 0
  const float* src = nullptr;
  float* dst = nullptr;
};

inline Copy2dArgs read_copy_2d(const OpCall& c) {
  Copy2dArgs a;
  a.rows = size_arg(c, 0, "rows"), a.cols = size_arg(c, 1, "cols");
  a.s_stride = size_arg(c, 2, "srcStride"), a.d_stride = size_arg(c, 3, "dstStride");
  a.s_off = size_arg(c, 4, "srcOffset"), a.d_off = size_arg(c, 5, "dstOffset");
  a.acc = flag_arg(c, 6, "accumulate");
  if (a.rows > 1 && a.d_stride < a.cols)
    throw_range_error("[", c.op, "] dstStride (", a.d_stride, ") must be >= cols (", a.cols, ") when rows > 1: destination rows would overlap");
  a.empty = a.rows == 0 || a.cols == 0;
  // Elements each buffer must hold: offset + (rows - 1) * stride + cols.
  auto extent = [&](int64_t off, int64_t stride) {
    return a.empty ? 0 : add_elems(c, add_elems(c, off, numel(c, {a.rows - 1, stride})), a.cols);
  };
  a.src = c.in_f32(0, extent(a.s_off, a.s_stride), "src");
  a.dst = c.out_f32(0, extent(a.d_off, a.d_stride), "dst");
  return a;
}

// im2col: img [B, Cin, H, W] -> cols [B, P, K], P = (H/p)(W/p) patches of K = Cin p p columns.
struct Im2colArgs {
  int64_t B = 0, Cin = 0, H = 0, W = 0, p = 1, Wp = 0, P = 0, K = 0;
  const float* img = nullptr;
  float* cols = nullptr;
};

inline Im2colArgs read_im2col(const OpCall& c) {
  Im2colArgs a;
  a.B = size_arg(c, 0, "B"), a.Cin = size_arg(c, 1, "Cin"), a.H = size_arg(c, 2, "H"), a.W = size_arg(c, 3, "W");
  a.p = size_arg(c, 4, "p");
  if (a.p < 1) throw_range_error("[", c.op, "] patch size p must be >= 1, got ", a.p);
  if (a.H % a.p != 0 || a.W % a.p != 0)
    throw_range_error("[", c.op, "] H (", a.H, ") and W (", a.W, ") must be multiples of the patch size p (", a.p, ")");
  a.Wp = a.W / a.p, a.P = (a.H / a.p) * a.Wp, a.K = numel(c, {a.Cin, a.p, a.p});
  a.img = c.in_f32(0, numel(c, {a.B, a.Cin, a.H, a.W}), "img");
  a.cols = c.out_f32(0, numel(c, {a.B, a.P, a.K}), "cols");
  return a;
}

}  // namespace vw
