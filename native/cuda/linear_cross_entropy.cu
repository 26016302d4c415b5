// Fused linear + cross-entropy on CUDA, forward and backward in one pass over row chunks (same semantics
// as native/cpu/linear_cross_entropy.cpp).
//   Shapes: h [N, d], w [V, d] (dtype), targets [N] int32 (device), dh [N, d] dtype, dw [V, d] float32,
//           row_loss [N] float32.
//   Per group of rows (plan_chunks, native/core/fused_args.h: in float32 a group is one chunk), per chunk of nc rows:
//     GEMM 1  z[nc, V] (f32) = h_c w^T
//     row pass (one block per row): online max/sum-exp (+ sum z for label smoothing) in one read, loss in
//              double, then a second read writing dL/dz = c (1 + 2 lam lse) p - c eps / V - c (1 - eps) [v = t]
//              in place (float32) or into the chunk's rows of the group's bf16 block (bfloat16 inputs, since
//              cuBLAS wants A and B of one type); ignored rows get a zero gradient row and loss 0
//   then, per group g:
//     GEMM 2  dh_g = g w          (C in dtype, beta 0)
//     GEMM 3  dw  += g^T h_g      (C float32; beta 0 on the first group, so dw needs no memset)
//   GEMM 2 or 3 is skipped when its output is null (not wanted: a frozen weight's dw, fused_args.h).
//   Nothing is read back to the host, so the op never waits and a CUDA graph can hold it (native/napi/program.cc):
//   the targets are checked by a device error flag (native/core/error_flags.h) and counted by a one-block kernel
//   (ce_scale_kernel) that writes the gradient and loss scales the row pass and the loss read. Every chunk runs
//   (the CPU skips a chunk whose rows are all ignored; here its rows get zero gradients, so dh and dw are the
//   same). A bad target leaves zero outputs, as on the CPU.
#include <algorithm>
#include <vector>

#include "common.cuh"
#include "ops_cuda.h"

namespace vw::cuda {
namespace {

// The scales that depend on how many targets count, computed on the device (ce_scale_kernel): c = gradScale
// (/ n_valid for mean), its float parts, and the loss's factor (loss_scale of native/core/fused_args.h). bad: a
// target is neither ignore_index nor in [0, V) (its error flag reports it): every row is then ignored.
struct CeScale {
  double c;
  double loss_scale;
  long long n_valid;
  float u, hit;  // c eps / V (every logit) and c (1 - eps) (the target logit), rounded as on the CPU
  int bad;
};

__global__ void __launch_bounds__(1024) ce_scale_kernel(const int32_t* __restrict__ targets, int64_t N, int V, int32_t ignore,
                                                        bool mean, double grad_scale, double eps, CeScale* out) {
  long long valid = 0;
  int bad = 0;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
    const int32_t t = targets[i];
    if (t == ignore) continue;
    if (t < 0 || t >= V)
      bad = 1;
    else
      ++valid;
  }
  valid = block_allreduce(valid, SumOp{}, 0LL);
  bad = block_allreduce(bad, SumOp{}, 0);
  if (threadIdx.x != 0) return;
  CeScale s{};
  s.bad = bad > 0;
  s.n_valid = s.bad ? 0 : valid;
  if (s.n_valid > 0) {
    s.c = mean ? grad_scale / static_cast<double>(s.n_valid) : grad_scale;
    s.loss_scale = mean ? 1.0 / static_cast<double>(s.n_valid) : 1.0;
    s.u = static_cast<float>(s.c * eps / V);
    s.hit = static_cast<float>(s.c * (1 - eps));
  }
  *out = s;
}

struct CeRowParams {
  float* z;               // [nc, V] logits block
  void* g;                // [nc, V] gradient out (== z for float32, a bf16 block for bfloat16); null if !grad
  const int32_t* targets; // [nc] (device, chunk start)
  double* row_loss;       // [nc] (device, chunk start)
  unsigned long long* status;
  int64_t row0;           // global index of the chunk's first row
  const CeScale* scale;   // (device) the gradient scales; bad: every row is ignored
  int V;
  int32_t ignore_index;
  double eps, lam;        // label smoothing, z-loss weight
  bool grad;
};

template <int VEC, typename OutT>
__global__ void __launch_bounds__(kRowThreads) linear_cross_entropy_row_kernel(CeRowParams p) {
  const int r = blockIdx.x;
  const int V = p.V;
  float* z = p.z + static_cast<int64_t>(r) * V;
  OutT* g = p.grad ? static_cast<OutT*>(p.g) + static_cast<int64_t>(r) * V : nullptr;
  const int32_t t = p.targets[r];

  // uniform per block: the whole block leaves together
  if (t == p.ignore_index || p.scale->bad || t < 0 || t >= V) {
    if (p.grad) {
      float zero[VEC];
#pragma unroll
      for (int j = 0; j < VEC; ++j) zero[j] = 0.f;
      for (int v = threadIdx.x * VEC; v < V; v += blockDim.x * VEC) store_row<VEC>(g + v, zero);
    }
    if (threadIdx.x == 0) p.row_loss[r] = 0.0;
    return;
  }

  // Read 1: max, sum exp, sum z (only used with label smoothing; a double add per element is free in this
  // memory-bound pass and keeps eps (lse - mean z) accurate for large logits, as the CPU's double sum does).
  SoftmaxState st = softmax_empty();
  double sum_z = 0.0;
  for (int v = threadIdx.x * VEC; v < V; v += blockDim.x * VEC) {
    float x[VEC];
    load_row<VEC>(z + v, x);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      st.add(x[j]);
      sum_z += x[j];
    }
  }
  // z[t] must be read before any thread overwrites the row in place (the reductions below are barriers).
  const float z_t = threadIdx.x == 0 ? z[t] : 0.f;
  st = block_allreduce(st, SoftmaxMerge{}, softmax_empty());
  sum_z = block_allreduce(sum_z, SumOp{}, 0.0);

