// Fused visual-word KL on CUDA, forward and backward in one pass over row chunks (same semantics as
// native/cpu/visual_word_kl.cpp).
//   Shapes: h, x [M, d]; w_lm, w_vm [V, d] (dtype); dh, dx [M, d] dtype; dw_lm, dw_vm [V, d] float32;
//           row_loss [M] float32.
//   Per group of rows (plan_chunks, native/core/fused_args.h: in float32 a group is one chunk), per chunk of nc rows:
//     GEMM 1,2  a = x_c w_vm^T / T, b = h_c w_lm^T / T          (two float32 [nc, V] blocks)
//     row pass  (one block per row, two reads of a and b):
//               read 1: the CPU's log-ratio KL (lr = (a - b) - D, KL = sum p lr + log sum p e^-lr) with
//                       online maxima, so the max, the normalisation and the KL come from one read
//                       (KlState below);
//               read 2: a <- sa p (lr - KL) (not when detached), b <- sb (q - p), in place (float32) or
//                       into the chunk's rows of the group's bf16 blocks (bfloat16: cuBLAS wants one A/B type)
//   then, per group g:
//     GEMM 3,4  dh_g = gb w_lm,  dw_lm += gb^T h_g
//     GEMM 5,6  dx_g = ga w_vm,  dw_vm += ga^T x_g              (not when detached)
//   dw_* use beta 0 on the first group, so they need no memset. A gradient output left null (not wanted: a
//   frozen head's dw, fused_args.h) skips its GEMM; a side with neither output gets no gradient block at all.
#include <algorithm>

#include "common.cuh"
#include "ops_cuda.h"

namespace vw::cuda {
namespace {

// Online state of one row (or a strided part of it), the CPU's log-ratio form (native/cpu/vec.cpp, vec_kl)
// made single-pass. With running maxima Ma, Mb, the reference D = Ma - Mb, weights w = e^(a - Ma) and the
// log-ratio lr = (a - b) - D (a - b is exact when a ~ b, so lr keeps its relative precision):
//   Sa = sum w,  L = sum w lr,  E = sum w expm1(-lr)   (E by series-accurate expm1 when |lr| < 0.5, else
//   as e^((b - Mb) + dD) - w, dD = D - (Ma - Mb) exact in double: that is w e^-lr, with any rounding of D
//   carried as the series terms carry it, and it cannot overflow. Not e^((a - Ma) - lr): where a is ~1e30
//   below Ma, both terms are ~1e30 and their difference keeps nothing of b - Mb),
//   KL = L / Sa + log1p(E / Sa)
// The second term is the exact normalisation of q relative to p, so any constant error in D cancels and a
// near-zero KL (~|lr|^2) keeps relative accuracy instead of being a difference of O(log V) lse terms.
// When a maximum moves, the state is re-based exactly: with k = D' - D (exact in double) and
// alpha = e^(Ma - Ma'):  L <- alpha (L - k Sa),  E <- alpha E + alpha expm1(k) (E + Sa),  Sa <- alpha Sa.
// Sb = sum e^(b - Mb) is kept as well, for lse_b in the gradient pass (q from its own normalisation, as on
// the CPU, rather than derived from E, which carries the rounding of a - b when a and b are far apart).
// Sums are double (the row pass is memory bound, so that is free); Mb propagates NaN so a NaN in b is
// reported like the CPU's max. Empty: Sa = 0.
struct KlState {
  float ma, mb, D, dD;
  double sa, sb, l, e;

  VW_HD static float d_error(float d, float ma, float mb) {
    return static_cast<float>(static_cast<double>(d) - (static_cast<double>(ma) - static_cast<double>(mb)));
  }

