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

#include "../core/error_flags.h"
#include "work_split.h"
#include "ops_cpu.h"
#include "parallel.h"

namespace vw::cpu {

namespace {

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

}  // namespace

void copy_2d_cpu(const OpCall& c) {
  const Copy2dArgs a = read_copy_2d(c);
  if (a.empty) return;
  const int64_t cols = a.cols;
  parallel_for(a.rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* s = a.src + a.s_off + r * a.s_stride;
      float* d = a.dst + a.d_off + r * a.d_stride;
      if (a.acc) {
#pragma omp simd
        for (int64_t j = 0; j < cols; ++j) d[j] += s[j];
      } else {
        std::memmove(d, s, sizeof(float) * static_cast<size_t>(cols));
      }
    }
  });
}

// The ids are checked first (native/core/error_flags.h): in sync mode a bad one is raised here, before any
// output is written; in async mode the error is raised at the next read, and the op skips the bad ids as CUDA's
// kernels do (a zero row in a gather, nothing added in a scatter), so no unset memory reaches later ops.
void move_rows(const OpCall& c, const RowMoveArgs& a) {
  if (!error_flags().check_on_host(ValueCheck::ids(c.op, a.idx_name, a.S), a.idx, a.n)) {
    for (int64_t i = 0; i < a.n; ++i) {
      const int64_t v = a.idx[i];
      const bool ok = v >= 0 && v < a.S;
      if (a.scatter) {
        if (ok)
          for (int64_t j = 0; j < a.C; ++j) a.dst[v * a.C + j] += a.src[i * a.C + j];
      } else if (ok) {
        std::memcpy(a.dst + i * a.C, a.src + v * a.C, sizeof(float) * static_cast<size_t>(a.C));
      } else {
        std::memset(a.dst + i * a.C, 0, sizeof(float) * static_cast<size_t>(a.C));
      }
    }
    return;
  }
  if (a.scatter)
    scatter_add_rows_f32(a.src, a.idx, a.dst, a.S, a.n, a.C);
  else
    gather_rows_f32(a.src, a.idx, a.dst, a.n, a.C);
}

void gather_rows_cpu(const OpCall& c) { move_rows(c, read_gather_rows(c, false)); }
void scatter_add_rows_cpu(const OpCall& c) { move_rows(c, read_gather_rows(c, true)); }

void im2col_cpu(const OpCall& c) {
  const Im2colArgs a = read_im2col(c);
  const int64_t Cin = a.Cin, H = a.H, W = a.W, p = a.p, P = a.P, Wp = a.Wp, K = a.K;
  if (K == 0) return;
  parallel_for(a.B * P, row_grain(K), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / P, py = (r % P) / Wp, px = r % Wp;
      float* out = a.cols + r * K;
      for (int64_t ch = 0; ch < Cin; ++ch) {
        const float* plane = a.img + ((b * Cin + ch) * H + py * p) * W + px * p;
        for (int64_t ky = 0; ky < p; ++ky) std::memcpy(out + (ch * p + ky) * p, plane + ky * W, sizeof(float) * static_cast<size_t>(p));
      }
    }
  });
}

}  // namespace vw::cpu
