// Pseudo image features on CUDA (same semantics as native/cpu/pseudo_image_features.cpp):
// out = softmax(x w_vm^T) E, an attention of the queries x over V "tokens" (keys w_vm, values E).
//   Shapes: x [N, d], w_vm [V, d], e [V, dE], grad_out [N, dE], out [N, dE], dx [N, d] (dtype);
//           dw_vm [V, d], de [V, dE] float32.
//   Forward, per chunk of nc rows:
//     GEMM      z[nc, V] (f32) = x_c w_vm^T
//     row pass  online max / sum-exp (read 1), P = exp((z - m) - log s) (read 2) in place (float32) or into
//               a bf16 block (bfloat16: cuBLAS wants one A/B type)
//     GEMM      out_c = P e
//   Backward, per chunk:
//     GEMM      z = x_c w_vm^T,  G = grad_out_c e^T               (two float32 [nc, V] blocks)
//     row pass  read 1: online max / sum-exp of z and t = sum e^(z - m) G, so rowdot(P, G) = t / s;
//               read 2: P = exp((z - m) - log s), dA = P (G - t / s); dA overwrites G and P overwrites z
//               (float32) or both go to bf16 blocks
//     GEMM      dx_c = dA w_vm,  dw_vm += dA^T x_c,  de += P^T grad_out_c   (beta 0 on the first chunk)
#include <algorithm>
#include <vector>

#include "common.cuh"
#include "ops_cuda.h"