  VW_HD void rebase(float nma, float nmb) {
    const float nd = nma - nmb;
    const double k = static_cast<double>(nd) - static_cast<double>(D);
    const double la = static_cast<double>(ma) - static_cast<double>(nma);  // exact, <= 0
    const double alpha = exp(la);
    // alpha expm1(k) as e^(k + la) - alpha when |k| >= 1: a thread's first element can sit ~1e3 below the
    // row max (x100 logits), where expm1(k) overflows and alpha underflows (inf * 0 = NaN); k + la ~
    // Mb - Mb' <= 0 cannot overflow, and the two terms differ by e^|k| >= e, so nothing cancels. The
    // product form when |k| < 1, where the difference would cancel.
    const double ak = fabs(k) < 1.0 ? alpha * expm1(k) : exp(k + la) - alpha;
    l = alpha * (l - k * sa);
    e = alpha * e + ak * (e + sa);
    sa *= alpha;
    sb *= exp_shift(mb, nmb);
    ma = nma, mb = nmb, D = nd, dD = d_error(nd, nma, nmb);
  }
  VW_HD void add(float a, float b) {
    if (sa == 0.0) {  // first element (Sa >= 1 afterwards, or NaN): lr = 0
      ma = a, mb = b, D = a - b, dD = d_error(D, a, b), sa = 1.0, sb = 1.0, l = 0.0, e = 0.0;
      return;
    }
    const float nma = a > ma ? a : ma, nmb = (b > mb || b != b) ? b : mb;
    if (nma != ma || !(nmb == mb)) rebase(nma, nmb);
    const float lr = (a - b) - D;
    const float w = exp_shift(a, ma);
    sa += w;
    sb += exp_shift(b, mb);
    l += static_cast<double>(w * lr);
    e += static_cast<double>(fabsf(lr) < 0.5f ? w * expm1f(-lr) : expf((b - mb) + dD) - w);
  }
  VW_HD float max_a() const { return sa != sa ? static_cast<float>(sa) : ma; }  // NaN if any a was NaN
  VW_HD float max_b() const { return mb; }
};
VW_HD KlState kl_empty() { return {-INFINITY, -INFINITY, 0.f, 0.f, 0.0, 0.0, 0.0, 0.0}; }

struct KlMerge {
  VW_HD KlState operator()(KlState x, KlState y) const {
    if (x.sa == 0.0) return y;
    if (y.sa == 0.0) return x;
    const float ma = fmaxf(x.ma, y.ma), mb = (x.mb > y.mb || x.mb != x.mb) ? x.mb : y.mb;
    x.rebase(ma, mb);
    y.rebase(ma, mb);
    KlState r = x;
    r.sa += y.sa, r.sb += y.sb, r.l += y.l, r.e += y.e;
    return r;
  }
};

struct KlRowParams {
  float* a;               // [nc, V] target logits (x w_vm^T / T)
  float* b;               // [nc, V] predicted logits (h w_lm^T / T)
  void* ga;               // gradient of a: == a (float32) or a bf16 block; null when not needed
  void* gb;               // gradient of b: == b (float32) or a bf16 block; null when not needed
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

  KlState st = kl_empty();
  for (int v = threadIdx.x * VEC; v < V; v += blockDim.x * VEC) {
    float av[VEC], bv[VEC];
    load_row<VEC>(a + v, av);
    load_row<VEC>(b + v, bv);
#pragma unroll
    for (int j = 0; j < VEC; ++j) st.add(av[j], bv[j]);
  }
  st = block_allreduce(st, KlMerge{}, kl_empty());

  const double c = log1p(st.e / st.sa);  // lr + c is the exact log-ratio of the normalised p and q
  const double kl = st.l / st.sa + c;
  if (threadIdx.x == 0) {
    // Same report order as the CPU: the target side's max first.
    const float mxa = st.max_a(), mxb = st.max_b();
    if (!isfinite(mxa))
      flag_bad_row(p.status, p.row0 + r, mxa);
    else if (!isfinite(mxb))
      flag_bad_row(p.status, p.row0 + r, mxb);
    p.row_loss[r] = kl;
  }
  if (!p.ga && !p.gb) return;

  // Read 2, all in terms of (a - b), (a - Ma) and (b - Mb), whose float differences are exact or nearly so,
  // minus per-row double constants split into float hi + lo (the CPU's SPLIT: a single float would carry
  // ulp(|constant|) ~ 4e-6 for a constant ~ 50 into every entry):
  //   log p       = (a - Ma) - log Sa
  //   lr          = (a - b) - (D - c)            exact log-ratio of the normalised p and q
  //   lr - KL     = (a - b) - (D + L / Sa)       (c cancels)
  //   log q       = (b - Mb) - log Sb
  //   q - p       = p expm1(-lr) when |lr| < 0.5 (p and q then share their leading digits, which a float
  //                 difference would lose), else e^(log q) - p
  const double log_sa = log(st.sa);
  const Split lp_c = split(log_sa), lr_c = split(static_cast<double>(st.D) - c),
              lrk_c = split(static_cast<double>(st.D) + st.l / st.sa),
              lq_c = split(log(st.sb));
  const float ma = st.ma, mb = st.mb, sa = p.scale_a, sb = p.scale_b;
  OutT* ga = p.ga ? static_cast<OutT*>(p.ga) + off : nullptr;
  OutT* gb = p.gb ? static_cast<OutT*>(p.gb) + off : nullptr;
  for (int v = threadIdx.x * VEC; v < V; v += blockDim.x * VEC) {
    float av[VEC], bv[VEC];
    load_row<VEC>(a + v, av);
    load_row<VEC>(b + v, bv);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float ab = av[j] - bv[j];
      const float pa = expf(((av[j] - ma) - lp_c.hi) - lp_c.lo);
      const float lr = (ab - lr_c.hi) - lr_c.lo;
      const float qp = fabsf(lr) < 0.5f ? pa * expm1f(-lr) : expf(((bv[j] - mb) - lq_c.hi) - lq_c.lo) - pa;
      av[j] = sa * pa * ((ab - lrk_c.hi) - lrk_c.lo);
      bv[j] = sb * qp;
    }
    if (ga) store_row<VEC>(ga + v, av);
    if (gb) store_row<VEC>(gb + v, bv);
  }
}

// The row pass of a chunk; its gradient rows are bfloat16 blocks when bf16_out, else float32 (in place).
void launch_row_kernel(const char* op, const Context& ctx, int64_t nc, const KlRowParams& p, bool bf16_out) {
  dispatch_float(bf16_out ? DType::BF16 : DType::F32, [&](auto tag) {
    using OutT = typename decltype(tag)::type;
    launch_rows(op, ctx, nc, kRowThreads, p.V, visual_word_kl_row_kernel<4, OutT>, visual_word_kl_row_kernel<1, OutT>, p);
  });
}

}  // namespace

