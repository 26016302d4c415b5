// Fused visual-word KL on CUDA, forward and backward in one pass over row chunks (same semantics as
// native/cpu/visual_word_kl.cpp).
//   Shapes: h, x [M, d]; w_lm, w_vm [V, d] (dtype); dh, dx [M, d] dtype; dw_lm, dw_vm [V, d] float32;
//           row_loss [M] float32 (host).
//   Per chunk of nc rows:
//     GEMM 1,2  a = x_c w_vm^T / T, b = h_c w_lm^T / T          (two float32 [nc, V] blocks)
//     row pass  (one block per row, two reads of a and b):
//               read 1: online max / sum-exp of a and b plus t = sum_v e^(a-Ma) ((a-Ma) - (b-Mb)), so
//                       KL = t / Sa - log Sa + log Sb  (the log-prob form of the CPU: every term is a
//                       difference of logits relative to their row max, no large-lse cancellation);
//               read 2: la = (a-Ma) - log Sa, lb = (b-Mb) - log Sb, p = e^la, q = e^lb,
//                       a <- sa p (la - lb - KL) (not when detached), b <- sb (q - p),
//                       in place (float32) or into bf16 blocks (bfloat16: cuBLAS wants one A/B type)
//     GEMM 3,4  dh_c = gb w_lm,  dw_lm += gb^T h_c
//     GEMM 5,6  dx_c = ga w_vm,  dw_vm += ga^T x_c              (not when detached)
//   dw_* use beta 0 on the first chunk, so they need no memset.
#include <algorithm>

#include "common.cuh"
#include "kernels_cuda.h"

namespace vw::cuda {
namespace {

// Online state of one row (or a strided part of it): Ma, Sa = sum e^(a - Ma), Mb, Sb likewise, and
// t = sum e^(a - Ma) ((a - Ma) - (b - Mb)) relative to the current maxima. Empty: Sa = 0.
struct KlState {
  float ma, sa, mb, sb, t;

