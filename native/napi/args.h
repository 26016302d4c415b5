// Arguments of the sgemm bindings (both addons; the benchmarks' GEMM ceiling and the GEMM tests). The ops
// themselves take their arguments through callOp (op_napi.h); sgemm's buffers are checked by the same
// OpCall checks, so there is one byte-count overflow check in the native code.
#pragma once
#include <napi.h>

#include <climits>
#include <cmath>
#include <string>

#include "../core/dtype.h"
#include "../core/error.h"
#include "../core/op.h"
#include "buffer.h"

namespace vw::napi {

// options.<key>: a finite number (dflt when absent).
inline double GetNumber(const Napi::Object& o, const char* key, double dflt, const char* op) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsNumber()) throw_type_error("[", op, "] option ", key, " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throw_range_error("[", op, "] option ", key, " must be finite, got ", d);
  return d;
}

inline bool GetBool(const Napi::Object& o, const char* key, bool dflt, const char* op) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsBoolean()) throw_type_error("[", op, "] option ", key, " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

// A boolean flag, and a size that is an integer in [0, INT_MAX] (BLAS int).
inline bool GemmFlag(const Napi::Value& v, const char* name) {
  if (!v.IsBoolean()) throw_type_error("[sgemm] ", name, " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}
inline int64_t GemmSize(const Napi::Value& v, const char* name) {
  if (!v.IsNumber()) throw_type_error("[sgemm] ", name, " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != std::floor(d) || d > INT_MAX) throw_range_error("[sgemm] ", name, " must be an integer in [0, ", INT_MAX, "], got ", d);
  return static_cast<int64_t>(d);
}
// a x b of two sizes <= INT_MAX: fits int64.
inline int64_t GemmElems(int64_t a, int64_t b) { return a * b; }

// info[5..7] (A, B: inputs of dtype ab; C: float32 output) as an OpCall whose in_f32 / out_f32 etc. check
// them. Looked up last, after every argument read that may run JS.
inline OpCall GemmBuffers(const Napi::CallbackInfo& info, DType ab) {
  OpCall c;
  c.op = "sgemm";
  const char* names[3] = {"[sgemm] A", "[sgemm] B", "[sgemm] C"};
  for (int k = 0; k < 3; ++k) {
    NativeBuffer* b = NativeBuffer::From(info[5 + k], names[k]);
    (k < 2 ? c.in : c.out).push_back(Buf{b->data(), b->bytes(), k < 2 ? ab : DType::F32, true});
  }
  return c;
}

}  // namespace vw::napi
