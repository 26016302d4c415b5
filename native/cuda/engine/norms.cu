// RMSNorm and LayerNorm over rows of C on CUDA (semantics, formulas and derivations: the CPU backend's
// rms_norm.cpp and layer_norm.cpp; the same double row sums, the same float expressions).
//   Row passes: a warp per row when C <= kWarpRowMax, else a block of kThreads per row.
//   Weight gradients (dw, db, "+=") are column sums in double with a fixed split and no atomics
//   (engine_common.cuh column_sums), so they are run-to-run bit-identical.
// Dtypes: RMSNorm: X, Y, dY, dX float32 or bfloat16 (the same one), w float32 or bfloat16 (either, so a bf16
// model copy or the fp32 master can be passed), rstd and dw always float32. LayerNorm: float32 only.
// rms_norm_backward runs its dw pass before dx, so dX may alias dY there; layer_norm_backward needs them
// distinct (as on the CPU).
#include "engine_common.cuh"

namespace vw::cuda {

namespace {

using namespace eng;

// ------------------------------------------------------------------------------------------- RMSNorm

template <int TEAM, typename T, typename W>
__global__ void __launch_bounds__(kThreads)
    rms_forward_kernel(const T* __restrict__ x, const W* __restrict__ w, T* __restrict__ y, float* __restrict__ rstd,
                       int64_t R, int64_t C, double eps) {
  int lane;
  int64_t first, step;
  team_coords<TEAM>(lane, first, step);
  for (int64_t r = first; r < R; r += step) {
    const T* xr = x + r * C;
    double ss = 0;
    for (int64_t j = lane; j < C; j += TEAM) {
      const double v = to_float(xr[j]);
      ss += v * v;
    }
    ss = team_reduce<TEAM>(ss, SumOp{}, 0.0);
    const float rs = static_cast<float>(1.0 / sqrt(ss / static_cast<double>(C) + eps));
    if (lane == 0) rstd[r] = rs;
    T* yr = y + r * C;
    for (int64_t j = lane; j < C; j += TEAM) yr[j] = from_float<T>(to_float(xr[j]) * rs * to_float(w[j]));
  }
}

// dx = r (dy * w) - r^3 x (sum_j dy_j w_j x_j) / C, in double as the CPU.
template <int TEAM, typename T, typename W>
__global__ void __launch_bounds__(kThreads)
    rms_backward_dx_kernel(const T* __restrict__ dy, const T* __restrict__ x, const W* __restrict__ w,
                           const float* __restrict__ rstd, T* dx, int64_t R, int64_t C) {
  int lane;
  int64_t first, step;
  team_coords<TEAM>(lane, first, step);
  for (int64_t r = first; r < R; r += step) {
    const T *xr = x + r * C, *dyr = dy + r * C;
    const double rs = rstd[r];
    double dot = 0;
    for (int64_t j = lane; j < C; j += TEAM)
      dot += static_cast<double>(to_float(dyr[j])) * static_cast<double>(to_float(w[j])) * static_cast<double>(to_float(xr[j]));
    dot = team_reduce<TEAM>(dot, SumOp{}, 0.0);
    const double k = rs * rs * rs * dot / static_cast<double>(C);
    T* dxr = dx + r * C;
    for (int64_t j = lane; j < C; j += TEAM) {
      const double d = to_float(dyr[j]), wj = to_float(w[j]), xj = to_float(xr[j]);
      dxr[j] = from_float<T>(static_cast<float>(rs * d * wj - k * xj));
    }
  }
}

template <typename T>
struct RmsDwTerm {
  const T* dy;
  const T* x;
  const float* rstd;
  int64_t C;
  __device__ void operator()(int64_t r, int64_t j, double (&v)[1]) const {
    v[0] = static_cast<double>(to_float(dy[r * C + j])) * static_cast<double>(to_float(x[r * C + j])) * static_cast<double>(rstd[r]);
  }
};
struct AddFloatStore {  // dw[j] += float(s): the CPU's float add
  float* out;
  __device__ void operator()(int64_t j, const double (&s)[1]) const { out[j] += static_cast<float>(s[0]); }
};

// ------------------------------------------------------------------------------------------- LayerNorm

template <int TEAM>
__device__ __forceinline__ double row_mean(const float* xr, int64_t C, int lane) {
  double s = 0;
  for (int64_t j = lane; j < C; j += TEAM) s += xr[j];
  return team_reduce<TEAM>(s, SumOp{}, 0.0) / static_cast<double>(C);
}

template <int TEAM>
__global__ void __launch_bounds__(kThreads)
    layer_norm_forward_kernel(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,
                              float* __restrict__ y, float* __restrict__ mean, float* __restrict__ rstd, int64_t R,
                              int64_t C, double eps) {
  int lane;
  int64_t first, step;
  team_coords<TEAM>(lane, first, step);
  for (int64_t r = first; r < R; r += step) {
    const float* xr = x + r * C;
    const double mu = row_mean<TEAM>(xr, C, lane);
    double ss = 0;
    for (int64_t j = lane; j < C; j += TEAM) {
      const double d = xr[j] - mu;
      ss += d * d;
    }
    ss = team_reduce<TEAM>(ss, SumOp{}, 0.0);
    const Split m = split(mu);
    const float rs = static_cast<float>(1.0 / sqrt(ss / static_cast<double>(C) + eps));
    if (lane == 0) {
      mean[r] = m.hi;
      rstd[r] = rs;
    }
    float* yr = y + r * C;
    for (int64_t j = lane; j < C; j += TEAM) yr[j] = ((xr[j] - m.hi) - m.lo) * rs * w[j] + b[j];
  }
}

// dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy w; the row mean recomputed in double and kept (as its
// hi + lo split) for the weight-gradient pass.
template <int TEAM>
__global__ void __launch_bounds__(kThreads)
    layer_norm_backward_dx_kernel(const float* __restrict__ dy, const float* __restrict__ x, const float* __restrict__ w,
                                  const float* __restrict__ rstd, float* __restrict__ dx, float2* __restrict__ mean_split,
                                  int64_t R, int64_t C) {
  int lane;
  int64_t first, step;
  team_coords<TEAM>(lane, first, step);
  for (int64_t r = first; r < R; r += step) {
    const float *xr = x + r * C, *dyr = dy + r * C;
    const Split m = split(row_mean<TEAM>(xr, C, lane));
    const float rs = rstd[r];
    double sg = 0, sgx = 0;
    for (int64_t j = lane; j < C; j += TEAM) {
      const float g = dyr[j] * w[j], xh = ((xr[j] - m.hi) - m.lo) * rs;
      sg += g;
      sgx += static_cast<double>(g) * xh;
    }
    sg = team_reduce<TEAM>(sg, SumOp{}, 0.0);
    sgx = team_reduce<TEAM>(sgx, SumOp{}, 0.0);
    const float mg = static_cast<float>(sg / static_cast<double>(C)), mgx = static_cast<float>(sgx / static_cast<double>(C));
    if (lane == 0) mean_split[r] = make_float2(m.hi, m.lo);
    float* dxr = dx + r * C;
    for (int64_t j = lane; j < C; j += TEAM) {
      const float xh = ((xr[j] - m.hi) - m.lo) * rs;
      dxr[j] = rs * (dyr[j] * w[j] - mg - xh * mgx);
    }
  }
}

struct LayerNormDwDbTerm {
  const float* dy;
  const float* x;
  const float2* mean_split;
  const float* rstd;
  int64_t C;
  __device__ void operator()(int64_t r, int64_t j, double (&v)[2]) const {
    const float2 m = mean_split[r];
    const float d = dy[r * C + j], xh = ((x[r * C + j] - m.x) - m.y) * rstd[r];
    v[0] = static_cast<double>(d) * xh;
    v[1] = d;
  }
};
struct LayerNormDwDbStore {  // dw[j] = float(dw[j] + sw), db likewise: the CPU's adds in double
  float* dw;
  float* db;
  __device__ void operator()(int64_t j, const double (&s)[2]) const {
    dw[j] = static_cast<float>(static_cast<double>(dw[j]) + s[0]);
    db[j] = static_cast<float>(static_cast<double>(db[j]) + s[1]);
  }
};

void check_norm_dims(const OpCall& c, int64_t C) {
  if (C < 1) throw_range_error("[", c.op, "] C must be >= 1, got ", C);
}

}  // namespace

// ------------------------------------------------------------------------------------------- entry points

void rms_norm_forward_cuda(const OpCall& c) {
  const char* op = c.op;
  // Checked sizes and product, as the CPU op (R * C must not wrap past the buffer checks).
  const int64_t R = size_arg(c, 0, "R"), C = size_arg(c, 1, "C"), n = numel(c, {R, C});
  const double eps = c.fp(0, "eps");
  const DType t = float_type_of(c.in, 0), tw = float_type_of(c.in, 1);
  const void* x = c.in_any(0, n, t, "x");
  const void* w = c.in_any(1, C, tw, "w");
  void* y = c.out_any(0, n, t, "y");
  float* rstd = c.out_f32(1, R, "rstd");
  Context& ctx = context(op);
  if (R <= 0) return;
  const bool warp_rows = C <= kWarpRowMax;
  dispatch_float(t, [&](auto ttag) {
    using T = typename decltype(ttag)::type;
    dispatch_float(tw, [&](auto wtag) {
      using W = typename decltype(wtag)::type;
      const T* xp = static_cast<const T*>(x);
      const W* wp = static_cast<const W*>(w);
      T* yp = static_cast<T*>(y);
      if (warp_rows)
        launch(op, ctx, row_grid(ctx, R, true), kThreads, 0, rms_forward_kernel<32, T, W>, xp, wp, yp, rstd, R, C, eps);
      else
        launch(op, ctx, row_grid(ctx, R, false), kThreads, 0, rms_forward_kernel<kThreads, T, W>,
               xp, wp, yp, rstd, R, C, eps);
    });
  });
}

void rms_norm_backward_cuda(const OpCall& c) {
  const char* op = c.op;
  const int64_t R = size_arg(c, 0, "R"), C = size_arg(c, 1, "C"), n = numel(c, {R, C});
  const DType t = float_type_of(c.in, 0), tw = float_type_of(c.in, 2);
  const void* dy = c.in_any(0, n, t, "dy");
  const void* x = c.in_any(1, n, t, "x");
  const void* w = c.in_any(2, C, tw, "w");
  const float* rstd = c.in_f32(3, R, "rstd");
  void* dx = c.out_any(0, n, t, "dx");
  float* dw = c.out_f32(1, C, "dw");
  Context& ctx = context(op);
  if (C <= 0) return;
  const bool warp_rows = C <= kWarpRowMax;
  dispatch_float(t, [&](auto ttag) {
    using T = typename decltype(ttag)::type;
    const T* dyp = static_cast<const T*>(dy);
    const T* xp = static_cast<const T*>(x);
    // dw first: it reads dy, which dx may overwrite.
    column_sums<1>(op, ctx, R, C, RmsDwTerm<T>{dyp, xp, rstd, C}, AddFloatStore{dw});
    if (R == 0) return;
    dispatch_float(tw, [&](auto wtag) {
      using W = typename decltype(wtag)::type;
      const W* wp = static_cast<const W*>(w);
      T* dxp = static_cast<T*>(dx);
      if (warp_rows)
        launch(op, ctx, row_grid(ctx, R, true), kThreads, 0, rms_backward_dx_kernel<32, T, W>,
               dyp, xp, wp, rstd, dxp, R, C);
      else
        launch(op, ctx, row_grid(ctx, R, false), kThreads, 0, rms_backward_dx_kernel<kThreads, T, W>,
               dyp, xp, wp, rstd, dxp, R, C);
    });
  });
}

void layer_norm_forward_cuda(const OpCall& c) {
  const char* op = c.op;
  const int64_t R = size_arg(c, 0, "R"), C = size_arg(c, 1, "C");
  check_norm_dims(c, C);
  const double eps = c.fp(0, "eps");
  if (!(eps >= 0) || !std::isfinite(eps)) throw_range_error("[", op, "] eps must be finite and >= 0, got ", eps);
  const float* x = c.in_f32(0, numel(c, {R, C}), "X");
  const float* w = c.in_f32(1, C, "w");
  const float* b = c.in_f32(2, C, "b");
  float* y = c.out_f32(0, numel(c, {R, C}), "Y");
  float* mean = c.out_f32(1, R, "mean");
  float* rstd = c.out_f32(2, R, "rstd");
  Context& ctx = context(op);
  if (R == 0) return;
  if (C <= kWarpRowMax)
    launch(op, ctx, row_grid(ctx, R, true), kThreads, 0, layer_norm_forward_kernel<32>,
           x, w, b, y, mean, rstd, R, C, eps);
  else
    launch(op, ctx, row_grid(ctx, R, false), kThreads, 0, layer_norm_forward_kernel<kThreads>,
           x, w, b, y, mean, rstd, R, C, eps);
}

void layer_norm_backward_cuda(const OpCall& c) {
  const char* op = c.op;
  const int64_t R = size_arg(c, 0, "R"), C = size_arg(c, 1, "C");
  check_norm_dims(c, C);
  const int64_t RC = numel(c, {R, C});
  const float* dy = c.in_f32(0, RC, "dY");
  const float* x = c.in_f32(1, RC, "X");
  const float* w = c.in_f32(2, C, "w");
  c.in_f32(3, R, "mean");  // recomputed in double, as on the CPU
  const float* rstd = c.in_f32(4, R, "rstd");
  float* dx = c.out_f32(0, RC, "dX");
  float* dw = c.out_f32(1, C, "dw");
  float* db = c.out_f32(2, C, "db");
  Context& ctx = context(op);
  DeviceBuffer mean_split(op, ctx, sizeof(float2) * static_cast<size_t>(R), nullptr);
  float2* ms = mean_split.as<float2>();
  if (R > 0) {
    if (C <= kWarpRowMax)
      launch(op, ctx, row_grid(ctx, R, true), kThreads, 0, layer_norm_backward_dx_kernel<32>,
             dy, x, w, rstd, dx, ms, R, C);
    else
      launch(op, ctx, row_grid(ctx, R, false), kThreads, 0, layer_norm_backward_dx_kernel<kThreads>,
             dy, x, w, rstd, dx, ms, R, C);
  }
  column_sums<2>(op, ctx, R, C, LayerNormDwDbTerm{dy, x, ms, rstd, C}, LayerNormDwDbStore{dw, db});
}

}  // namespace vw::cuda