OpStats visual_word_kl(const VisualWordKLArgs& a) {
  const char* op = "visual_word_kl";
  check_dims(op, a.M, a.d, a.V);
  const int64_t M = a.M, d = a.d, V = a.V;
  const DType dt = a.dtype;
  // Which sides get a gradient: the reader left the unwanted outputs null (and dx, dw_vm when detached).
  const bool bf16 = dt == DType::BF16;
  const bool grad_lm = a.dh || a.dw_lm, grad_target = a.dx || a.dw_vm;
  Context& ctx = context(op);

  FusedCall call(op, ctx, dt,
                 {NamedInput{"h", a.h, M * d}, NamedInput{"wLm", a.w_lm, V * d}, NamedInput{"x", a.x, M * d},
                  NamedInput{"wVm", a.w_vm, V * d}},
                 M);
  if (M == 0) {
    if (a.dw_lm) CUDA_CHECK(op, cudaMemsetAsync(a.dw_lm, 0, sizeof(float) * V * d, ctx.stream));
    if (a.dw_vm) CUDA_CHECK(op, cudaMemsetAsync(a.dw_vm, 0, sizeof(float) * V * d, ctx.stream));
    return finish_losses(op, ctx, call, nullptr, a.row_loss, 0, a.reduction, 0, a.loss);  // loss 0
  }

  DeviceBuffer row_loss = call.scratch(sizeof(double) * M);
  // bf16 gradient blocks, one per side that gets a gradient: gb first, then ga.
  const int bf16_blocks = bf16 ? (grad_lm ? 1 : 0) + (grad_target ? 1 : 0) : 0;
  const ChunkBlocks blocks(call, a.chunk_rows, M, V, 2, bf16_blocks, a.workspace_budget, true);
  float *za = blocks.f32(0), *zb = blocks.f32(1);

  const float inv_t = static_cast<float>(1.0 / a.temperature);
  const double s = a.grad_scale / a.temperature / (a.reduction == Reduction::Mean ? M : 1);
  const cudaDataType_t tin = cuda_type(dt), tg = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  void* gb = grad_lm ? (bf16 ? blocks.bf16(0) : zb) : nullptr;
  void* ga = grad_target ? (bf16 ? blocks.bf16(grad_lm ? 1 : 0) : za) : nullptr;
  const DType gdt = bf16 ? DType::BF16 : DType::F32;  // the gradient blocks' type
  // per logit chunk: its logits and row pass, the gradient rows into the group's block at `at`
  const auto chunk = [&](int64_t c0, int64_t nc, int64_t at) {
    gemm_rm(op, ctx.blas, false, true, nc, V, d, inv_t, elem_offset(a.x, c0 * d, dt), tin, d, a.w_vm, tin, d, 0.f, za,
            CUDA_R_32F, V);
    gemm_rm(op, ctx.blas, false, true, nc, V, d, inv_t, elem_offset(a.h, c0 * d, dt), tin, d, a.w_lm, tin, d, 0.f, zb,
            CUDA_R_32F, V);

    KlRowParams p;
    p.a = za;
    p.b = zb;
    p.ga = ga ? elem_offset(ga, at * V, gdt) : nullptr;  // the chunk's rows of the group (float32: 0, in place)
    p.gb = gb ? elem_offset(gb, at * V, gdt) : nullptr;
    p.row_loss = row_loss.as<double>() + c0;
    p.status = call.status();
    p.row0 = c0;
    p.V = static_cast<int>(V);
    p.scale_b = static_cast<float>(s);
    p.scale_a = grad_target ? p.scale_b : 0.f;
    launch_row_kernel(op, ctx, nc, p, bf16 && (grad_lm || grad_target));
  };
  // per group: the backward GEMMs over its rows
  const auto group = [&](int64_t g0, int64_t ng) {
    const float beta = g0 == 0 ? 0.f : 1.f;
    const void* x_g = elem_offset(a.x, g0 * d, dt);
    const void* h_g = elem_offset(a.h, g0 * d, dt);
    if (grad_lm)
      logits_backward(op, ctx.blas, ng, V, d, gb, tg, a.w_lm, h_g, tin, a.dh ? elem_offset(a.dh, g0 * d, dt) : nullptr,
                      a.dw_lm, beta);
    if (grad_target)
      logits_backward(op, ctx.blas, ng, V, d, ga, tg, a.w_vm, x_g, tin, a.dx ? elem_offset(a.dx, g0 * d, dt) : nullptr,
                      a.dw_vm, beta);
  };
  blocks.each(M, chunk, group);

  return finish_losses(op, ctx, call, row_loss.as<double>(), a.row_loss, M, a.reduction, M, a.loss);
}

// The table entries (native/core/ops.def).
void visual_word_kl_cuda(const OpCall& c) { c.report(visual_word_kl(read_visual_word_kl(c))); }

}  // namespace vw::cuda
