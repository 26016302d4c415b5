// RMSNorm and LayerNorm over rows of C on CUDA (semantics, formulas and derivations: the CPU backend's
// rms_norm.cpp and layer_norm.cpp; the same double row sums, the same float expressions).
//   Row passes: a warp per row when C <= kWarpRowMax, else a block of kThreads per row.
//   Weight gradients (dw, db, "+=") are column sums in double with a fixed split and no atomics
//   (engine_common.cuh column_sums), so they are run-to-run bit-identical.
// Dtypes: RMSNorm: X, Y, dY, dX float32 or bfloat16 (the same one), w float32 or bfloat16 (either, so a bf16
// model copy or the fp32 master can be passed), rstd and dw always float32. LayerNorm: float32 only.
// rms_norm_backward runs its dw pass before dx, so dX may alias dY there; layer_norm_backward needs them
// distinct (as on the CPU).
#include "../../core/norm_args.h"
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
// f(Tag<T>{}, Tag<W>{}) with T the float type of RMSNorm's activations and W that of its weight.
template <typename F>
void dispatch_rms(const RmsNormArgs& a, F&& f) {
  dispatch_float(a.t, [&](auto ttag) { dispatch_float(a.tw, [&](auto wtag) { f(ttag, wtag); }); });
}

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

}  // namespace

// ------------------------------------------------------------------------------------------- entry points

void rms_norm_forward_cuda(const OpCall& c) {
  const char* op = c.op;
  const RmsNormArgs a = read_rms_norm_forward(c, true);
  Context& ctx = context(op);
  if (a.R <= 0) return;
  dispatch_rms(a, [&](auto ttag, auto wtag) {
    using T = typename decltype(ttag)::type;
    using W = typename decltype(wtag)::type;
    launch_team_rows(op, ctx, a.R, a.C, rms_forward_kernel<32, T, W>, rms_forward_kernel<kThreads, T, W>,
                     static_cast<const T*>(a.x), static_cast<const W*>(a.w), static_cast<T*>(a.out), a.rstd, a.R, a.C, a.eps);
  });
}

void rms_norm_backward_cuda(const OpCall& c) {
  const char* op = c.op;
  const RmsNormArgs a = read_rms_norm_backward(c, true);
  Context& ctx = context(op);
  if (a.C <= 0) return;
  // dw first: it reads dy, which dx may overwrite.
  dispatch_float(a.t, [&](auto ttag) {
    using T = typename decltype(ttag)::type;
    column_sums<1>(op, ctx, a.R, a.C, RmsDwTerm<T>{static_cast<const T*>(a.dy), static_cast<const T*>(a.x), a.saved_rstd, a.C},
                   AddFloatStore{a.dw});
  });
  if (a.R == 0) return;
  dispatch_rms(a, [&](auto ttag, auto wtag) {
    using T = typename decltype(ttag)::type;
    using W = typename decltype(wtag)::type;
    launch_team_rows(op, ctx, a.R, a.C, rms_backward_dx_kernel<32, T, W>, rms_backward_dx_kernel<kThreads, T, W>,
                     static_cast<const T*>(a.dy), static_cast<const T*>(a.x), static_cast<const W*>(a.w), a.saved_rstd,
                     static_cast<T*>(a.out), a.R, a.C);
  });
}

void layer_norm_forward_cuda(const OpCall& c) {
  const char* op = c.op;
  const LayerNormArgs a = read_layer_norm_forward(c);
  Context& ctx = context(op);
  if (a.R == 0) return;
  launch_team_rows(op, ctx, a.R, a.C, layer_norm_forward_kernel<32>, layer_norm_forward_kernel<kThreads>, a.x, a.w, a.b,
                   a.out, a.mean, a.rstd, a.R, a.C, a.eps);
}

void layer_norm_backward_cuda(const OpCall& c) {
  const char* op = c.op;
  const LayerNormArgs a = read_layer_norm_backward(c);
  const int64_t R = a.R, C = a.C;
  Context& ctx = context(op);
  DeviceBuffer mean_split(op, ctx, sizeof(float2) * static_cast<size_t>(R), nullptr);
  float2* ms = mean_split.as<float2>();
  if (R > 0)
    launch_team_rows(op, ctx, R, C, layer_norm_backward_dx_kernel<32>, layer_norm_backward_dx_kernel<kThreads>, a.dy, a.x,
                     a.w, a.saved_rstd, a.out, ms, R, C);
  column_sums<2>(op, ctx, R, C, LayerNormDwDbTerm{a.dy, a.x, ms, a.saved_rstd, C}, LayerNormDwDbStore{a.dw, a.db});
}

}  // namespace vw::cuda