  // lse kept as its parts m and log s, never added before z is subtracted: next to a huge max (|m| ~ 1e30)
  // m + log s rounds to m even in double (the CPU's vec_exp).
  const double m = st.m, log_s = log(static_cast<double>(st.s)), lse = m + log_s;
  if (threadIdx.x == 0) {
    if (st.bad()) flag_bad_row(p.status, p.row0 + r, st.reported_max());
    double loss = (1.0 - p.eps) * ((m - z_t) + log_s) + p.lam * lse * lse;
    if (p.eps != 0.0) loss += p.eps * ((m - sum_z / V) + log_s);
    p.row_loss[r] = loss;
  }
  if (!p.grad) return;

  // Read 2: p_v = exp((z - m) - log s) with log s split into float hi + lo (see Split), as the CPU's vec_exp.
  const Split ls_c = split(log_s);
  const float m_f = st.m;
  const float scale = static_cast<float>(p.scale->c * (1.0 + 2.0 * p.lam * lse));
  const float u = p.scale->u, hit = p.scale->hit;
  for (int v = threadIdx.x * VEC; v < V; v += blockDim.x * VEC) {
    float x[VEC];
    load_row<VEC>(z + v, x);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      float gv = scale * expf(((x[j] - m_f) - ls_c.hi) - ls_c.lo) - u;
      if (v + j == t) gv -= hit;
      x[j] = gv;
    }
    store_row<VEC>(g + v, x);
  }
}

// The row pass of a chunk; its gradient rows are bfloat16 blocks when bf16_out, else float32 (in place).
void launch_row_kernel(const char* op, const Context& ctx, int64_t nc, const CeRowParams& p, bool bf16_out) {
  dispatch_float(bf16_out ? DType::BF16 : DType::F32, [&](auto tag) {
    using OutT = typename decltype(tag)::type;
    launch_rows(op, ctx, nc, kRowThreads, p.V, linear_cross_entropy_row_kernel<4, OutT>,
                linear_cross_entropy_row_kernel<1, OutT>, p);
  });
}

}  // namespace

