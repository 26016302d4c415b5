// Engine ops: the differentiable building blocks the model is written in (matmul, norms, RoPE, attention,
// activations, AdamW, ...). Unlike the fused kernels they share one calling convention, so the N-API
// binding is a single function and a new op is a table row plus its kernels:
//   inputs and outputs are buffers (allocated by TypeScript, which knows the shapes), plus integer and
//   float parameters whose meaning each op documents in native/core/engine_ops.def.
// Every op re-checks buffer sizes against its parameters (OpCall::in_f32 etc.) before touching memory.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dtype.h"
#include "error.h"

namespace vw {

struct Buf {
  void* data = nullptr;
  size_t bytes = 0;
  DType dtype = DType::F32;
};

struct OpCall {
  const char* op = "";
  std::vector<Buf> in, out;
  std::vector<int64_t> i;
  std::vector<double> f;

  int64_t ip(size_t k, const char* name) const {
    if (k >= i.size()) throw_type_error("[", op, "] missing integer parameter ", k, " (", name, ")");
    return i[k];
  }
  double fp(size_t k, const char* name) const {
    if (k >= f.size()) throw_type_error("[", op, "] missing float parameter ", k, " (", name, ")");
    return f[k];
  }
  // Typed views that check the slot exists, the dtype, and that it holds at least `elems` elements.
  const float* in_f32(size_t k, int64_t elems, const char* name) const { return static_cast<const float*>(check(in, k, elems, DType::F32, name, "input")); }
  const int32_t* in_i32(size_t k, int64_t elems, const char* name) const { return static_cast<const int32_t*>(check(in, k, elems, DType::I32, name, "input")); }
  float* out_f32(size_t k, int64_t elems, const char* name) const { return static_cast<float*>(check(out, k, elems, DType::F32, name, "output")); }
  const void* in_any(size_t k, int64_t elems, DType t, const char* name) const { return check(in, k, elems, t, name, "input"); }
  void* out_any(size_t k, int64_t elems, DType t, const char* name) const { return check(out, k, elems, t, name, "output"); }
  bool has_in(size_t k) const { return k < in.size() && in[k].data != nullptr; }

 private:
  void* check(const std::vector<Buf>& v, size_t k, int64_t elems, DType t, const char* name, const char* kind) const {
    if (elems < 0) throw_range_error("[", op, "] negative size for ", name);
    if (k >= v.size()) throw_type_error("[", op, "] missing ", kind, " ", k, " (", name, ")");
    const Buf& b = v[k];
    if (b.dtype != t) throw_type_error("[", op, "] ", name, " must be ", dtype_name(t), ", got ", dtype_name(b.dtype));
    // elems x size can overflow size_t (2^62 elements x 4 bytes wraps to 0) although elems fits int64
    if (static_cast<uint64_t>(elems) > SIZE_MAX / dtype_size(t)) throw_range_error("[", op, "] ", name, ": ", elems, " elements overflow the byte count");
    const size_t need = static_cast<size_t>(elems) * dtype_size(t);
    if (b.bytes < need) throw_range_error("[", op, "] ", name, " holds ", b.bytes, " bytes but needs ", need);
    if (need > 0 && b.data == nullptr) throw_type_error("[", op, "] ", name, " is missing");
    return b.data;
  }
};

using OpFn = void (*)(const OpCall&);

}  // namespace vw
