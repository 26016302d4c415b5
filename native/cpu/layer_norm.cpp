// LayerNorm over rows of C (PyTorch semantics, biased variance):
//   y = (x - mean) * rstd * w + b,   rstd = 1 / sqrt(var + eps),   var = mean((x - mean)^2),
// with the mean and the centred second moment summed in double (two passes, no E[x^2] - E[x]^2
// cancellation). Forward saves mean and rstd for the backward. x - mean is formed against the double mean
// split into two floats (hi + lo): a float32 mean alone is off by up to |mean| 2^-25, which is not small
// against the spread of a row whose mean is large (for x ~ 1000 + N(0, 1), xhat would be off by ~3e-5).
// Backward: with xhat = (x - mean) rstd and g = dy * w, since d xhat_j / d x_k = rstd (delta_jk - 1/C
// - xhat_j xhat_k / C),
//   dx = rstd (g - mean(g) - xhat mean(g xhat)),   dw += sum_rows dy xhat,   db += sum_rows dy.
// For the reason above the backward recomputes the row mean in double (one more pass over a row it reads
// anyway) and uses the saved float32 mean only as a check of its size; rstd is used as saved.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/norm_args.h"
#include "work_split.h"
#include "ops_cpu.h"
#include "parallel.h"

namespace vw::cpu {

namespace {

double row_mean(const float* x, int64_t C) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < C; ++j) s += x[j];
  return s / static_cast<double>(C);
}

// A double as hi + lo floats: (x - hi) - lo is x - v to float rounding of the result.
struct Split {
  float hi, lo;
  explicit Split(double v) : hi(static_cast<float>(v)), lo(static_cast<float>(v - static_cast<float>(v))) {}
};

}  // namespace

void layer_norm_forward_cpu(const OpCall& c) {
  const LayerNormArgs a = read_layer_norm_forward(c);
  const int64_t R = a.R, C = a.C;
  const double eps = a.eps;
  const float *x = a.x, *w = a.w, *b = a.b;
  float *y = a.out, *mean = a.mean, *rstd = a.rstd;
  parallel_for(R, row_grain(C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * C;
      const double mu = row_mean(xr, C);
      double ss = 0;
#pragma omp simd reduction(+ : ss)
      for (int64_t j = 0; j < C; ++j) {
        const double d = xr[j] - mu;
        ss += d * d;
      }
      const Split m(mu);
      const float rs = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(C) + eps));
      mean[r] = m.hi;
      rstd[r] = rs;
      float* yr = y + r * C;
      for (int64_t j = 0; j < C; ++j) yr[j] = ((xr[j] - m.hi) - m.lo) * rs * w[j] + b[j];
    }
  });
}

void layer_norm_backward_cpu(const OpCall& c) {
  const LayerNormArgs a = read_layer_norm_backward(c);
  const int64_t R = a.R, C = a.C;
  const float *dy = a.dy, *x = a.x, *w = a.w, *rstd = a.saved_rstd;
  float *dx = a.out, *dw = a.dw, *db = a.db;
  // dw, db reduce over rows: fixed row chunks (reduction_chunks) each sum [dw | db] in double privately,
  // merged in chunk order, so the result is bit-identical whatever the thread count.
  const int64_t chunks = reduction_chunks(R, C), rows_per = (R + chunks - 1) / chunks;
  std::vector<double> partial(static_cast<size_t>(chunks * 2 * C), 0.0);
  parallel_for(chunks, 1, [&](int64_t q0, int64_t q1) {
    for (int64_t ch = q0; ch < q1; ++ch) {
      double *adw = partial.data() + ch * 2 * C, *adb = adw + C;
      for (int64_t r = ch * rows_per; r < std::min(R, (ch + 1) * rows_per); ++r) {
        const float *xr = x + r * C, *dyr = dy + r * C;
        const Split m(row_mean(xr, C));
        const float rs = rstd[r];
        double sg = 0, sgx = 0;
#pragma omp simd reduction(+ : sg, sgx)
        for (int64_t j = 0; j < C; ++j) {
          const float g = dyr[j] * w[j], xh = ((xr[j] - m.hi) - m.lo) * rs;
          sg += g;
          sgx += static_cast<double>(g) * xh;
        }
        const float mg = static_cast<float>(sg / static_cast<double>(C)), mgx = static_cast<float>(sgx / static_cast<double>(C));
        float* dxr = dx + r * C;
#pragma omp simd
        for (int64_t j = 0; j < C; ++j) {
          const float xh = ((xr[j] - m.hi) - m.lo) * rs;
          dxr[j] = rs * (dyr[j] * w[j] - mg - xh * mgx);
          adw[j] += static_cast<double>(dyr[j]) * xh;
          adb[j] += dyr[j];
        }
      }
    }
  });
  for (int64_t j = 0; j < C; ++j) {
    double sw = 0, sb = 0;
    for (int64_t ch = 0; ch < chunks; ++ch) {
      sw += partial[ch * 2 * C + j];
      sb += partial[ch * 2 * C + C + j];
    }
    dw[j] = static_cast<float>(dw[j] + sw);
    db[j] = static_cast<float>(db[j] + sb);
  }
}

}  // namespace vw::cpu
