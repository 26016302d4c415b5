// The CPU backend of the op table (native/core/ops.def): one `<name>_cpu(const OpCall&)` per row, in
// a family file (native/cpu/<family>.cpp: rows.cpp, elementwise.cpp, ...; the fused ops in their own <op>.cpp);
// a missing one fails to link.
#pragma once
#include "../core/op.h"

namespace vw::cpu {
#define VW_OP(name, ...) void name##_cpu(const OpCall& c);
#include "../core/ops.def"
#undef VW_OP
}  // namespace vw::cpu
