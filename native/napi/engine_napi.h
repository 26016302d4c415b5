// Binding of the engine ops (native/core/engine.h): one function for all of them.
//   engineCall(op, inputs, inDtypes, outputs, outDtypes, ints, floats)
// inputs/outputs are arrays of NativeBuffer (an input may be null for an absent optional one).
#pragma once
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../core/engine.h"
#include "buffer.h"
#include "errors.h"

namespace vw::napi {

using EngineRegistry = std::unordered_map<std::string, OpFn>;

// Longest buffer or parameter list a call may pass (adamw_step takes all parameters of a model at once).
constexpr uint32_t kMaxListLength = 1u << 20;

inline DType DTypeFromName(const std::string& s, const char* op) {
  if (s == "float32") return DType::F32;
  if (s == "int32") return DType::I32;
  if (s == "bfloat16") return DType::BF16;
  throw_type_error("[", op, "] unknown dtype '", s, "'");
}

// A list of buffers with their dtypes, read from JS in two steps: Read() takes the values (which may run
// JS: array getters, proxies) and Resolve() looks the buffers up afterwards, when no more JS runs before
// the kernel, so a getter cannot free a buffer whose pointer was already taken.
struct BufList {
  std::vector<Napi::Value> values;
  std::vector<Buf> bufs;
  std::vector<NativeBuffer*> natives;

  void Read(const Napi::Value& list, const Napi::Value& dtypes, const char* op, const char* what) {
    if (!list.IsArray() || !dtypes.IsArray()) throw_type_error("[", op, "] ", what, " and their dtypes must be arrays");
    Napi::Array a = list.As<Napi::Array>(), t = dtypes.As<Napi::Array>();
    const uint32_t n = a.Length();
    if (n != t.Length()) throw_type_error("[", op, "] ", what, ": ", n, " buffers but ", t.Length(), " dtypes");
    if (n > kMaxListLength) throw_range_error("[", op, "] ", what, ": too many buffers (", n, ")");
    values.resize(n);
    bufs.resize(n);
    natives.assign(n, nullptr);
    for (uint32_t k = 0; k < n; ++k) {
      values[k] = a.Get(k);
      Napi::Value dt = t.Get(k);
      if (!dt.IsString()) throw_type_error("[", op, "] ", what, " dtype [", k, "] must be a string");
      bufs[k].dtype = DTypeFromName(dt.As<Napi::String>().Utf8Value(), op);
    }
  }
  void Resolve(const char* op, const char* what) {
    for (size_t k = 0; k < values.size(); ++k) {
      const Napi::Value& v = values[k];
      if (v.IsNull() || v.IsUndefined()) continue;
      NativeBuffer* b = NativeBuffer::From(v, (std::string("[") + op + "] " + what + "[" + std::to_string(k) + "]").c_str());
      natives[k] = b;
      bufs[k].data = b->data();
      bufs[k].bytes = b->bytes();
    }
  }
};

template <typename T>
std::vector<T> NumList(const Napi::Value& v, const char* op, const char* what) {
  if (!v.IsArray()) throw_type_error("[", op, "] ", what, " must be an array of numbers");
  Napi::Array a = v.As<Napi::Array>();
  const uint32_t n = a.Length();  // read once: an element getter may change the length
  if (n > kMaxListLength) throw_range_error("[", op, "] ", what, ": too many entries (", n, ")");
  std::vector<T> out(n);
  for (uint32_t k = 0; k < n; ++k) {
    Napi::Value x = a.Get(k);
    if (!x.IsNumber()) throw_type_error("[", op, "] ", what, "[", k, "] must be a number");
    const double d = x.As<Napi::Number>().DoubleValue();
    if constexpr (std::is_integral_v<T>) {
      // |d| <= 2^53: an exact JS integer (a larger double would not even convert to int64 safely)
      if (!(std::fabs(d) <= 9007199254740992.0) || d != std::floor(d))
        throw_range_error("[", op, "] ", what, "[", k, "] must be an integer in [-2^53, 2^53], got ", d);
    }
    out[k] = static_cast<T>(d);
  }
  return out;
}

inline void RegisterEngine(Napi::Env env, Napi::Object exports, const EngineRegistry* reg, const char* device) {
  exports.Set("engineCall", Napi::Function::New(env, [reg, device](const Napi::CallbackInfo& info) -> Napi::Value {
    return Guard(info.Env(), [&]() -> Napi::Value {
      if (info.Length() < 7 || !info[0].IsString()) throw_type_error("engineCall: expected (op: string, inputs, inDtypes, outputs, outDtypes, ints, floats)");
      const std::string name = info[0].As<Napi::String>().Utf8Value();
      auto it = reg->find(name);
      if (it == reg->end()) throw_type_error("[", name, "] has no ", device, " implementation (or is not an engine op)");
      OpCall c;
      c.op = it->first.c_str();
      BufList in, out;
      in.Read(info[1], info[2], c.op, "inputs");
      out.Read(info[3], info[4], c.op, "outputs");
      c.i = NumList<int64_t>(info[5], c.op, "ints");
      c.f = NumList<double>(info[6], c.op, "floats");
      in.Resolve(c.op, "inputs");
      out.Resolve(c.op, "outputs");
      // An output may be one of the inputs (axpby's Z = Y), but only as the same dtype: an int32 input
      // (ids, masks) read as indices while the op writes floats over it would index out of bounds.
      std::vector<std::pair<NativeBuffer*, DType>> ins;
      for (size_t k = 0; k < in.natives.size(); ++k)
        if (in.natives[k]) ins.emplace_back(in.natives[k], in.bufs[k].dtype);
      std::sort(ins.begin(), ins.end());
      for (size_t o = 0; o < out.natives.size(); ++o) {
        if (!out.natives[o]) continue;
        auto lo = std::lower_bound(ins.begin(), ins.end(), std::make_pair(out.natives[o], DType{}),
                                   [](const auto& x, const auto& y) { return x.first < y.first; });
        for (; lo != ins.end() && lo->first == out.natives[o]; ++lo)
          if (lo->second != out.bufs[o].dtype)
            throw_type_error("[", c.op, "] outputs[", o, "] is the buffer of an input of another dtype (",
                             dtype_name(out.bufs[o].dtype), " vs ", dtype_name(lo->second), ")");
      }
      c.in = std::move(in.bufs);
      c.out = std::move(out.bufs);
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
