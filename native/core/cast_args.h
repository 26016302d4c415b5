// Parameters and buffers of cast and dropout (native/core/ops.def), read once for both backends.
#pragma once
#include <cstdint>

#include "op_args.h"

namespace vw {

// in [X] out [Y], i [n]: Y = X in Y's float type. Each of X and Y is float32 or bfloat16 (its buffer's
// dtype; any other dtype fails as "<name> must be float32, got <dtype>").
struct CastArgs {
  int64_t n = 0;
  DType tx = DType::F32, ty = DType::F32;
  const void* x = nullptr;
  void* y = nullptr;
};

inline CastArgs read_cast(const OpCall& c) {
  CastArgs a;
  a.n = size_arg(c, 0, "n");
  a.tx = float_type_of(c.in, 0), a.ty = float_type_of(c.out, 0);
  a.x = c.in_any(0, a.n, a.tx, "X");
  a.y = c.out_any(0, a.n, a.ty, "Y");
  return a;
}

// dropout: in [X] out [Y], i [n, seed, threshold] f [scale] (native/core/dropout.h).
struct DropoutArgs {
  int64_t n = 0;
  uint64_t seed = 0;
  uint32_t threshold = 0;
  float scale = 1.f;
  DType t = DType::F32;  // X and Y: float32, or both bfloat16
  const void* x = nullptr;
  void* y = nullptr;
};

inline DropoutArgs read_dropout(const OpCall& c) {
  DropoutArgs a;
  a.n = size_arg(c, 0, "n");
  a.seed = static_cast<uint64_t>(int_arg(c, 1, "seed", 0, (int64_t{1} << 53) - 1));
  a.threshold = static_cast<uint32_t>(int_arg(c, 2, "threshold", 0, int64_t{1} << 24));
  a.scale = static_cast<float>(finite_arg(c, 0, "scale"));
  a.t = float_type_of(c.in, 0);
  a.x = c.in_any(0, a.n, a.t, "X");
  a.y = c.out_any(0, a.n, a.t, "Y");
  return a;
}

}  // namespace vw
