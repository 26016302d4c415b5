// Helpers shared by the CPU kernels: argument re-checks and the row-chunk loop.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../core/error.h"
#include "../core/fused_args.h"
#include "parallel.h"
#include "vec.h"

namespace vw::cpu {

// Zeroes n floats. A zero-size buffer has no memory (a null pointer), which memset must never be given
// (it is declared nonnull: undefined behaviour even for 0 bytes).
inline void zero_f32(void* p, int64_t n) {
  if (n > 0) std::memset(p, 0, sizeof(float) * static_cast<size_t>(n));
}

inline void check_dims(const char* op, int64_t rows, int64_t d, int64_t V) {
  if (rows < 0 || d < 1 || V < 1)
    throw_range_error("[", op, "] invalid sizes: rows=", rows, " d=", d, " V=", V, " (need rows >= 0, d >= 1, V >= 1)");
}

inline void check_f32(const char* op, DType t) {
  if (t != DType::F32) throw_type_error("[", op, "] the CPU backend computes in float32, got ", dtype_name(t));
}

// Throws a RangeError naming the argument and the first bad index if x holds NaN or +-Inf.
inline void check_finite(const char* op, const char* name, const void* ptr, int64_t n) {
  const float* x = static_cast<const float*>(ptr);
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
      if (!std::isfinite(x[i])) throw_range_error("[", op, "] ", name, " contains a non-finite value (", x[i], ") at flat index ", i);
  }
}

inline void check_logit_row(const char* op, float max, int64_t row) {
  if (!std::isfinite(max))
    throw_range_error("[", op, "] logits of row ", row, " are not finite (", max, "): the inputs overflow float32 in the projection");
}


}  // namespace vw::cpu
