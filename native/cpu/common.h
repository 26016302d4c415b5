// Helpers shared by the CPU fused kernels: the finiteness checks, the logit blocks of the
// row-chunk loop and the backward of the logits, the row-loss totals.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../core/error.h"
#include "../core/error_flags.h"
#include "../core/fused_args.h"
#include "gemm.h"
#include "host_memory.h"
#include "parallel.h"
#include "vec.h"

namespace vw::cpu {

// Zeroes n floats. A zero-size buffer has no memory (a null pointer), which memset must never be given
// (it is declared nonnull: undefined behaviour even for 0 bytes).
inline void zero_f32(void* p, int64_t n) {
  if (n > 0) std::memset(p, 0, sizeof(float) * static_cast<size_t>(n));
}

// The fused losses' optional `loss` output (ops.def): the reduced loss written there instead of reported, as
// the CUDA backend does, so callers get the same stats from both.
inline OpStats loss_to_output(OpStats st, float* loss) {
  if (loss) {
    *loss = static_cast<float>(st.loss);
    st.loss = std::nan("");
  }
  return st;
}

// The first flat index of a NaN or +-Inf in x[0, n), or -1: blocks scanned in parallel, the first bad one searched.
inline int64_t first_non_finite(const float* x, int64_t n) {
  const int64_t block = 1 << 16;
  std::vector<char> bad(static_cast<size_t>((n + block - 1) / block), 0);
  parallel_for(static_cast<int64_t>(bad.size()), 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      int64_t s = b * block, e = std::min(n, s + block);
      bad[b] = !vec_all_finite(x + s, e - s);
    }
  });
  for (size_t b = 0; b < bad.size(); ++b) {
    if (!bad[b]) continue;
    for (int64_t i = b * block; i < n; ++i)
      if (!std::isfinite(x[i])) return i;
  }
  return -1;
}

// Throws a RangeError naming the argument and the first bad index if x holds NaN or +-Inf.
inline void check_finite(const char* op, const char* name, const void* ptr, int64_t n) {
  const float* x = static_cast<const float*>(ptr);
  const int64_t i = first_non_finite(x, n);
  if (i >= 0) throw_range_error("[", op, "] ", name, " contains a non-finite value (", x[i], ") at flat index ", i);
}

// The fused losses' form (linear_cross_entropy, visual_word_kl), which defer as the CUDA backend does: in sync
// mode check_finite; in async mode (native/core/error_flags.h) with the loss kept on the device (`deferred`: the op
// has no host result, whose return would be a synchronisation) the first bad element becomes an error flag, raised
// at the next synchronisation, and false is returned: the op then leaves zero outputs, as for a bad target.
inline bool finite_or_flag(const char* op, const char* name, const void* ptr, int64_t n, bool deferred) {
  if (!error_flags().async() || !deferred) {
    check_finite(op, name, ptr, n);
    return true;
  }
  const float* x = static_cast<const float*>(ptr);
  const int64_t i = first_non_finite(x, n);
  if (i < 0) return true;
  error_flags().record(ValueCheck::non_finite(op, name), static_cast<uint64_t>(i), ValueCheck::bits_of_float(x[i]));
  return false;
}

inline void check_logit_row(const char* op, float max, int64_t row) {
  if (!std::isfinite(max))
    throw_range_error("[", op, "] logits of row ", row, " are not finite (", max, "): the inputs overflow float32 in the projection");
}

// The [rows, V] float32 logit blocks a fused op streams its row chunks through: `count` blocks of `rows`
// rows, the chunk pick_chunk_rows makes of the call's chunkRows and workspace budget for n rows; both are
// recorded in the op's stats (chunk_rows, workspace_bytes). The memory comes from the host cache
// (host_memory.h), uninitialised: every chunk's logits are written by a GEMM before they are read, and a
// fresh 32 MiB vector per call cost a memset plus a page fault per 4 KiB (20-30 ms of a 150 ms
// cross-entropy at d 256, V 4096, N 2048).
class LogitBlocks {
 public:
  LogitBlocks(OpStats& st, int64_t requested, int64_t n, int64_t V, int count, int64_t budget)
      : rows(pick_chunk_rows(requested, n, V, count, budget)), V_(V),
        bytes_(static_cast<size_t>(count * rows * V) * sizeof(float)),
        mem_(static_cast<float*>(bytes_ ? host_alloc(bytes_) : nullptr)) {
    st.chunk_rows = st.group_rows = rows;  // the gradient overwrites the logits: one level
    st.workspace_bytes = static_cast<int64_t>(bytes_);
  }
  ~LogitBlocks() {
    if (mem_) host_free(mem_, bytes_);
  }
  LogitBlocks(const LogitBlocks&) = delete;
  LogitBlocks& operator=(const LogitBlocks&) = delete;
  float* block(int k) { return mem_ + k * rows * V_; }

  const int64_t rows;  // per chunk

 private:
  const int64_t V_;
  const size_t bytes_;
  float* const mem_;
};

// The backward of a chunk's logits z = x_c W^T (x_c [nc, d], W [V, d]) from dz [nc, V]:
// dx_c = dz W, dW += dz^T x_c; a null dx_c or dW is not wanted, and its GEMM is skipped.
inline void logits_backward(int64_t nc, int64_t V, int64_t d, const float* dz, const float* w, const float* x_c,
                            float* dx_c, float* dw) {
  if (dx_c) sgemm(false, false, nc, d, V, 1.f, dz, V, w, d, 0.f, dx_c, d);
  if (dw) sgemm(true, false, V, d, nc, 1.f, dz, V, x_c, d, 1.f, dw, d);
}

// Writes the per-row losses (double) to the float32 output and returns their sum, in row order.
inline double store_row_losses(const std::vector<double>& loss, float* out) {
  double total = 0;
  for (size_t i = 0; i < loss.size(); ++i) {
    total += loss[i];
    out[i] = static_cast<float>(loss[i]);
  }
  return total;
}

}  // namespace vw::cpu
