// Work-split sizes and row-id helpers shared by the CPU ops. Parameter readers are backend-neutral
// (native/core/op_args.h).
#pragma once
#include <algorithm>
#include <cstdint>

#include "../core/op_args.h"

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

// Shared by embedding_forward / gather_rows and embedding_backward / scatter_add_rows (rows.cpp):
//   gather:      dst[i, :] = src[idx[i], :]          (src [S, C], idx [n], dst [n, C])
//   scatter-add: dsrc[idx[i], :] += ddst[i, :]      (deterministic, race-free; see rows.cpp)
// idx is checked against [0, S) first; the message names `idx_name`.
void check_row_ids(const OpCall& c, const int32_t* idx, int64_t n, int64_t S, const char* idx_name);
void gather_rows_f32(const float* src, const int32_t* idx, float* dst, int64_t n, int64_t C);
void scatter_add_rows_f32(const float* ddst, const int32_t* idx, float* dsrc, int64_t S, int64_t n, int64_t C);

}  // namespace vw::cpu
