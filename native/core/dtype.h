// Element types shared by every backend. The name strings are the ones TypeScript uses.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "error.h"

namespace vw {

enum class DType : int32_t { F32 = 0, I32 = 1, BF16 = 2 };
constexpr int kDTypeCount = 3;

inline const char* dtype_name(DType t) {
  static const char* names[kDTypeCount] = {"float32", "int32", "bfloat16"};
  return names[static_cast<int>(t)];
}
inline size_t dtype_size(DType t) {
  static const size_t sizes[kDTypeCount] = {4, 4, 2};
  return sizes[static_cast<int>(t)];
}

// The DType of a TypeScript dtype name; `op` names the caller in the error.
inline DType dtype_from_name(std::string_view s, const char* op) {
  for (int k = 0; k < kDTypeCount; ++k)
    if (s == dtype_name(static_cast<DType>(k))) return static_cast<DType>(k);
  throw_type_error("[", op, "] unknown dtype '", s, "'");
}

}  // namespace vw
