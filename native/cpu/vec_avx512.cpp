// Row primitives compiled for -mavx512f (set in CMakeLists.txt); see vec_kernels.inc. vec.cpp takes only the
// element-wise ones from this build (each lane runs the AVX2 build's operations, so the bits are the same); the sums
// keep the AVX2 build's lane order, so their bits do not depend on the CPU having AVX-512 either.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "vec.h"

namespace vw::cpu::avx512 {
#include "vec_kernels.inc"
}  // namespace vw::cpu::avx512