OpStats linear_cross_entropy(const LinearCrossEntropyArgs& a) {
  const char* op = "linear_cross_entropy";
  check_dims(op, a.N, a.d, a.V);
  const int64_t N = a.N, d = a.d, V = a.V;
  const DType dt = a.dtype;
  const bool grad = a.compute_grad, bf16 = dt == DType::BF16;
  Context& ctx = context(op);

  // The targets: checked on the device (raised here in sync mode, in the CPU's order: before the non-finite
  // inputs; at the next synchronisation in async mode) and counted there (ce_scale_kernel).
  check_values(op, ctx, ValueCheck::targets(op, V, a.ignore_index), a.targets, N);
  if (!error_flags().async()) drain_flags(op, ctx);

  FusedCall call(op, ctx, dt, {NamedInput{"h", a.h, N * d}, NamedInput{"w", a.w, V * d}}, 0);
  if (N == 0) {
    if (a.dw) CUDA_CHECK(op, cudaMemsetAsync(a.dw, 0, sizeof(float) * V * d, ctx.stream));
    OpStats st = finish_losses(op, ctx, call, nullptr, a.row_loss, 0, a.reduction, 0, a.loss);  // loss 0
    st.rows = 0;
    return st;
  }
  DeviceBuffer scale = call.scratch(sizeof(CeScale));
  launch(op, ctx, 1, 1024, 0, ce_scale_kernel, a.targets, N, static_cast<int>(V), a.ignore_index, a.reduction == Reduction::Mean,
         a.grad_scale, a.label_smoothing, scale.as<CeScale>());
  DeviceBuffer row_loss = call.scratch(sizeof(double) * N);  // every row writes its loss (0 when ignored)
  const ChunkBlocks blocks(call, a.chunk_rows, N, V, 1, grad && bf16 ? 1 : 0, a.workspace_budget, true);
  float* z = blocks.f32(0);

  const cudaDataType_t tin = cuda_type(dt), tg = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const DType gdt = bf16 ? DType::BF16 : DType::F32;  // the gradient block's type
  void* g = bf16 ? blocks.bf16(0) : z;
  // per logit chunk: its logits and row pass, the gradient rows into the group's block at `at`
  const auto chunk = [&](int64_t c0, int64_t nc, int64_t at) {
    gemm_rm(op, ctx.blas, false, true, nc, V, d, 1.f, elem_offset(a.h, c0 * d, dt), tin, d, a.w, tin, d, 0.f, z,
            CUDA_R_32F, V);

    CeRowParams p;
    p.z = z;
    p.g = grad ? elem_offset(g, at * V, gdt) : nullptr;  // the chunk's rows of the group (float32: 0, in place)
    p.targets = a.targets + c0;
    p.row_loss = row_loss.as<double>() + c0;
    p.status = call.status();
    p.row0 = c0;
    p.scale = scale.as<CeScale>();
    p.V = static_cast<int>(V);
    p.ignore_index = a.ignore_index;
    p.eps = a.label_smoothing;
    p.lam = a.z_loss_weight;
    p.grad = grad;
    launch_row_kernel(op, ctx, nc, p, bf16 && grad);
  };
  // per group: the backward GEMMs over its rows
  const auto group = [&](int64_t g0, int64_t ng) {
    if (grad) {
      void* dh_g = a.dh ? elem_offset(a.dh, g0 * d, dt) : nullptr;
      logits_backward(op, ctx.blas, ng, V, d, g, tg, a.w, elem_offset(a.h, g0 * d, dt), tin, dh_g, a.dw, g0 > 0 ? 1.f : 0.f);
    }
  };
  blocks.each(N, chunk, group);

  OpStats st = call.finish();
  if (a.loss) {  // the training path: the loss stays on the device, and how many rows counted is not read
    device_row_losses(op, ctx, row_loss.as<double>(), a.row_loss, N, 0.0, a.loss, &scale.as<CeScale>()->loss_scale);
    st.loss = std::nan("");
    st.rows = -1;
  } else {  // a host result was asked for: one wait, for the row losses and the count
    CeScale s{};
    CUDA_CHECK(op, cudaMemcpyAsync(&s, scale.get(), sizeof s, cudaMemcpyDeviceToHost, ctx.stream));
    const double total = copy_row_losses(op, ctx, row_loss.as<double>(), a.row_loss, N);  // waits for both
    st.rows = s.n_valid;
    st.loss = s.n_valid > 0 ? reduce_loss(total, a.reduction, s.n_valid) : 0.0;
  }
  return st;
}

// The table entries (native/core/ops.def).
void linear_cross_entropy_cuda(const OpCall& c) { c.report(linear_cross_entropy(read_linear_cross_entropy(c))); }

}  // namespace vw::cuda
