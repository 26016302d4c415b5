// Argument marshalling helpers for the kernel bindings: read typed values from JS, re-check them, and
// name the offending argument in the error. No math here.
#pragma once
#include <napi.h>

#include <climits>
#include <cmath>
#include <string>

#include "../core/dtype.h"
#include "../core/error.h"
#include "../core/kernels.h"
#include "buffer.h"

namespace vw::napi {

// dims.<key>: an integer >= min (and <= 2^53, the exact range of a JS number).
inline int64_t GetDim(const Napi::Object& dims, const char* key, const char* op, int64_t min = 0) {
  Napi::Value v = dims.Get(key);
  if (!v.IsNumber()) throw_type_error("[", op, "] dims.", key, " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= static_cast<double>(min)) || d != std::floor(d) || d > 9.0e15) {
    if (min == 0) throw_range_error("[", op, "] dims.", key, " must be a non-negative integer, got ", d);
    throw_range_error("[", op, "] dims.", key, " must be an integer >= ", min, ", got ", d);
  }
  return static_cast<int64_t>(d);
}

// a x b for element counts (both >= 0): a RangeError instead of a wrapped product.
inline int64_t Elems(const char* op, int64_t a, int64_t b) {
  int64_t n;
  if (__builtin_mul_overflow(a, b, &n)) throw_range_error("[", op, "] sizes overflow 64-bit element counts (", a, " x ", b, ")");
  return n;
}

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

inline Reduction GetReduction(const Napi::Object& o, const char* op) {
  Napi::Value v = o.Get("reduction");
  if (v.IsUndefined() || v.IsNull()) return Reduction::Mean;
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "mean" || s == "batchmean") return Reduction::Mean;
  if (s == "sum") return Reduction::Sum;
  if (s == "none") return Reduction::None;
  throw_range_error("[", op, "] option reduction must be 'mean' | 'batchmean' | 'sum' | 'none'");
}

inline DType GetDType(const Napi::Object& o, const char* op) {
  Napi::Value v = o.Get("dtype");
  if (v.IsUndefined() || v.IsNull()) return DType::F32;
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "float32") return DType::F32;
  if (s == "bfloat16") return DType::BF16;
  throw_type_error("[", op, "] dtype must be 'float32' or 'bfloat16', got '", s, "'");
}

// The data of a NativeBuffer argument that must hold at least `elems` elements of `t`.
inline void* BufferArg(const Napi::Value& v, const char* op, const char* name, int64_t elems, DType t) {
  NativeBuffer* b = NativeBuffer::From(v, (std::string("[") + op + "] " + name).c_str());
  size_t need;
  if (elems < 0 || __builtin_mul_overflow(static_cast<size_t>(elems), dtype_size(t), &need))
    throw_range_error("[", op, "] ", name, ": invalid element count ", elems);
  if (b->bytes() < need)
    throw_range_error("[", op, "] ", name, " holds ", b->bytes(), " bytes but its shape needs ", need, " (", elems, " x ", dtype_name(t), ")");
  return b->data();
}

// sgemm's arguments (both addons): a boolean flag, and a size that is an integer in [0, INT_MAX] (BLAS int).
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

inline Napi::Object StatsObject(Napi::Env env, const KernelStats& st) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("loss", Napi::Number::New(env, st.loss));
  r.Set("rows", Napi::Number::New(env, static_cast<double>(st.rows)));
  r.Set("chunkRows", Napi::Number::New(env, static_cast<double>(st.chunk_rows)));
  r.Set("workspaceBytes", Napi::Number::New(env, static_cast<double>(st.workspace_bytes)));
  return r;
}

}  // namespace vw::napi
