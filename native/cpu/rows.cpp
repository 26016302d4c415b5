// Row movement: strided 2-D copies, row gathers and their scatter-add adjoint, and im2col for patch
// embeddings.
//   copy_2d:          dst[dstOffset + r*dstStride + j] (=|+=) src[srcOffset + r*srcStride + j], r < rows, j < cols
//                     (the adjoint of a strided slice is copy_2d back with accumulate = 1); rows run in
//                     parallel, so destination rows must not overlap (dstStride >= cols, checked) and the
//                     source region must not overlap the destination region unless it is the same one
//   gather_rows:      dst[i, :] = src[idx[i], :]             src [S, C], idx i32 [n], dst [n, C]
//   scatter_add_rows: dSrc[idx[i], :] += dDst[i, :]          the backward of gather_rows (several i may
//                     share a row: the rows are grouped by destination after a stable sort of idx, and each
//                     group is summed in double, in order of i, by one thread: race-free and run-to-run
//                     identical whatever the thread count)
//   im2col:           img [B, Cin, H, W] -> cols [B, P, Cin*p*p], non-overlapping p x p patches (stride p),
//                     patch P = py*(W/p) + px, column c*p*p + ky*p + kx: a Conv2d weight [D, Cin, p, p]
//                     flattened to [D, Cin*p*p] gives the patch embedding cols W^T. No backward (pixels are
//                     inputs, not parameters).
#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "work_split.h"
#include "ops_cpu.h"
#include "parallel.h"

namespace vw::cpu {

void check_row_ids(const OpCall& c, const int32_t* idx, int64_t n, int64_t S, const char* idx_name) {
  for (int64_t i = 0; i < n; ++i)
    if (idx[i] < 0 || idx[i] >= S) throw_range_error("[", c.op, "] ", idx_name, "[", i, "] = ", idx[i], " is outside [0, ", S, ")");
}

void gather_rows_f32(const float* src, const int32_t* idx, float* dst, int64_t n, int64_t C) {
  if (C == 0) return;
  parallel_for(n, row_grain(C), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) std::memcpy(dst + i * C, src + idx[i] * C, sizeof(float) * static_cast<size_t>(C));
  });
}

void scatter_add_rows_f32(const float* ddst, const int32_t* idx, float* dsrc, int64_t S, int64_t n, int64_t C) {
  (void)S;  // ids were checked against it
  if (n == 0 || C == 0) return;
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return idx[a] < idx[b]; });
  // Parts split the sorted positions evenly (balanced by rows, not by groups); a part owns the groups
  // that start inside it, running past its end if needed.
  parallel_for(n, row_grain(C), [&](int64_t b, int64_t e) {
    std::vector<double> acc;
    int64_t p = b;
    while (p < e && p > 0 && idx[order[p]] == idx[order[p - 1]]) ++p;
    while (p < e) {
      const int32_t v = idx[order[p]];
      int64_t q = p + 1;
      while (q < n && idx[order[q]] == v) ++q;
      float* d = dsrc + v * C;
      if (q == p + 1) {
        const float* s = ddst + order[p] * C;
        for (int64_t j = 0; j < C; ++j) d[j] += s[j];
      } else {
        acc.assign(d, d + C);
        double* a = acc.data();
        for (int64_t k = p; k < q; ++k) {
          const float* s = ddst + order[k] * C;
#pragma omp simd
          for (int64_t j = 0; j < C; ++j) a[j] += s[j];
        }
        for (int64_t j = 0; j < C; ++j) d[j] = static_cast<float>(a[j]);
      }
      p = q;
    }
  });
}

void copy_2d_cpu(const OpCall& c) {
  const int64_t rows = size_arg(c, 0, "rows"), cols = size_arg(c, 1, "cols");
  const int64_t s_stride = size_arg(c, 2, "srcStride"), d_stride = size_arg(c, 3, "dstStride");
  const int64_t s_off = size_arg(c, 4, "srcOffset"), d_off = size_arg(c, 5, "dstOffset");
  const bool acc = flag_arg(c, 6, "accumulate");
  if (rows > 1 && d_stride < cols)
    throw_range_error("[", c.op, "] dstStride (", d_stride, ") must be >= cols (", cols, ") when rows > 1: destination rows would overlap");
  const bool empty = rows == 0 || cols == 0;
  // Elements each buffer must hold: offset + (rows - 1) * stride + cols.
  auto extent = [&](int64_t off, int64_t stride) { return empty ? 0 : add_elems(c, add_elems(c, off, numel(c, {rows - 1, stride})), cols); };
  const float* src = c.in_f32(0, extent(s_off, s_stride), "src");
  float* dst = c.out_f32(0, extent(d_off, d_stride), "dst");
  if (empty) return;
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* s = src + s_off + r * s_stride;
      float* d = dst + d_off + r * d_stride;
      if (acc) {
#pragma omp simd
        for (int64_t j = 0; j < cols; ++j) d[j] += s[j];
      } else {
        std::memmove(d, s, sizeof(float) * static_cast<size_t>(cols));
      }
    }
  });
}

void gather_rows_cpu(const OpCall& c) {
  const int64_t S = size_arg(c, 0, "S"), n = size_arg(c, 1, "n"), C = size_arg(c, 2, "C");
  const float* src = c.in_f32(0, numel(c, {S, C}), "src");
  const int32_t* idx = c.in_i32(1, n, "idx");
  float* dst = c.out_f32(0, numel(c, {n, C}), "dst");
  check_row_ids(c, idx, n, S, "idx");
  gather_rows_f32(src, idx, dst, n, C);
}

void scatter_add_rows_cpu(const OpCall& c) {
  const int64_t S = size_arg(c, 0, "S"), n = size_arg(c, 1, "n"), C = size_arg(c, 2, "C");
  const float* ddst = c.in_f32(0, numel(c, {n, C}), "dDst");
  const int32_t* idx = c.in_i32(1, n, "idx");
  float* dsrc = c.out_f32(0, numel(c, {S, C}), "dSrc");
  check_row_ids(c, idx, n, S, "idx");
  scatter_add_rows_f32(ddst, idx, dsrc, S, n, C);
}

void im2col_cpu(const OpCall& c) {
  const int64_t B = size_arg(c, 0, "B"), Cin = size_arg(c, 1, "Cin"), H = size_arg(c, 2, "H"), W = size_arg(c, 3, "W");
  const int64_t p = size_arg(c, 4, "p");
  if (p < 1) throw_range_error("[", c.op, "] patch size p must be >= 1, got ", p);
  if (H % p != 0 || W % p != 0)
    throw_range_error("[", c.op, "] H (", H, ") and W (", W, ") must be multiples of the patch size p (", p, ")");
  const int64_t Hp = H / p, Wp = W / p, P = Hp * Wp, K = numel(c, {Cin, p, p});
  const float* img = c.in_f32(0, numel(c, {B, Cin, H, W}), "img");
  float* cols = c.out_f32(0, numel(c, {B, P, K}), "cols");
  if (K == 0) return;
  parallel_for(B * P, row_grain(K), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / P, py = (r % P) / Wp, px = r % Wp;
      float* out = cols + r * K;
      for (int64_t ch = 0; ch < Cin; ++ch) {
        const float* plane = img + ((b * Cin + ch) * H + py * p) * W + px * p;
        for (int64_t ky = 0; ky < p; ++ky) std::memcpy(out + (ch * p + ky) * p, plane + ky * W, sizeof(float) * static_cast<size_t>(p));
      }
    }
  });
}

}  // namespace vw::cpu
