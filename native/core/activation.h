// The activation kinds of activation_forward / activation_backward (native/core/ops.def), defined once:
// the CPU and CUDA kernels switch on ActivationKind, and TypeScript reads the names and numbers from the
// addon (opConstants().activation), so src/functional.ts never writes them down.
//   gelu       x Phi(x), Phi the normal CDF (erf form; PyTorch's default)
//   geluTanh   x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2 (PyTorch approximate='tanh')
//   quickGelu  x sigmoid(1.702 x) (CLIP)
//   silu       x sigmoid(x) (LLaMA)
#pragma once
#include <cstdint>

#include "op_args.h"

namespace vw {

enum ActivationKind : int32_t { kGeluErf = 0, kGeluTanh = 1, kQuickGelu = 2, kSilu = 3 };
constexpr int kActivationKindCount = 4;
// TypeScript's names, in kind order.
inline const char* activation_name(int32_t kind) {
  static const char* names[kActivationKindCount] = {"gelu", "geluTanh", "quickGelu", "silu"};
  return names[kind];
}

// Integer parameter k (1 in the activation ops) as a kind.
inline ActivationKind activation_kind_arg(const OpCall& c, size_t k) {
  const int64_t kind = c.ip(k, "kind");
  if (kind < 0 || kind >= kActivationKindCount)
    throw_range_error("[", c.op, "] kind must be 0 (gelu erf), 1 (gelu tanh), 2 (quick_gelu) or 3 (silu), got ", kind);
  return static_cast<ActivationKind>(kind);
}

}  // namespace vw
