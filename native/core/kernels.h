// Argument structs of the fused vocabulary kernels, shared by the CPU (native/cpu) and CUDA (native/cuda)
// backends. Shapes: N rows, d hidden width, V vocabulary, dE embedding width. All matrices are row-major
// and contiguous. Pointers are device pointers of the backend that runs the kernel; float tensors are
// `dtype` (float32 everywhere, bfloat16 on CUDA), weight gradients are always float32.
//
// Every kernel streams over row chunks of `chunk_rows` rows: only a [chunk_rows, V] block of logits (and
// its gradient, in place) exists at a time, so the workspace is bounded and no N x V tensor is allocated.
#pragma once
#include <cstdint>

#include "dtype.h"

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
  int64_t workspace_budget = 64ll << 20;
  // outputs
  void* dh = nullptr;         // [N, d], dtype (may be null when !compute_grad)
  float* dw = nullptr;        // [V, d], float32
  float* row_loss = nullptr;  // [N], host float32
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
  int64_t workspace_budget = 64ll << 20;
  // outputs
  void* dh = nullptr;          // [M, d] dtype
  float* dw_lm = nullptr;      // [V, d] f32
  void* dx = nullptr;          // [M, d] dtype (null when detach_target)
  float* dw_vm = nullptr;      // [V, d] f32 (null when detach_target)
  float* row_loss = nullptr;   // [M] host f32
};

// Top-k of softmax(x Wvm^T) per row, probabilities normalised over the whole vocabulary.
// Ties are broken by the lower token id.
struct VisualWordsArgs {
  int64_t N = 0, d = 0, V = 0, k = 1;
  DType dtype = DType::F32;
  const void* x = nullptr;     // [N, d]
  const void* w_vm = nullptr;  // [V, d]
  int64_t chunk_rows = 0;
  int64_t workspace_budget = 64ll << 20;
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
  int64_t workspace_budget = 64ll << 20;
  void* out = nullptr;             // [N, dE] dtype (forward)
  void* dx = nullptr;              // [N, d]  dtype (backward)
  float* dw_vm = nullptr;          // [V, d]  f32   (backward)
  float* de = nullptr;             // [V, dE] f32   (backward)
};

struct KernelStats {
  double loss = 0.0;            // reduced loss (linear_cross_entropy, visual_word_kl)
  int64_t rows = 0;             // rows that contributed (non-ignored for CE)
  int64_t chunk_rows = 0;       // row chunk actually used
  int64_t workspace_bytes = 0;  // peak scratch allocated by the kernel (beyond inputs and outputs)
};

}  // namespace vw
