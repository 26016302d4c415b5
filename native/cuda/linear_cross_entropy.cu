// Fused linear + cross-entropy on CUDA, forward and backward in one pass over row chunks (same semantics
// as native/cpu/linear_cross_entropy.cpp).
//   Shapes: h [N, d], w [V, d] (dtype), targets [N] int32 (device), dh [N, d] dtype, dw [V, d] float32,
//           row_loss [N] float32.
//   Per chunk of nc rows:
//     GEMM 1  z[nc, V] (f32) = h_c w^T
//     row pass (one block per row): online max/sum-exp (+ sum z for label smoothing) in one read, loss in
//              double, then a second read writing dL/dz = c (1 + 2 lam lse) p - c eps / V - c (1 - eps) [v = t]
//              in place (float32) or into a bf16 block (bfloat16 inputs, since cuBLAS wants A and B of one type);
//              ignored rows get a zero gradient row and loss 0
//     GEMM 2  dh_c = g w          (C in dtype, beta 0)
//     GEMM 3  dw  += g^T h_c      (C float32; beta 0 on the first processed chunk, so dw needs no memset)
//   GEMM 2 or 3 is skipped when its output is null (not wanted: a frozen weight's dw, fused_args.h).
//   Targets are validated on the host (one 4N-byte copy); chunks whose rows are all ignored are skipped and
//   their dh rows zeroed, as on the CPU.
#include <algorithm>
#include <vector>

#include "common.cuh"
#include "ops_cuda.h"

