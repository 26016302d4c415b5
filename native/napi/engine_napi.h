// Binding of the engine ops (native/core/engine.h): one function for all of them.
//   engineCall(op, inputs, inDtypes, outputs, outDtypes, ints, floats)
// inputs/outputs are arrays of NativeBuffer (an input may be null for an absent optional one).
#pragma once
#include <napi.h>

#include <string>
#include <unordered_map>

#include "../core/engine.h"
#include "buffer.h"
#include "errors.h"

namespace vw::napi {

using EngineRegistry = std::unordered_map<std::string, OpFn>;

inline DType DTypeFromName(const std::string& s, const char* op) {
  if (s == "float32") return DType::F32;
  if (s == "int32") return DType::I32;
  if (s == "bfloat16") return DType::BF16;
  throw_type_error("[", op, "] unknown dtype '", s, "'");
}

inline std::vector<Buf> BufList(const Napi::Value& bufs, const Napi::Value& dtypes, const char* op, const char* what) {
  if (!bufs.IsArray() || !dtypes.IsArray()) throw_type_error("[", op, "] ", what, " and their dtypes must be arrays");
  Napi::Array a = bufs.As<Napi::Array>(), t = dtypes.As<Napi::Array>();
  if (a.Length() != t.Length()) throw_type_error("[", op, "] ", what, ": ", a.Length(), " buffers but ", t.Length(), " dtypes");
  std::vector<Buf> out(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value v = a.Get(k);
    out[k].dtype = DTypeFromName(t.Get(k).ToString().Utf8Value(), op);
    if (v.IsNull() || v.IsUndefined()) continue;
    NativeBuffer* b = NativeBuffer::From(v, (std::string("[") + op + "] " + what + "[" + std::to_string(k) + "]").c_str());
    out[k].data = b->data();
    out[k].bytes = b->bytes();
  }
  return out;
}

template <typename T>
std::vector<T> NumList(const Napi::Value& v, const char* op, const char* what) {
  if (!v.IsArray()) throw_type_error("[", op, "] ", what, " must be an array of numbers");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<T> out(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value x = a.Get(k);
    if (!x.IsNumber()) throw_type_error("[", op, "] ", what, "[", k, "] must be a number");
    const double d = x.As<Napi::Number>().DoubleValue();
    if constexpr (std::is_integral_v<T>) {
      if (d != static_cast<double>(static_cast<int64_t>(d))) throw_range_error("[", op, "] ", what, "[", k, "] must be an integer, got ", d);
    }
    out[k] = static_cast<T>(d);
  }
  return out;
}

inline void RegisterEngine(Napi::Env env, Napi::Object exports, const EngineRegistry* reg, const char* device) {
  exports.Set("engineCall", Napi::Function::New(env, [reg, device](const Napi::CallbackInfo& info) -> Napi::Value {
    return Guard(info.Env(), [&]() -> Napi::Value {
      if (info.Length() < 7 || !info[0].IsString()) throw_type_error("engineCall(op, inputs, inDtypes, outputs, outDtypes, ints, floats)");
      const std::string name = info[0].As<Napi::String>().Utf8Value();
      auto it = reg->find(name);
      if (it == reg->end()) throw_type_error("[", name, "] has no ", device, " implementation (or is not an engine op)");
      OpCall c;
      c.op = it->first.c_str();
      c.in = BufList(info[1], info[2], c.op, "inputs");
      c.out = BufList(info[3], info[4], c.op, "outputs");
      c.i = NumList<int64_t>(info[5], c.op, "ints");
      c.f = NumList<double>(info[6], c.op, "floats");
      it->second(c);
      return info.Env().Undefined();
    });
  }));
  exports.Set("engineOpNames", Napi::Function::New(env, [reg](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Array a = Napi::Array::New(info.Env());
    uint32_t k = 0;
    for (const auto& [name, fn] : *reg) a.Set(k++, Napi::String::New(info.Env(), name));
    return a;
  }));
}

}  // namespace vw::napi
