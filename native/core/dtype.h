// Element types shared by every backend. The name strings are the ones TypeScript uses.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

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

}  // namespace vw
