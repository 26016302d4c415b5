// The fused vocabulary ops of the table (native/core/ops.def): their argument structs and the one reader
// of each from an OpCall, shared by the CPU (native/cpu) and CUDA (native/cuda) backends. Shapes: N rows, d hidden width, V vocabulary, dE embedding width. All matrices are row-major
// and contiguous. Pointers are device pointers of the backend that runs the kernel; float tensors are
// `dtype` (float32 everywhere, bfloat16 on CUDA), weight gradients are always float32.
//
// The gradient outputs of the two losses are each optional with grad = 1: a null one is not computed and its
// GEMM is skipped on both backends (a frozen lm_head's dW [V, d] in LoRA fine-tuning: no buffer, no dz^T h per
// chunk). The readers below decide which are wanted, once for both backends; at least one must be.
//
// Every kernel streams over row chunks of `chunk_rows` rows: only a [chunk_rows, V] block of logits (and
// its gradient, in place) exists at a time, so the workspace is bounded and no N x V tensor is allocated. The CUDA
// losses in bf16 write their gradient rows into bf16 blocks of a larger group of rows instead (plan_chunks below).
#pragma once
#include <climits>
#include <cstdint>

#include "dtype.h"
#include "op_args.h"

namespace vw {

enum class Reduction : int32_t { Mean = 0, Sum = 1, None = 2 };

// Chosen row chunk: the caller's value if > 0, else the fewest chunks whose `bufs` float32 [rows, V]
// buffers fit in `budget_bytes`, balanced (576 rows in 262-row chunks become 3 x 192, not 262+262+52,
// since a thin last chunk runs its GEMMs far below peak). At least 1, at most n.
inline int64_t pick_chunk_rows(int64_t requested, int64_t n, int64_t V, int bufs, int64_t budget_bytes) {
  if (n <= 0) return 0;
  if (requested > 0) return requested < n ? requested : n;
  const int64_t per_row = V * 4 * bufs;
  int64_t rows = per_row > 0 ? budget_bytes / per_row : n;
  if (rows < 1) rows = 1;
  if (rows >= n) return n;
  const int64_t chunks = (n + rows - 1) / rows;
  return (n + chunks - 1) / chunks;
}

// How a fused op splits its n rows when its gradient rows have blocks of their own (bfloat16 on CUDA, since
// cuBLAS wants one A/B type) rather than overwriting the float32 logits: `logit_rows` rows per float32 block (the
// logit GEMMs and the row pass) and `group_rows` rows per gradient block, which several row passes fill before the
// backward GEMMs run once for the whole group. Why: each backward pass adds its rows to the float32 weight gradients
// [V, d] (beta 1: read and written whole), 1 GB per weight at V 32000, d 4096, so their traffic scales with the
// number of passes. Giving the budget to the 2-byte gradient rows instead of the 4-byte logit rows makes the groups
// larger: the bf16 KL at N 9216, V 32000 and 256 MiB made 14 passes of 659 rows over both weight gradients (28 GB of
// traffic); now 6 of 1536 (12 GB).
// kLogitRows keeps the logit GEMMs large enough for the tensor cores (a [256, V] float32 block: V 32000 gives 250
// 128 x 256 tiles, two waves of an H200's 132 SMs); a requested chunk (chunkRows) sets logit_rows instead, and the
// groups are then whole multiples of it. Groups are balanced, and so are the logit chunks within a group. One level
// (group_rows = logit_rows = pick_chunk_rows's chunk, every block counted per row) when not `grouped` (an op whose
// bf16 blocks follow its logit chunks), without gradient blocks (float32, or no gradient), or when the budget holds
// fewer than twice as many gradient rows as logit rows: a group that small saves few passes and would halve the logit
// GEMMs.
struct ChunkPlan {
  int64_t logit_rows, group_rows;
};
constexpr int64_t kLogitRows = 256;

// The balanced chunk of `rows` rows in chunks of at most `most`.
inline int64_t balanced(int64_t rows, int64_t most) {
  const int64_t chunks = (rows + most - 1) / most;
  return (rows + chunks - 1) / chunks;
}

inline ChunkPlan plan_chunks(int64_t requested, int64_t n, int64_t V, int f32_blocks, int bf16_blocks, int64_t budget,
                             bool grouped = true) {
  if (budget < 1) budget = 1;
  // pick_chunk_rows counts whole float32 buffers, so it is called in half-float units
  const int64_t one = pick_chunk_rows(requested, n, V, 2 * f32_blocks + bf16_blocks, 2 * budget);
  if (!grouped || n <= 0 || V <= 0 || f32_blocks <= 0 || bf16_blocks <= 0) return {one, one};
  int64_t logit = requested > 0 ? one : (one < kLogitRows ? one : kLogitRows);
  const int64_t logit_row_bytes = 4 * V * f32_blocks, grad_row_bytes = 2 * V * bf16_blocks;
  const int64_t rest = logit <= budget / logit_row_bytes ? budget - logit * logit_row_bytes : 0;
  int64_t group = rest / grad_row_bytes;
  if (group < 2 * logit) return {one, one};
  if (group >= n) return {requested > 0 ? logit : balanced(n, logit), n};
  if (requested > 0) {
    // whole requested chunks per group (no thin chunk in each), balanced in those units within the room found
    const int64_t units = (n + logit - 1) / logit, most = group / logit;
    const int64_t per = balanced(units, most) * logit;
    return {logit, per < n ? per : n};
  }
  group = balanced(n, group);
  return {balanced(group, logit), group};
}

// The loss a fused op reports: the sum of its row losses, divided by `rows` for Mean (the valid rows of
// the cross-entropy, batchmean for the KL).
inline double reduce_loss(double total, Reduction reduction, int64_t rows) {
  return reduction == Reduction::Mean ? total / rows : total;
}

// The factor reduce_loss applies to the row-loss total (0 when no row counts: the loss is 0 then).
inline double loss_scale(Reduction reduction, int64_t rows) {
  return reduction == Reduction::Mean ? (rows > 0 ? 1.0 / static_cast<double>(rows) : 0.0) : 1.0;
}

// loss_i = (1 - eps) (lse_i - z_i[t_i]) + eps (lse_i - mean_v z_iv) + z_loss_weight * lse_i^2,
// z_i = h_i W^T. Rows whose target is ignore_index contribute nothing (loss 0, zero gradient).
struct LinearCrossEntropyArgs {
  int64_t N = 0, d = 0, V = 0;
  DType dtype = DType::F32;
  const void* h = nullptr;           // [N, d]
  const void* w = nullptr;           // [V, d]
  const int32_t* targets = nullptr;  // [N]
  int32_t ignore_index = -100;
  Reduction reduction = Reduction::Mean;
  double grad_scale = 1.0;
  double label_smoothing = 0.0;
  double z_loss_weight = 0.0;
  bool compute_grad = true;
  int64_t chunk_rows = 0;
  int64_t workspace_budget = 0;  // bytes, >= 1 (the default per device is TypeScript's)
  // outputs (dh, dw: null when !compute_grad or not asked for, and then not computed)
  void* dh = nullptr;         // [N, d], dtype
  float* dw = nullptr;        // [V, d], float32
  float* row_loss = nullptr;  // [N] float32
  float* loss = nullptr;      // [1] float32, optional: the reduced loss stays on the device (stats.loss NaN)
};

// KL(softmax(x Wvm^T / T) || softmax(h Wlm^T / T)) per row, reduced batchmean / sum / none.
struct VisualWordKLArgs {
  int64_t M = 0, d = 0, V = 0;
  DType dtype = DType::F32;
  const void* h = nullptr;     // [M, d]  LLM hidden states (the predicting side)
  const void* w_lm = nullptr;  // [V, d]  lm_head
  const void* x = nullptr;     // [M, d]  projected patch features of the NEXT position (the target side)
  const void* w_vm = nullptr;  // [V, d]  vm_head
  Reduction reduction = Reduction::Mean;  // Mean = batchmean (/ M)
  double temperature = 1.0;
  double grad_scale = 1.0;
  bool detach_target = false;
  bool compute_grad = true;
  int64_t chunk_rows = 0;
  int64_t workspace_budget = 0;  // bytes, >= 1 (the default per device is TypeScript's)
  // outputs (the gradients: null when !compute_grad or not asked for, and then not computed; dx and dw_vm
  // also when detach_target)
  void* dh = nullptr;          // [M, d] dtype
  float* dw_lm = nullptr;      // [V, d] f32
  void* dx = nullptr;          // [M, d] dtype
  float* dw_vm = nullptr;      // [V, d] f32
  float* row_loss = nullptr;   // [M] f32
  float* loss = nullptr;       // [1] f32, optional: the reduced loss stays on the device (stats.loss NaN)
};

// Top-k of softmax(x Wvm^T) per row, probabilities normalised over the whole vocabulary.
// Ties are broken by the lower token id.
struct VisualWordsArgs {
  int64_t N = 0, d = 0, V = 0, k = 1;
  DType dtype = DType::F32;
  const void* x = nullptr;     // [N, d]
  const void* w_vm = nullptr;  // [V, d]
  int64_t chunk_rows = 0;
  int64_t workspace_budget = 0;  // bytes, >= 1 (the default per device is TypeScript's)
  int32_t* ids = nullptr;      // [N, k]
  float* probs = nullptr;      // [N, k]
};

// out = softmax(x Wvm^T) E   and its backward (an attention over V "tokens": q = x, K = Wvm, V = E).
struct PseudoImageFeaturesArgs {
  int64_t N = 0, d = 0, V = 0, dE = 0;
  DType dtype = DType::F32;
  const void* x = nullptr;         // [N, d]
  const void* w_vm = nullptr;      // [V, d]
  const void* e = nullptr;         // [V, dE]
  const void* grad_out = nullptr;  // [N, dE] (backward only)
  int64_t chunk_rows = 0;
  int64_t workspace_budget = 0;  // bytes, >= 1 (the default per device is TypeScript's)
  void* out = nullptr;             // [N, dE] dtype (forward)
  void* dx = nullptr;              // [N, d]  dtype (backward)
  float* dw_vm = nullptr;          // [V, d]  f32   (backward)
  float* de = nullptr;             // [V, dE] f32   (backward)
};

// ------------------------------------------------------------------------------------------ readers
// Each reads the op's parameters and buffers as ops.def lists them (the buffer checks are OpCall's). A
// backend's table entry is then one line: `void <op>_<backend>(const OpCall& c) { c.report(<op>(read_<op>(c))); }`
// around its typed kernel `OpStats <op>(const <Op>Args&)`.

inline Reduction reduction_arg(const OpCall& c, size_t k) {
  return static_cast<Reduction>(int_arg(c, k, "reduction (0 mean, 1 sum, 2 none)", 0, 2));
}

// An optional gradient output: checked as OpCall::out_any when a buffer is given, else null. *given counts
// the slots given: by presence, not by pointer, since a zero-element buffer (N = 0) has a null pointer too.
inline void* grad_out(const OpCall& c, size_t k, int64_t elems, DType t, const char* name, int* given) {
  if (k >= c.out.size() || !c.out[k].present) return nullptr;
  ++*given;
  return c.out_any(k, elems, t, name);
}

// chunkRows (>= 0, 0 = as many as the budget allows) and workspaceBudget (>= 1 byte) at k, k + 1.
inline void chunk_args(const OpCall& c, size_t k, int64_t* chunk_rows, int64_t* budget) {
  *chunk_rows = size_arg(c, k, "chunkRows");
  *budget = min_arg(c, k + 1, "workspaceBudget", 1);
}

inline LinearCrossEntropyArgs read_linear_cross_entropy(const OpCall& c) {
  LinearCrossEntropyArgs a;
  a.N = size_arg(c, 0, "N"), a.d = min_arg(c, 1, "d", 1), a.V = min_arg(c, 2, "V", 1);
  a.ignore_index = static_cast<int32_t>(int_arg(c, 3, "ignoreIndex", INT32_MIN, INT32_MAX));
  a.reduction = reduction_arg(c, 4);
  a.compute_grad = flag_arg(c, 5, "grad");
  chunk_args(c, 6, &a.chunk_rows, &a.workspace_budget);
  a.grad_scale = finite_arg(c, 0, "gradScale");
  a.label_smoothing = finite_arg(c, 1, "labelSmoothing");
  a.z_loss_weight = finite_arg(c, 2, "zLossWeight");
  if (a.label_smoothing < 0 || a.label_smoothing > 1) throw_range_error("[", c.op, "] labelSmoothing must be in [0, 1], got ", a.label_smoothing);
  if (a.z_loss_weight < 0) throw_range_error("[", c.op, "] zLossWeight must be >= 0, got ", a.z_loss_weight);
  a.dtype = float_type_of(c.in, 0);
  const int64_t Nd = numel(c, {a.N, a.d}), Vd = numel(c, {a.V, a.d});
  a.h = c.in_any(0, Nd, a.dtype, "h");
  a.w = c.in_any(1, Vd, a.dtype, "w");
  a.targets = c.in_i32(2, a.N, "targets");
  a.row_loss = c.out_f32(0, a.N, "rowLoss");
  if (a.compute_grad) {
    int given = 0;
    a.dh = grad_out(c, 1, Nd, a.dtype, "dh", &given);
    a.dw = static_cast<float*>(grad_out(c, 2, Vd, DType::F32, "dw", &given));
    if (given == 0) throw_type_error("[", c.op, "] grad = 1 but dh and dw are both null: give one, or pass grad = 0");
  }
  if (c.has_out(3)) a.loss = c.out_f32(3, 1, "loss");
  return a;
}

inline VisualWordKLArgs read_visual_word_kl(const OpCall& c) {
  VisualWordKLArgs a;
  a.M = size_arg(c, 0, "M"), a.d = min_arg(c, 1, "d", 1), a.V = min_arg(c, 2, "V", 1);
  a.reduction = reduction_arg(c, 3);
  a.compute_grad = flag_arg(c, 4, "grad");
  a.detach_target = flag_arg(c, 5, "detachTarget");
  chunk_args(c, 6, &a.chunk_rows, &a.workspace_budget);
  a.temperature = finite_arg(c, 0, "temperature");
  a.grad_scale = finite_arg(c, 1, "gradScale");
  if (!(a.temperature > 0)) throw_range_error("[", c.op, "] temperature must be > 0, got ", a.temperature);
  a.dtype = float_type_of(c.in, 0);
  const int64_t Md = numel(c, {a.M, a.d}), Vd = numel(c, {a.V, a.d});
  a.h = c.in_any(0, Md, a.dtype, "h");
  a.w_lm = c.in_any(1, Vd, a.dtype, "wLm");
  a.x = c.in_any(2, Md, a.dtype, "x");
  a.w_vm = c.in_any(3, Vd, a.dtype, "wVm");
  a.row_loss = c.out_f32(0, a.M, "rowLoss");
  if (a.compute_grad) {
    int given = 0;
    a.dh = grad_out(c, 1, Md, a.dtype, "dh", &given);
    a.dw_lm = static_cast<float*>(grad_out(c, 2, Vd, DType::F32, "dwLm", &given));
    if (!a.detach_target) {  // with detachTarget, slots 3 and 4 are not read
      a.dx = grad_out(c, 3, Md, a.dtype, "dx", &given);
      a.dw_vm = static_cast<float*>(grad_out(c, 4, Vd, DType::F32, "dwVm", &given));
    }
    if (given == 0)
      throw_type_error("[", c.op, "] grad = 1 but every gradient output is null (dh, dwLm",
                       a.detach_target ? "" : ", dx, dwVm", "): give one, or pass grad = 0");
  }
  if (c.has_out(5)) a.loss = c.out_f32(5, 1, "loss");
  return a;
}

inline VisualWordsArgs read_visual_words(const OpCall& c) {
  VisualWordsArgs a;
  a.N = size_arg(c, 0, "N"), a.d = min_arg(c, 1, "d", 1), a.V = min_arg(c, 2, "V", 1);
  a.k = int_arg(c, 3, "k", 1, a.V);
  chunk_args(c, 4, &a.chunk_rows, &a.workspace_budget);
  a.dtype = float_type_of(c.in, 0);
  a.x = c.in_any(0, numel(c, {a.N, a.d}), a.dtype, "x");
  a.w_vm = c.in_any(1, numel(c, {a.V, a.d}), a.dtype, "wVm");
  a.ids = c.out_i32(0, numel(c, {a.N, a.k}), "ids");
  a.probs = c.out_f32(1, numel(c, {a.N, a.k}), "probs");
  return a;
}

// Both PIF ops: the forward writes out; the backward reads gradOut and writes dx, dwVm, de.
inline PseudoImageFeaturesArgs read_pseudo_image_features(const OpCall& c, bool backward) {
  PseudoImageFeaturesArgs a;
  a.N = size_arg(c, 0, "N"), a.d = min_arg(c, 1, "d", 1), a.V = min_arg(c, 2, "V", 1), a.dE = min_arg(c, 3, "dE", 1);
  chunk_args(c, 4, &a.chunk_rows, &a.workspace_budget);
  a.dtype = float_type_of(c.in, 0);
  const int64_t Nd = numel(c, {a.N, a.d}), Vd = numel(c, {a.V, a.d}), NdE = numel(c, {a.N, a.dE}), VdE = numel(c, {a.V, a.dE});
  a.x = c.in_any(0, Nd, a.dtype, "x");
  a.w_vm = c.in_any(1, Vd, a.dtype, "wVm");
  a.e = c.in_any(2, VdE, a.dtype, "e");
  if (!backward) {
    a.out = c.out_any(0, NdE, a.dtype, "out");
  } else {
    a.grad_out = c.in_any(3, NdE, a.dtype, "gradOut");
    a.dx = c.out_any(0, Nd, a.dtype, "dx");
    a.dw_vm = c.out_f32(1, Vd, "dwVm");
    a.de = c.out_f32(2, VdE, "de");
  }
  return a;
}

}  // namespace vw
