// The one binding of the op table (native/core/ops.def, calling convention native/core/op.h), shared by
// both addons, which differ only in the functions they register:
//   callOp(op, inputs, inDtypes, outputs, outDtypes, ints, floats) -> stats | null
// inputs/outputs are arrays of NativeBuffer (null for an absent optional one); stats is
// { loss, rows, chunkRows, groupRows, workspaceBytes } for the fused ops, null for the others.
// Also: opNames() (the table, in order), opConstants() (the enums ops take as integers), memoryStats(),
// hostSyncs(), synchronize(), setAsync() / isAsync() and the NativeBuffer class.
#pragma once
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../core/activation.h"
#include "../core/error_flags.h"
#include "../core/fused_args.h"
#include "../core/host_sync.h"
#include "../core/op.h"
#include "buffer.h"
#include "errors.h"
#include "program.h"

namespace vw::napi {

// One backend's implementation of every row of the table, in table order, with the row's most inputs, outputs,
// integer and float parameters (-1: a list as long as the op's count parameter says, checked by the op).
struct OpEntry {
  const char* name;
  OpFn fn;
  int inputs, outputs, ints, floats;
};

// A list longer than the op's row allows: refused, where the op would read the leading entries and ignore the rest.
inline void CheckAtMost(const OpEntry& e, const char* what, size_t got, int most) {
  if (most >= 0 && got > static_cast<size_t>(most))
    throw_type_error("[", e.name, "] takes at most ", most, " ", what, " (native/core/ops.def), got ", got);
}
template <size_t N>
using OpTable = OpEntry[N];

// Longest buffer or parameter list a call may pass (adamw_step takes all parameters of a model at once).
constexpr uint32_t kMaxListLength = 1u << 20;

// A short JS string (an op or a dtype name) read into the stack: a step makes hundreds of calls, and a std::string per
// name was a heap allocation each. `fits` is false for a longer one (never a valid name; read it whole for the error).
template <size_t N>
struct ShortString {
  char s[N];
  size_t n = 0;
  bool fits = false;
  std::string_view view() const { return {s, n}; }
};
template <size_t N>
ShortString<N> ReadShortString(const Napi::Value& v) {
  ShortString<N> r;
  if (napi_get_value_string_utf8(v.Env(), v, r.s, N, &r.n) != napi_ok) throw_type_error("could not read a string argument");
  r.fits = r.n < N - 1;  // N - 1 bytes copied: it may have been cut
  return r;
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
      const ShortString<16> name = ReadShortString<16>(dt);
      bufs[k].dtype = dtype_from_name(name.fits ? name.view() : std::string_view(dt.As<Napi::String>().Utf8Value()), op);
    }
  }
  void Resolve(const char* op, const char* what) {
    for (size_t k = 0; k < values.size(); ++k) {
      const Napi::Value& v = values[k];
      if (v.IsNull() || v.IsUndefined()) continue;
      NativeBuffer* b = NativeBuffer::Peek(v);
      if (!b || b->disposed() || b->pinned()) {  // the error, with the buffer's name (built only now)
        const std::string name = std::string("[") + op + "] " + what + "[" + std::to_string(k) + "]";
        b = NativeBuffer::From(v, name.c_str());
        b->CheckNotPinned(name.c_str());
      }
      natives[k] = b;
      bufs[k].data = b->data();
      bufs[k].bytes = b->bytes();
      bufs[k].present = true;
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

inline Napi::Value StatsObject(Napi::Env env, const OpStats& st) {
  if (!st.set) return env.Null();
  Napi::Object r = Napi::Object::New(env);
  r.Set("loss", Napi::Number::New(env, st.loss));
  r.Set("rows", Napi::Number::New(env, static_cast<double>(st.rows)));
  r.Set("chunkRows", Napi::Number::New(env, static_cast<double>(st.chunk_rows)));
  r.Set("groupRows", Napi::Number::New(env, static_cast<double>(st.group_rows)));
  r.Set("workspaceBytes", Napi::Number::New(env, static_cast<double>(st.workspace_bytes)));
  return r;
}

// Registers callOp, opNames, opConstants, memoryStats and NativeBuffer for one backend's table.
template <size_t N>
void RegisterOps(Napi::Env env, Napi::Object exports, const OpTable<N>& table, const char* device) {
  // Lives as long as the addon (the functions below hold it); the keys view the table's static names.
  auto* index = new std::unordered_map<std::string_view, OpEntry>();
  for (const OpEntry& e : table) index->emplace(e.name, e);
  exports.Set("NativeBuffer", NativeBuffer::Init(env));
  RegisterProgram(env, exports);
  exports.Set("callOp", Napi::Function::New(env, [index, device](const Napi::CallbackInfo& info) -> Napi::Value {
    return Guard(info.Env(), [&]() -> Napi::Value {
      if (info.Length() < 7 || !info[0].IsString()) throw_type_error("callOp: expected (op: string, inputs, inDtypes, outputs, outDtypes, ints, floats)");
      const ShortString<64> name = ReadShortString<64>(info[0]);
      auto it = name.fits ? index->find(name.view()) : index->end();
      if (it == index->end())
        throw_type_error("[", info[0].As<Napi::String>().Utf8Value(), "] is not an op (native/core/ops.def) of the ", device, " backend");
      OpCall c;
      c.op = it->second.name;
      BufList in, out;
      in.Read(info[1], info[2], c.op, "inputs");
      out.Read(info[3], info[4], c.op, "outputs");
      c.i = NumList<int64_t>(info[5], c.op, "ints");
      c.f = NumList<double>(info[6], c.op, "floats");
      CheckAtMost(it->second, "inputs", in.bufs.size(), it->second.inputs);
      CheckAtMost(it->second, "outputs", out.bufs.size(), it->second.outputs);
      CheckAtMost(it->second, "integer parameters", c.i.size(), it->second.ints);
      CheckAtMost(it->second, "float parameters", c.f.size(), it->second.floats);
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
      OpStats stats;
      c.stats = &stats;
      it->second.fn(c);
      if (OpProgram* rec = recording_program()) ProgramRecordOp(rec, c.op, it->second.fn, c, in.natives, in.values, out.natives, out.values);
      return StatsObject(info.Env(), stats);
    });
  }));
  exports.Set("opNames", Napi::Function::New(env, [tp = &table](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Array a = Napi::Array::New(info.Env());
    uint32_t k = 0;
    for (const OpEntry& e : *tp) a.Set(k++, Napi::String::New(info.Env(), e.name));
    return a;
  }));
  exports.Set("opConstants", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Env e = info.Env();
    Napi::Object act = Napi::Object::New(e), red = Napi::Object::New(e), o = Napi::Object::New(e);
    for (int32_t k = 0; k < kActivationKindCount; ++k) act.Set(activation_name(k), k);
    red.Set("mean", static_cast<int32_t>(Reduction::Mean));
    red.Set("sum", static_cast<int32_t>(Reduction::Sum));
    red.Set("none", static_cast<int32_t>(Reduction::None));
    o.Set("activation", act);
    o.Set("reduction", red);
    return o;
  }));
  // chunkPlan(requested, n, V, f32Blocks, bf16Blocks, budget) -> { logitRows, groupRows }: plan_chunks
  // (native/core/fused_args.h), the split the CUDA fused losses make, for tests on any machine.
  exports.Set("chunkPlan", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Guard(info.Env(), [&]() -> Napi::Value {
      int64_t v[6];
      for (int k = 0; k < 6; ++k) {
        const double x = info.Length() > static_cast<size_t>(k) && info[k].IsNumber() ? info[k].As<Napi::Number>().DoubleValue() : -1;
        if (!(x >= 0 && x <= 9007199254740992.0 && x == std::floor(x)))
          throw_type_error("chunkPlan: argument ", k, " must be a non-negative integer");
        v[k] = static_cast<int64_t>(x);
      }
      if (v[1] > INT32_MAX || v[2] > INT32_MAX) throw_range_error("chunkPlan: n and V must be at most 2^31 - 1 (the CUDA ops' limit)");
      if (v[3] > 8 || v[4] > 8) throw_range_error("chunkPlan: at most 8 blocks of each kind");
      const ChunkPlan p = plan_chunks(v[0], v[1], v[2], static_cast<int>(v[3]), static_cast<int>(v[4]), v[5]);
      Napi::Object o = Napi::Object::New(info.Env());
      o.Set("logitRows", Napi::Number::New(info.Env(), static_cast<double>(p.logit_rows)));
      o.Set("groupRows", Napi::Number::New(info.Env(), static_cast<double>(p.group_rows)));
      return o;
    });
  }));
  exports.Set("memoryStats", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("liveBuffers", Napi::Number::New(info.Env(), static_cast<double>(NativeBuffer::live_count.load())));
    o.Set("liveBytes", Napi::Number::New(info.Env(), static_cast<double>(NativeBuffer::live_bytes.load())));
    const BlockCacheStats s = kDeviceMemory.cache_stats();
    o.Set("reservedBytes", Napi::Number::New(info.Env(), static_cast<double>(s.reserved)));
    o.Set("cachedBytes", Napi::Number::New(info.Env(), static_cast<double>(s.cached)));
    o.Set("peakReservedBytes", Napi::Number::New(info.Env(), static_cast<double>(s.peak_reserved)));
    o.Set("systemAllocs", Napi::Number::New(info.Env(), static_cast<double>(s.system_allocs)));
    o.Set("cacheHits", Napi::Number::New(info.Env(), static_cast<double>(s.cache_hits)));
    o.Set("evictions", Napi::Number::New(info.Env(), static_cast<double>(s.evictions)));
    return o;
  }));
  // hostSyncs(): how many times the host has waited for this backend (native/core/host_sync.h).
  exports.Set("hostSyncs", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Napi::Number::New(info.Env(), static_cast<double>(host_sync_counter().load()));
  }));
  // synchronize(): waits for the backend's enqueued work and raises the first failed asynchronous check
  // (native/core/error_flags.h); torch.cuda.synchronize().
  exports.Set("synchronize", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Guard(info.Env(), [&]() -> Napi::Value {
      count_host_sync();
      kDeviceMemory.synchronize();
      return info.Env().Undefined();
    });
  }));
  // setAsync(on): async mode (checks raised at the next synchronisation, and on CUDA no wait after each op)
  // or sync mode; returns the previous mode. isAsync(): the current one.
  exports.Set("setAsync", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Guard(info.Env(), [&]() -> Napi::Value {
      if (info.Length() < 1 || !info[0].IsBoolean()) throw_type_error("setAsync: expected a boolean");
      const bool was = error_flags().async();
      error_flags().set_async(info[0].As<Napi::Boolean>().Value());
      return Napi::Boolean::New(info.Env(), was);
    });
  }));
  exports.Set("isAsync", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Napi::Boolean::New(info.Env(), error_flags().async());
  }));
  // releaseCache(): the cached blocks back to the system (torch.cuda.empty_cache()); returns the bytes.
  exports.Set("releaseCache", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Guard(info.Env(), [&]() -> Napi::Value {
      const size_t released = kDeviceMemory.release_cache();
      NativeBuffer::LowerReportedExternalMemory(info.Env());
      return Napi::Number::New(info.Env(), static_cast<double>(released));
    });
  }));
}

}  // namespace vw::napi
