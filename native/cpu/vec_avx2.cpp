// Row primitives compiled for the -mavx2 -mfma (set in CMakeLists.txt); see vec_kernels.inc.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "vec.h"

namespace vw::cpu::avx2 {
#include "vec_kernels.inc"
}  // namespace vw::cpu::avx2
