// Element-wise arithmetic on flat float32 buffers of n elements (any shape; axpby and mul take bf16 too, widened):
//   axpby:         Z = a X + b Y   (Z may be X or Y: in place). A zero coefficient drops its operand
//                  entirely (b = 0: Z = a X without reading Y, so uninitialised or NaN Y does not leak in,
//                  as BLAS beta = 0; likewise a = 0).
//   mul:           Z = X * Y       (backward: dX = dZ * Y, dY = dZ * X, also mul)
//   mul_scalar:    Z = X * s[0]    (s a one-element buffer: a factor the host never reads)
//   dropout:       Y = X * scale where kept (native/core/dropout.h: the mask is a function of seed and index)
//   add_broadcast: Z[b, :] = X[b, :] + y for b < B   (position embeddings; backward: dX = dZ,
//                  dy = sum_rows dZ)
//   fill:          X[0..n) = value
//   cast:          Y = X in Y's dtype (float32 <-> bfloat16, native/core/bf16.h)
// Loops are plain contiguous passes under `omp simd` (exact aliasing of an output with an input is an
// element-wise dependence only), split over the pool above kElemGrain elements.
#include <algorithm>
#include <cstring>

#include "../core/bf16.h"
#include "../core/cast_args.h"
#include "../core/dropout.h"
#include "../core/error_flags.h"
#include "work_split.h"
#include "float32_view.h"
#include "ops_cpu.h"
#include "parallel.h"

namespace vw::cpu {

namespace {
void axpby_f32(const OpCall& c) {
  const int64_t n = size_arg(c, 0, "n");
  const float a = static_cast<float>(c.fp(0, "a")), b = static_cast<float>(c.fp(1, "b"));
  const float* x = c.in_f32(0, n, "X");
  const float* y = c.in_f32(1, n, "Y");
  float* z = c.out_f32(0, n, "Z");
  parallel_for(n, kElemGrain, [&](int64_t i0, int64_t i1) {
    if (b == 0.f) {
#pragma omp simd
      for (int64_t i = i0; i < i1; ++i) z[i] = a * x[i];
    } else if (a == 0.f) {
#pragma omp simd
      for (int64_t i = i0; i < i1; ++i) z[i] = b * y[i];
    } else {
#pragma omp simd
      for (int64_t i = i0; i < i1; ++i) z[i] = a * x[i] + b * y[i];
    }
  });
}

void mul_f32(const OpCall& c) {
  const int64_t n = size_arg(c, 0, "n");
  const float* x = c.in_f32(0, n, "X");
  const float* y = c.in_f32(1, n, "Y");
  float* z = c.out_f32(0, n, "Z");
  parallel_for(n, kElemGrain, [&](int64_t i0, int64_t i1) {
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) z[i] = x[i] * y[i];
  });
}

}  // namespace

// bf16 X, Y, Z (gradients of autocast's bf16 activations, added by autograd) run on widened copies; Z may be Y (the
// copies are separate, Z is written back).
void axpby_cpu(const OpCall& c) {
  same_type_in_float32(c, size_arg(c, 0, "n"), {"X", "Y"}, {"Z"}, axpby_f32);
}

void mul_cpu(const OpCall& c) {
  same_type_in_float32(c, size_arg(c, 0, "n"), {"X", "Y"}, {"Z"}, mul_f32);
}

void mul_scalar_cpu(const OpCall& c) {
  const int64_t n = size_arg(c, 0, "n");
  const float* x = c.in_f32(0, n, "X");
  const float s = *c.in_f32(1, 1, "s");
  float* z = c.out_f32(0, n, "Z");
  parallel_for(n, kElemGrain, [&](int64_t i0, int64_t i1) {
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) z[i] = x[i] * s;
  });
}

void dropout_cpu(const OpCall& c) {
  read_dropout(c);  // checked as given; bf16 (a LoRA adapter's input under autocast) runs on a widened copy
  in_float32(c, [](const OpCall& w) {
    const DropoutArgs a = read_dropout(w);
    const float* x = static_cast<const float*>(a.x);
    float* y = static_cast<float*>(a.y);
    parallel_for(a.n, kElemGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) y[i] = dropout_keep(a.seed, static_cast<uint64_t>(i), a.threshold) ? x[i] * a.scale : 0.f;
    });
  });
}

void add_broadcast_cpu(const OpCall& c) {
  const int64_t B = size_arg(c, 0, "B"), n = size_arg(c, 1, "n");
  const int64_t total = numel(c, {B, n});
  const float* x = c.in_f32(0, total, "X");
  const float* y = c.in_f32(1, n, "y");
  float* z = c.out_f32(0, total, "Z");
  if (n == 0) return;
  // Items are (row, block of <= kElemGrain columns), so one long row (B = 1) still spreads over threads.
  const int64_t block = std::min(n, kElemGrain), nb = (n + block - 1) / block;
  parallel_for(B * nb, std::max<int64_t>(1, kElemGrain / block), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / nb, j0 = (t % nb) * block, j1 = std::min(n, j0 + block);
      const float* xb = x + b * n;
      float* zb = z + b * n;
#pragma omp simd
      for (int64_t j = j0; j < j1; ++j) zb[j] = xb[j] + y[j];
    }
  });
}

void fill_cpu(const OpCall& c) {
  const int64_t n = size_arg(c, 0, "n");
  const float v = static_cast<float>(c.fp(0, "value"));
  float* x = c.out_f32(0, n, "X");
  parallel_for(n, 4 * kElemGrain, [&](int64_t i0, int64_t i1) { std::fill(x + i0, x + i1, v); });
}

void checks_failed_cpu(const OpCall& c) {
  // the CPU runs every check on the host: a failure is a pending entry until the next synchronisation
  *read_checks_failed(c) = error_flags().host_failure_pending() ? 1.0f : 0.0f;
}

void cast_cpu(const OpCall& c) {
  const CastArgs a = read_cast(c);
  auto pass = [&](auto convert) {
    parallel_for(a.n, kElemGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) convert(i);
    });
  };
  const float* xf = static_cast<const float*>(a.x);
  const uint16_t* xh = static_cast<const uint16_t*>(a.x);
  float* yf = static_cast<float*>(a.y);
  uint16_t* yh = static_cast<uint16_t*>(a.y);
  if (a.n == 0) return;
  if (a.tx == a.ty) {
    if (a.x != a.y) std::memcpy(a.y, a.x, static_cast<size_t>(a.n) * dtype_size(a.tx));
  } else if (a.ty == DType::BF16) {
    pass([&](int64_t i) { yh[i] = bf16_from_f32(xf[i]); });
  } else {
    pass([&](int64_t i) { yf[i] = f32_from_bf16(xh[i]); });
  }
}

}  // namespace vw::cpu