  __device__ __forceinline__ void add(float a, float b) {
    if (sa == 0.f) {  // first element (Sa >= 1 afterwards, or NaN)
      ma = a, mb = b, sa = 1.f, sb = 1.f, t = 0.f;
      return;
    }
    if (b > mb) {  // every term gains (b - Mb): t += Sa (b - Mb)
      t += sa * (b - mb);
      sb = sb * exp_shift(mb, b) + 1.f;
      mb = b;
    } else {
      sb += exp_shift(b, mb);
    }
    if (a > ma) {  // weights scale by e^(Ma - a), every term loses (a - Ma); the new element has weight 1
      const float alpha = exp_shift(ma, a);
      t = alpha * (t - sa * (a - ma)) - (b - mb);
      sa = sa * alpha + 1.f;
      ma = a;
    } else {
      const float w = exp_shift(a, ma);
      sa += w;
      t += w * ((a - ma) - (b - mb));
    }
  }
  __device__ __forceinline__ float max_a() const { return sa != sa ? sa : ma; }  // NaN if any a was NaN
  __device__ __forceinline__ float max_b() const { return sb != sb ? sb : mb; }
};

struct KlMerge {
  __device__ __forceinline__ KlState operator()(const KlState& x, const KlState& y) const {
    if (x.sa == 0.f) return y;
    if (y.sa == 0.f) return x;
    const float ma = fmaxf(x.ma, y.ma), mb = fmaxf(x.mb, y.mb);
    const float ax = exp_shift(x.ma, ma), ay = exp_shift(y.ma, ma);
    KlState r;
    r.ma = ma, r.mb = mb;
    r.sa = x.sa * ax + y.sa * ay;
    r.sb = x.sb * exp_shift(x.mb, mb) + y.sb * exp_shift(y.mb, mb);
    // Re-reference each part's terms to the merged maxima: term += (m_a,part - Ma) - (m_b,part - Mb).
    r.t = ax * (x.t + x.sa * ((x.ma - ma) - (x.mb - mb))) + ay * (y.t + y.sa * ((y.ma - ma) - (y.mb - mb)));
    return r;
  }
};

struct KlRowParams {
  float* a;               // [nc, V] target logits (x w_vm^T / T)
  float* b;               // [nc, V] predicted logits (h w_lm^T / T)
  void* ga;               // gradient of a: == a (float32) or a bf16 block; null when not needed
  void* gb;               // gradient of b: == b (float32) or a bf16 block; null when !grad
  double* row_loss;       // [nc] (device, chunk start)
  unsigned long long* status;
  int64_t row0;
  int V;
  float scale_a, scale_b;  // gradScale / (T M) (batchmean) or / T; scale_a = 0 when the target is detached
};

template <int VEC, typename OutT>
__global__ void __launch_bounds__(kRowThreads) visual_word_kl_row_kernel(KlRowParams p) {
  const int r = blockIdx.x;
  const int V = p.V;
  const int64_t off = static_cast<int64_t>(r) * V;
  const float* a = p.a + off;
  const float* b = p.b + off;

  KlState st{-INFINITY, 0.f, -INFINITY, 0.f, 0.f};
  for (int v = threadIdx.x * VEC; v < V; v += blockDim.x * VEC) {
    float av[VEC], bv[VEC];
    load_row<VEC>(a + v, av);
    load_row<VEC>(b + v, bv);
#pragma unroll
    for (int j = 0; j < VEC; ++j) st.add(av[j], bv[j]);
  }
  st = block_allreduce(st, KlMerge{}, KlState{-INFINITY, 0.f, -INFINITY, 0.f, 0.f});

  const double kl = static_cast<double>(st.t) / st.sa - log(static_cast<double>(st.sa)) + log(static_cast<double>(st.sb));
  if (threadIdx.x == 0) {
    // Same report order as the CPU: the target side's max first.
    const float mxa = st.max_a(), mxb = st.max_b();
    if (!isfinite(mxa))
      flag_bad_row(p.status, p.row0 + r, mxa);
    else if (!isfinite(mxb))
      flag_bad_row(p.status, p.row0 + r, mxb);
    p.row_loss[r] = kl;
  }
  if (!p.gb) return;

  const float log_sa = logf(st.sa), log_sb = logf(st.sb), klf = static_cast<float>(kl);
  const float sa = p.scale_a, sb = p.scale_b;
  OutT* ga = p.ga ? static_cast<OutT*>(p.ga) + off : nullptr;
  OutT* gb = static_cast<OutT*>(p.gb) + off;
  for (int v = threadIdx.x * VEC; v < V; v += blockDim.x * VEC) {
    float av[VEC], bv[VEC];
    load_row<VEC>(a + v, av);
    load_row<VEC>(b + v, bv);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float la = (av[j] - st.ma) - log_sa, lb = (bv[j] - st.mb) - log_sb;
      const float pa = expf(la), qb = expf(lb);
      av[j] = sa * pa * (la - lb - klf);
      bv[j] = sb * (qb - pa);
    }
    if (ga) store_row<VEC>(ga + v, av);
    store_row<VEC>(gb + v, bv);
  }
}

template <typename OutT>
void launch_row_kernel(const char* op, const Context& ctx, int64_t nc, const KlRowParams& p) {
  if (p.V % 4 == 0)
    visual_word_kl_row_kernel<4, OutT><<<static_cast<unsigned>(nc), kRowThreads, 0, ctx.stream>>>(p);
  else
    visual_word_kl_row_kernel<1, OutT><<<static_cast<unsigned>(nc), kRowThreads, 0, ctx.stream>>>(p);
  CUDA_CHECK_LAUNCH(op);
}

}  // namespace