namespace vw::cuda {
namespace {

struct PifRowParams {
  float* z;        // [nc, V] logits
  float* g;        // [nc, V] grad_out e^T (backward only)
  void* p_out;     // P: == z (float32) or a bf16 block
  void* da_out;    // dA: == g (float32) or a bf16 block (backward only)
  unsigned long long* status;
  int64_t row0;
  int V;
};

template <int VEC, typename OutT>
__global__ void __launch_bounds__(kRowThreads) pseudo_image_features_softmax_kernel(PifRowParams p) {
  const int r = blockIdx.x;
  const int64_t off = static_cast<int64_t>(r) * p.V;
  const float* z = p.z + off;
  SoftmaxState st;
  row_softmax_state<VEC>(z, p.V, st);
  if (threadIdx.x == 0 && st.bad()) flag_bad_row(p.status, p.row0 + r, st.reported_max());

  // p = exp((z - m) - log s), log s in double and split (see Split): a float log s would bias every p by up to
  // 2^-24 |log s| relative, and m + log s rounds to m next to a huge max (the CPU's vec_exp).
  const Split ls = split(log(static_cast<double>(st.s)));
  const float m = st.m;
  OutT* out = static_cast<OutT*>(p.p_out) + off;
  for (int v = threadIdx.x * VEC; v < p.V; v += blockDim.x * VEC) {
    float x[VEC];
    load_row<VEC>(z + v, x);
#pragma unroll
    for (int j = 0; j < VEC; ++j) x[j] = expf(((x[j] - m) - ls.hi) - ls.lo);
    store_row<VEC>(out + v, x);
  }
}

// Online softmax state plus t = sum e^(z - m) g, rescaled with s; sums in double like the CPU's vec_dot
// (free in this memory-bound pass).
struct PifState {
  float m;
  double s, t;
  VW_HD void add(float z, float g) {
    if (z > m) {
      const double alpha = exp_shift(m, z);
      s = s * alpha + 1.0;
      t = t * alpha + g;
      m = z;
    } else {
      const float w = exp_shift(z, m);
      s += w;
      t += static_cast<double>(w * g);
    }
  }
};
struct PifMerge {
  VW_HD PifState operator()(const PifState& x, const PifState& y) const {
    const float m = fmaxf(x.m, y.m);
    const double ax = exp_shift(x.m, m), ay = exp_shift(y.m, m);
    return {m, x.s * ax + y.s * ay, x.t * ax + y.t * ay};
  }
};

template <int VEC, typename OutT>
__global__ void __launch_bounds__(kRowThreads) pseudo_image_features_backward_row_kernel(PifRowParams p) {
  const int r = blockIdx.x;
  const int64_t off = static_cast<int64_t>(r) * p.V;
  const float* z = p.z + off;
  const float* g = p.g + off;
  PifState st{-INFINITY, 0.0, 0.0};
  for (int v = threadIdx.x * VEC; v < p.V; v += blockDim.x * VEC) {
    float zv[VEC], gv[VEC];
    load_row<VEC>(z + v, zv);
    load_row<VEC>(g + v, gv);
#pragma unroll
    for (int j = 0; j < VEC; ++j) st.add(zv[j], gv[j]);
  }
  st = block_allreduce(st, PifMerge{}, PifState{-INFINITY, 0.0, 0.0});
  if (threadIdx.x == 0) {
    const SoftmaxState sm{st.m, static_cast<float>(st.s)};
    if (sm.bad()) flag_bad_row(p.status, p.row0 + r, sm.reported_max());
  }

  const Split ls = split(log(st.s));  // as in the forward kernel
  const float m = st.m;
  const float dot = static_cast<float>(st.t / st.s);
  OutT* pout = static_cast<OutT*>(p.p_out) + off;
  OutT* daout = static_cast<OutT*>(p.da_out) + off;
  for (int v = threadIdx.x * VEC; v < p.V; v += blockDim.x * VEC) {
    float zv[VEC], gv[VEC];
    load_row<VEC>(z + v, zv);
    load_row<VEC>(g + v, gv);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float pv = expf(((zv[j] - m) - ls.hi) - ls.lo);
      gv[j] = pv * (gv[j] - dot);
      zv[j] = pv;
    }
    store_row<VEC>(pout + v, zv);
    store_row<VEC>(daout + v, gv);
  }
}

// The row pass of a chunk: the softmax (forward) or its backward; P (and dA) go to bfloat16 blocks when
// bf16, else float32 in place.
void launch_row_pass(const char* op, const Context& ctx, int64_t nc, const PifRowParams& p, bool backward, bool bf16) {
  dispatch_float(bf16 ? DType::BF16 : DType::F32, [&](auto tag) {
    using OutT = typename decltype(tag)::type;
    if (backward)
      launch_rows(op, ctx, nc, kRowThreads, p.V, pseudo_image_features_backward_row_kernel<4, OutT>,
                  pseudo_image_features_backward_row_kernel<1, OutT>, p);
    else
      launch_rows(op, ctx, nc, kRowThreads, p.V, pseudo_image_features_softmax_kernel<4, OutT>,
                  pseudo_image_features_softmax_kernel<1, OutT>, p);
  });
}

// Both ops: the forward's out = P e, or the backward's dx = dA w_vm, dw_vm += dA^T x, de += P^T grad_out.
OpStats run_pif(const char* op, const PseudoImageFeaturesArgs& a, bool backward) {
  check_dims(op, a.N, a.d, a.V);
  if (a.dE > INT32_MAX) throw_range_error("[", op, "] embedding width dE=", a.dE, " exceeds the CUDA backend's limit");
  const int64_t N = a.N, d = a.d, V = a.V, dE = a.dE;
  const DType dt = a.dtype;
  const bool bf16 = dt == DType::BF16;
  Context& ctx = context(op);

  std::vector<NamedInput> inputs = {NamedInput{"x", a.x, N * d}, NamedInput{"wVm", a.w_vm, V * d},
                                    NamedInput{"e", a.e, V * dE}};
  if (backward) inputs.push_back(NamedInput{"gradOut", a.grad_out, N * dE});
  FusedCall call(op, ctx, dt, std::move(inputs), N);
  if (N == 0) {
    if (backward) {
      CUDA_CHECK(op, cudaMemsetAsync(a.dw_vm, 0, sizeof(float) * V * d, ctx.stream));
      CUDA_CHECK(op, cudaMemsetAsync(a.de, 0, sizeof(float) * V * dE, ctx.stream));
    }
    return call.finish();
  }
  // float32 blocks z (the logits, then P in place) and, backward, g (grad_out e^T, then dA in place); bf16
  // blocks for P and dA when the op runs in bf16.
  const int f32_blocks = backward ? 2 : 1;
  const ChunkBlocks blocks(call, a.chunk_rows, N, V, f32_blocks, bf16 ? f32_blocks : 0, a.workspace_budget, false);
  const cudaDataType_t tin = cuda_type(dt);
  float* z = blocks.f32(0);
  float* g = backward ? blocks.f32(1) : nullptr;
  void* P = bf16 ? blocks.bf16(0) : z;
  void* dA = bf16 ? blocks.bf16(1) : g;
  for (int64_t c0 = 0; c0 < N; c0 += blocks.rows) {
    const int64_t nc = std::min(blocks.rows, N - c0);
    const void* x_c = elem_offset(a.x, c0 * d, dt);
    const void* go_c = backward ? elem_offset(a.grad_out, c0 * dE, dt) : nullptr;
    gemm_rm(op, ctx.blas, false, true, nc, V, d, 1.f, x_c, tin, d, a.w_vm, tin, d, 0.f, z, CUDA_R_32F, V);
    if (backward) gemm_rm(op, ctx.blas, false, true, nc, V, dE, 1.f, go_c, tin, dE, a.e, tin, dE, 0.f, g, CUDA_R_32F, V);
    PifRowParams p{};
    p.z = z;
    p.g = g;
    p.p_out = P;
    p.da_out = dA;
    p.status = call.status();
    p.row0 = c0;
    p.V = static_cast<int>(V);
    launch_row_pass(op, ctx, nc, p, backward, bf16);
    if (!backward) {
      gemm_rm(op, ctx.blas, false, false, nc, dE, V, 1.f, P, tin, V, a.e, tin, dE, 0.f, elem_offset(a.out, c0 * dE, dt),
              tin, dE);
    } else {
      const float beta = c0 == 0 ? 0.f : 1.f;
      logits_backward(op, ctx.blas, nc, V, d, dA, tin, a.w_vm, x_c, tin, elem_offset(a.dx, c0 * d, dt), a.dw_vm, beta);
      gemm_rm(op, ctx.blas, true, false, V, dE, nc, 1.f, P, tin, V, go_c, tin, dE, beta, a.de, CUDA_R_32F, dE);
    }
  }
  return call.finish();
}

}  // namespace

OpStats pseudo_image_features(const PseudoImageFeaturesArgs& a) { return run_pif("pseudo_image_features", a, false); }
OpStats pseudo_image_features_backward(const PseudoImageFeaturesArgs& a) {
  return run_pif("pseudo_image_features_backward", a, true);
}

// The table entries (native/core/ops.def).
void pseudo_image_features_cuda(const OpCall& c) { c.report(pseudo_image_features(read_pseudo_image_features(c, false))); }
void pseudo_image_features_backward_cuda(const OpCall& c) { c.report(pseudo_image_features_backward(read_pseudo_image_features(c, true))); }

}  // namespace vw::cuda
