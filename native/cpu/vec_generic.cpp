// Row primitives compiled for the baseline ISA; see vec_kernels.inc.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "vec.h"

namespace vw::cpu::generic {
#include "vec_kernels.inc"
}  // namespace vw::cpu::generic