namespace vw::cuda {
namespace {

struct CeRowParams {
  float* z;               // [nc, V] logits block
  void* g;                // [nc, V] gradient out (== z for float32, a bf16 block for bfloat16); null if !grad
  const int32_t* targets; // [nc] (device, chunk start)
  double* row_loss;       // [nc] (device, chunk start)
  unsigned long long* status;
  int64_t row0;           // global index of the chunk's first row
  int V;
  int32_t ignore_index;
  double c;               // gradient scale per row: gradScale (/ n_valid for mean)
  double eps, lam;        // label smoothing, z-loss weight
  float u, hit;           // c eps / V (every logit) and c (1 - eps) (the target logit), rounded as on the CPU
  bool grad;
};

template <int VEC, typename OutT>
__global__ void __launch_bounds__(kRowThreads) linear_cross_entropy_row_kernel(CeRowParams p) {
  const int r = blockIdx.x;
  const int V = p.V;
  float* z = p.z + static_cast<int64_t>(r) * V;
  OutT* g = p.grad ? static_cast<OutT*>(p.g) + static_cast<int64_t>(r) * V : nullptr;
  const int32_t t = p.targets[r];

  if (t == p.ignore_index) {  // uniform per block: the whole block leaves together
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

  const double lse = static_cast<double>(st.m) + log(static_cast<double>(st.s));
  if (threadIdx.x == 0) {
    if (st.bad()) flag_bad_row(p.status, p.row0 + r, st.reported_max());
    double loss = (1.0 - p.eps) * (lse - z_t) + p.lam * lse * lse;
    if (p.eps != 0.0) loss += p.eps * (lse - sum_z / V);
    p.row_loss[r] = loss;
  }
  if (!p.grad) return;

  // Read 2: p_v = exp(z - lse) with lse split into float hi + lo (see Split), as the CPU's vec_exp.
  const Split lse_c = split(lse);
  const float scale = static_cast<float>(p.c * (1.0 + 2.0 * p.lam * lse));
  const float u = p.u, hit = p.hit;
  for (int v = threadIdx.x * VEC; v < V; v += blockDim.x * VEC) {
    float x[VEC];
    load_row<VEC>(z + v, x);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      float gv = scale * expf((x[j] - lse_c.hi) - lse_c.lo) - u;
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

  // Targets: one small copy to know which chunks to skip and how many rows count. They are checked on the
  // host as they are (an error flag, native/core/error_flags.h): in async mode a bad one leaves zero outputs.
  std::vector<int32_t> targets(static_cast<size_t>(N));
  if (N > 0) {
    CUDA_CHECK(op, cudaMemcpyAsync(targets.data(), a.targets, sizeof(int32_t) * N, cudaMemcpyDeviceToHost, ctx.stream));
    wait_stream(op, ctx);
  }
  const bool targets_ok = error_flags().check_on_host(ValueCheck::targets(op, V, a.ignore_index), targets.data(), N);
  int64_t n_valid = 0;
  if (targets_ok)
    for (int64_t i = 0; i < N; ++i) n_valid += targets[i] != a.ignore_index;

  FusedCall call(op, ctx, dt, {NamedInput{"h", a.h, N * d}, NamedInput{"w", a.w, V * d}}, n_valid);
  if (n_valid == 0) {
    if (a.dh) CUDA_CHECK(op, cudaMemsetAsync(a.dh, 0, dtype_size(dt) * N * d, ctx.stream));
    if (a.dw) CUDA_CHECK(op, cudaMemsetAsync(a.dw, 0, sizeof(float) * V * d, ctx.stream));
    if (N > 0) CUDA_CHECK(op, cudaMemsetAsync(a.row_loss, 0, sizeof(float) * N, ctx.stream));
    return finish_losses(op, ctx, call, nullptr, a.row_loss, 0, a.reduction, 0, a.loss);  // loss 0
  }

  DeviceBuffer row_loss = call.scratch(sizeof(double) * N);
  CUDA_CHECK(op, cudaMemsetAsync(row_loss.get(), 0, sizeof(double) * N, ctx.stream));  // skipped chunks read 0
  const ChunkBlocks blocks(call, a.chunk_rows, N, V, 1, grad && bf16 ? 1 : 0, a.workspace_budget);
  const int64_t chunk = blocks.rows;
  float* z = blocks.f32(0);

  const double c = a.reduction == Reduction::Mean ? a.grad_scale / n_valid : a.grad_scale;
  const cudaDataType_t tin = cuda_type(dt), tg = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  void* g = bf16 ? blocks.bf16(0) : z;
  bool dw_started = false;
  for (int64_t c0 = 0; c0 < N; c0 += chunk) {
    const int64_t nc = std::min(chunk, N - c0);
    bool any = false;
    for (int64_t r = 0; r < nc && !any; ++r) any = targets[c0 + r] != a.ignore_index;
    if (!any) {  // a fully ignored chunk costs nothing and leaves dh zero
      if (a.dh) CUDA_CHECK(op, cudaMemsetAsync(elem_offset(a.dh, c0 * d, dt), 0, dtype_size(dt) * nc * d, ctx.stream));
      continue;
    }
    const void* h_c = elem_offset(a.h, c0 * d, dt);
    gemm_rm(op, ctx.blas, false, true, nc, V, d, 1.f, h_c, tin, d, a.w, tin, d, 0.f, z, CUDA_R_32F, V);

    CeRowParams p;
    p.z = z;
    p.g = grad ? g : nullptr;
    p.targets = a.targets + c0;
    p.row_loss = row_loss.as<double>() + c0;
    p.status = call.status();
    p.row0 = c0;
    p.V = static_cast<int>(V);
    p.ignore_index = a.ignore_index;
    p.c = c;
    p.eps = a.label_smoothing;
    p.lam = a.z_loss_weight;
    p.u = static_cast<float>(c * a.label_smoothing / V);
    p.hit = static_cast<float>(c * (1 - a.label_smoothing));
    p.grad = grad;
    launch_row_kernel(op, ctx, nc, p, bf16 && grad);

    if (grad) {
      void* dh_c = a.dh ? elem_offset(a.dh, c0 * d, dt) : nullptr;
      logits_backward(op, ctx.blas, nc, V, d, g, tg, a.w, h_c, tin, dh_c, a.dw, dw_started ? 1.f : 0.f);
      dw_started = true;
    }
  }
  if (a.dw && !dw_started) CUDA_CHECK(op, cudaMemsetAsync(a.dw, 0, sizeof(float) * V * d, ctx.stream));

  return finish_losses(op, ctx, call, row_loss.as<double>(), a.row_loss, N, a.reduction, n_valid, a.loss);
}

// The table entries (native/core/ops.def).
void linear_cross_entropy_cuda(const OpCall& c) { c.report(linear_cross_entropy(read_linear_cross_entropy(c))); }

}  // namespace vw::cuda
