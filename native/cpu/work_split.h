// Work-split sizes and row-id helpers shared by the CPU ops. Parameter readers are backend-neutral
// (native/core/op_args.h).
#pragma once
#include <algorithm>
#include <cstdint>

#include "../core/op_args.h"
#include "../core/rows_args.h"

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

// The body of embedding_forward / gather_rows and embedding_backward / scatter_add_rows (rows.cpp): the ids
// checked against [0, S) first (the message names a.idx_name), then
//   gather:      dst[i, :] = src[idx[i], :]          (src [S, C], idx [n], dst [n, C])
//   scatter-add: dst[idx[i], :] += src[i, :]        (deterministic, race-free; see rows.cpp)
void move_rows(const OpCall& c, const RowMoveArgs& a);

}  // namespace vw::cpu