KernelStats visual_word_kl_cuda(const VisualWordKLArgs& a) {
  const char* op = "visual_word_kl";
  check_dims(op, a.M, a.d, a.V);
  check_dtype(op, a.dtype);
  if (!(a.temperature > 0) || !std::isfinite(a.temperature))
    throw_range_error("[", op, "] temperature must be a positive finite number, got ", a.temperature);
  const int64_t M = a.M, d = a.d, V = a.V;
  const DType dt = a.dtype;
  const bool grad = a.compute_grad, grad_target = grad && !a.detach_target, bf16 = dt == DType::BF16;
  Context& ctx = context(op);

  const auto inputs = {NamedInput{"h", a.h, M * d}, NamedInput{"wLm", a.w_lm, V * d}, NamedInput{"x", a.x, M * d},
                       NamedInput{"wVm", a.w_vm, V * d}};
  int64_t ws = 0;
  DeviceBuffer status = start_checks(op, ctx, dt, inputs, &ws);
  KernelStats st;
  st.rows = M;
  if (M == 0) {
    if (grad) CUDA_CHECK(op, cudaMemsetAsync(a.dw_lm, 0, sizeof(float) * V * d, ctx.stream));
    if (grad_target) CUDA_CHECK(op, cudaMemsetAsync(a.dw_vm, 0, sizeof(float) * V * d, ctx.stream));
    raise_status(op, ctx, status, dt, inputs);
    st.workspace_bytes = ws;
    return st;
  }

  DeviceBuffer row_loss(op, ctx, sizeof(double) * M, &ws);
  const int bf16_blocks = grad && bf16 ? (grad_target ? 2 : 1) : 0;
  const int64_t chunk = pick_rows(a.chunk_rows, M, V, 2, bf16_blocks, a.workspace_budget - ws);
  DeviceBuffer za(op, ctx, sizeof(float) * chunk * V, &ws), zb(op, ctx, sizeof(float) * chunk * V, &ws);
  DeviceBuffer ga_bf, gb_bf;
  if (grad && bf16) gb_bf = DeviceBuffer(op, ctx, sizeof(__nv_bfloat16) * chunk * V, &ws);
  if (grad_target && bf16) ga_bf = DeviceBuffer(op, ctx, sizeof(__nv_bfloat16) * chunk * V, &ws);
  st.chunk_rows = chunk;

  const float inv_t = static_cast<float>(1.0 / a.temperature);
  const double s = a.grad_scale / a.temperature / (a.reduction == Reduction::Mean ? M : 1);
  const cudaDataType_t tin = cuda_type(dt), tg = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  void* ga = grad_target ? (bf16 ? ga_bf.get() : za.get()) : nullptr;
  void* gb = grad ? (bf16 ? gb_bf.get() : zb.get()) : nullptr;
  for (int64_t c0 = 0; c0 < M; c0 += chunk) {
    const int64_t nc = std::min(chunk, M - c0);
    const void* x_c = elem_offset(a.x, c0 * d, dt);
    const void* h_c = elem_offset(a.h, c0 * d, dt);
    gemm_rm(op, ctx.blas, false, true, nc, V, d, inv_t, x_c, tin, d, a.w_vm, tin, d, 0.f, za.get(), CUDA_R_32F, V);
    gemm_rm(op, ctx.blas, false, true, nc, V, d, inv_t, h_c, tin, d, a.w_lm, tin, d, 0.f, zb.get(), CUDA_R_32F, V);

    KlRowParams p;
    p.a = za.as<float>();
    p.b = zb.as<float>();
    p.ga = ga;
    p.gb = gb;
    p.row_loss = row_loss.as<double>() + c0;
    p.status = status.as<unsigned long long>();
    p.row0 = c0;
    p.V = static_cast<int>(V);
    p.scale_b = static_cast<float>(s);
    p.scale_a = grad_target ? p.scale_b : 0.f;
    if (bf16 && grad)
      launch_row_kernel<__nv_bfloat16>(op, ctx, nc, p);
    else
      launch_row_kernel<float>(op, ctx, nc, p);

    const float beta = c0 == 0 ? 0.f : 1.f;
    if (grad) {
      gemm_rm(op, ctx.blas, false, false, nc, d, V, 1.f, gb, tg, V, a.w_lm, tin, d, 0.f, elem_offset(a.dh, c0 * d, dt),
              tin, d);
      gemm_rm(op, ctx.blas, true, false, V, d, nc, 1.f, gb, tg, V, h_c, tin, d, beta, a.dw_lm, CUDA_R_32F, d);
    }
    if (grad_target) {
      gemm_rm(op, ctx.blas, false, false, nc, d, V, 1.f, ga, tg, V, a.w_vm, tin, d, 0.f, elem_offset(a.dx, c0 * d, dt),
              tin, d);
      gemm_rm(op, ctx.blas, true, false, V, d, nc, 1.f, ga, tg, V, x_c, tin, d, beta, a.dw_vm, CUDA_R_32F, d);
    }
  }

  raise_status(op, ctx, status, dt, inputs);
  const double total = copy_row_losses(op, ctx, row_loss.as<double>(), a.row_loss, M);
  st.loss = a.reduction == Reduction::Mean ? total / M : total;
  st.workspace_bytes = ws;
  return st;
}

}  // namespace vw::cuda
