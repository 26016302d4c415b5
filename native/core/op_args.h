// Readers of an op's integer and float parameters, shared by every backend (native/cpu, native/cuda), so
// both reject the same arguments in the same order with the same messages. Every integer parameter that
// sizes a buffer view is validated here first, so a negative or absurd value becomes a RangeError naming
// the op and the argument instead of a wrapped size; OpCall::in_f32 etc. then check the buffers against it.
#pragma once
#include <cmath>
#include <cstdint>
#include <initializer_list>

#include "op.h"

namespace vw {

// Integer parameter k that must be >= lo.
inline int64_t min_arg(const OpCall& c, size_t k, const char* name, int64_t lo) {
  const int64_t v = c.ip(k, name);
  if (v < lo) throw_range_error("[", c.op, "] ", name, " must be >= ", lo, ", got ", v);
  return v;
}

// Integer parameter k as a size (>= 0).
inline int64_t size_arg(const OpCall& c, size_t k, const char* name) { return min_arg(c, k, name, 0); }

// Integer parameter k in [lo, hi].
inline int64_t int_arg(const OpCall& c, size_t k, const char* name, int64_t lo, int64_t hi) {
  const int64_t v = c.ip(k, name);
  if (v < lo || v > hi) throw_range_error("[", c.op, "] ", name, " must be in [", lo, ", ", hi, "], got ", v);
  return v;
}

// Integer parameter k as a flag (0 or 1).
inline bool flag_arg(const OpCall& c, size_t k, const char* name) {
  const int64_t v = c.ip(k, name);
  if (v != 0 && v != 1) throw_range_error("[", c.op, "] ", name, " must be 0 or 1, got ", v);
  return v == 1;
}

// Float parameter k, required to be finite.
inline double finite_arg(const OpCall& c, size_t k, const char* name) {
  const double v = c.fp(k, name);
  if (!std::isfinite(v)) throw_range_error("[", c.op, "] ", name, " must be finite, got ", v);
  return v;
}

// Product of sizes (each >= 0); a RangeError rather than a wrapped value when it overflows int64.
inline int64_t numel(const OpCall& c, std::initializer_list<int64_t> dims) {
  int64_t n = 1;
  for (int64_t d : dims)
    if (__builtin_mul_overflow(n, d, &n)) throw_range_error("[", c.op, "] sizes overflow 64-bit element counts");
  return n;
}

// a + b for element counts, with the same overflow check.
inline int64_t add_elems(const OpCall& c, int64_t a, int64_t b) {
  int64_t s;
  if (__builtin_add_overflow(a, b, &s)) throw_range_error("[", c.op, "] sizes overflow 64-bit element counts");
  return s;
}

// Inputs/outputs of the ops with a variable number of tensors must match their count parameter exactly.
inline void expect_counts(const OpCall& c, size_t n_in, size_t n_out) {
  if (c.in.size() != n_in || c.out.size() != n_out)
    throw_type_error("[", c.op, "] expects ", n_in, " inputs and ", n_out, " outputs, got ", c.in.size(), " and ", c.out.size());
}

// The float type of a bf16-capable op, taken from one of its buffers: bfloat16 when that buffer is, else
// float32 (so a buffer of any other dtype then fails OpCall::in_any / out_any with
// "<name> must be float32, got <dtype>").
inline DType float_type_of(const std::vector<Buf>& bufs, size_t k) {
  return k < bufs.size() && bufs[k].dtype == DType::BF16 ? DType::BF16 : DType::F32;
}

// checks_failed: the element of its float32 output that receives the flag.
inline float* read_checks_failed(const OpCall& c) {
  const int64_t offset = size_arg(c, 0, "offset");
  return c.out_f32(0, add_elems(c, offset, 1), "flag") + offset;
}

}  // namespace vw
