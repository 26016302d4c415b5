// CPU engine ops: one `<name>_cpu(const OpCall&)` per row of native/core/engine_ops.def.
#pragma once
#include "../core/engine.h"

namespace vw::cpu {
#define VW_ENGINE_OP(name) void name##_cpu(const OpCall& c);
#include "../core/engine_ops.def"
#undef VW_ENGINE_OP
}  // namespace vw::cpu
