// Parameter checks and work-split sizes shared by the CPU engine ops. Every integer parameter that sizes a
// buffer view is validated here first, so a negative or absurd value becomes a RangeError naming the op
// and the argument instead of a wrapped size; OpCall::in_f32 etc. then check the buffers against it.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>

#include "../core/engine.h"

namespace vw::cpu {

// Elements per part of a parallel element-wise pass: below this a call stays on the calling thread
// (waking the pool costs more than the pass itself).
constexpr int64_t kElemGrain = int64_t{1} << 15;

// Rows per part when each row holds `cols` elements (at least one row).
inline int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, kElemGrain / std::max<int64_t>(cols, 1)); }

// Row chunks of a deterministic column reduction over R rows of C: fixed by (R, C) alone (at most 16,
// about two grains of work each), never by the thread count, so per-chunk partial sums merged in chunk
// order give bit-identical results on any machine.
inline int64_t reduction_chunks(int64_t R, int64_t C) {
  return std::max<int64_t>(1, std::min<int64_t>({16, R, R * std::max<int64_t>(C, 1) / (2 * kElemGrain)}));
}

// Integer parameter k as a size (>= 0).
inline int64_t size_arg(const OpCall& c, size_t k, const char* name) {
  const int64_t v = c.ip(k, name);
  if (v < 0) throw_range_error("[", c.op, "] ", name, " must be >= 0, got ", v);
  return v;
}

// Integer parameter k as a flag (0 or 1).
inline bool flag_arg(const OpCall& c, size_t k, const char* name) {
  const int64_t v = c.ip(k, name);
  if (v != 0 && v != 1) throw_range_error("[", c.op, "] ", name, " must be 0 or 1, got ", v);
  return v == 1;
}

// Float parameter k, required to be finite.
inline double finite_arg(const OpCall& c, size_t k, const char* name) {
  const double v = c.fp(k, name);
  if (!std::isfinite(v)) throw_range_error("[", c.op, "] ", name, " must be finite, got ", v);
  return v;
}

// Product of sizes (each >= 0); a RangeError rather than a wrapped value when it overflows int64.
inline int64_t numel(const OpCall& c, std::initializer_list<int64_t> dims) {
  int64_t n = 1;
  for (int64_t d : dims)
    if (__builtin_mul_overflow(n, d, &n)) throw_range_error("[", c.op, "] sizes overflow 64-bit element counts");
  return n;
}

// a + b for element counts, with the same overflow check.
inline int64_t add_elems(const OpCall& c, int64_t a, int64_t b) {
  int64_t s;
  if (__builtin_add_overflow(a, b, &s)) throw_range_error("[", c.op, "] sizes overflow 64-bit element counts");
  return s;
}

// Inputs/outputs of the ops with a variable number of tensors must match their count parameter exactly.
inline void expect_counts(const OpCall& c, size_t n_in, size_t n_out) {
  if (c.in.size() != n_in || c.out.size() != n_out)
    throw_type_error("[", c.op, "] expects ", n_in, " inputs and ", n_out, " outputs, got ", c.in.size(), " and ", c.out.size());
}

// Shared by embedding_forward / gather_rows and embedding_backward / scatter_add_rows (rows.cpp):
//   gather:      dst[i, :] = src[idx[i], :]          (src [S, C], idx [n], dst [n, C])
//   scatter-add: dsrc[idx[i], :] += ddst[i, :]      (deterministic, race-free; see rows.cpp)
// idx is checked against [0, S) first; the message names `idx_name`.
void check_row_ids(const OpCall& c, const int32_t* idx, int64_t n, int64_t S, const char* idx_name);
void gather_rows_f32(const float* src, const int32_t* idx, float* dst, int64_t n, int64_t C);
void scatter_add_rows_f32(const float* ddst, const int32_t* idx, float* dsrc, int64_t S, int64_t n, int64_t C);

}  // namespace vw::cpu
