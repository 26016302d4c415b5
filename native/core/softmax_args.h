// Parameters and buffers of softmax_forward / softmax_backward (native/core/ops.def), read and checked
// once for both backends, so the CPU and CUDA ops validate in the same order with the same messages.
// float32 rows of C.
#pragma once
#include <cstdint>

#include "op_args.h"

namespace vw {

struct SoftmaxArgs {
  int64_t R = 0, C = 0, n = 0;  // n = R C
  const float* x = nullptr;     // forward: X
  const float* dy = nullptr;    // backward: dY
  const float* y = nullptr;     // backward: Y (the forward's output)
  float* out = nullptr;         // forward: Y; backward: dX
};

// softmax_forward in [X] out [Y]; softmax_backward (backward) in [dY, Y] out [dX]; i [R, C].
inline SoftmaxArgs read_softmax(const OpCall& c, bool backward) {
  SoftmaxArgs a;
  a.R = size_arg(c, 0, "R"), a.C = size_arg(c, 1, "C");
  a.n = numel(c, {a.R, a.C});
  if (backward) {
    a.dy = c.in_f32(0, a.n, "dY");
    a.y = c.in_f32(1, a.n, "Y");
  } else {
    a.x = c.in_f32(0, a.n, "X");
  }
  a.out = c.out_f32(0, a.n, backward ? "dX" : "Y");
  return a;
}

}  // namespace vw
