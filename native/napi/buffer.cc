#include "buffer.h"

#include "../core/host_sync.h"

#include <cmath>
#include <cstring>
#include <unordered_set>

#include "../core/error.h"
#include "errors.h"
#include "program.h"

namespace vw::napi {

std::atomic<int64_t> NativeBuffer::live_count{0};
std::atomic<int64_t> NativeBuffer::live_bytes{0};

static Napi::FunctionReference* g_ctor = nullptr;

// The NativeBuffers this addon has constructed and not yet destroyed, by the pointer napi_wrap holds: how an object
// is recognised as one of ours (each addon has its own set, so a CUDA buffer is never taken for a host one, or the
// reverse). napi_unwrap also answers for an object another addon wrapped; such a pointer is never in the set, and
// nothing is read through it before the lookup. (N-API type tags did the same at ~0.4 us more a buffer: a BigInt and a
// private property each, and a private-property read at every check; benchmarks/RESULTS.md, "Host cost per op".)
// The JS thread only: constructors, finalizers and every Peek run there. Never destroyed (finalizers may run at exit).
static std::unordered_set<const void*>& LiveObjects() {
  static auto* live = new std::unordered_set<const void*>();
  return *live;
}

// What a JS value is, for error messages.
static const char* KindOf(const Napi::Value& v) {
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "a boolean";
    case napi_number: return "a number";
    case napi_string: return "a string";
    case napi_symbol: return "a symbol";
    case napi_function: return "a function";
    case napi_external: return "an external";
    case napi_bigint: return "a bigint";
    default: return "an object of another kind";
  }
}

Napi::Function NativeBuffer::Init(Napi::Env env) {
  Napi::Function fn = DefineClass(env, "NativeBuffer", {});
  Napi::Object proto = fn.Get("prototype").As<Napi::Object>();
  proto.DefineProperties({
      Napi::PropertyDescriptor::Function(env, proto, "dispose", &NativeBuffer::Dispose),
      Napi::PropertyDescriptor::Function(env, proto, "write", &NativeBuffer::Write),
      Napi::PropertyDescriptor::Function(env, proto, "read", &NativeBuffer::Read),
      Napi::PropertyDescriptor::Accessor(env, proto, "bytes", &NativeBuffer::Bytes),
      Napi::PropertyDescriptor::Accessor(env, proto, "disposed", &NativeBuffer::Disposed),
      Napi::PropertyDescriptor::Accessor(env, proto, "device", &NativeBuffer::Device),
  });
  g_ctor = new Napi::FunctionReference(Napi::Persistent(fn));
  env.SetInstanceData<Napi::FunctionReference>(g_ctor);
  return fn;
}

Napi::Object NativeBuffer::Create(Napi::Env env, size_t bytes, bool zero) {
  Napi::Object obj = g_ctor->New({Napi::Number::New(env, static_cast<double>(bytes)), Napi::Boolean::New(env, zero)});
  From(obj, "buffer");
  return obj;
}

NativeBuffer* NativeBuffer::Peek(const Napi::Value& v) {
  if (!v.IsObject()) return nullptr;
  void* wrapped = nullptr;
  // not wrapped at all (Object.create(NativeBuffer.prototype), a plain object): napi_invalid_arg
  if (napi_unwrap(v.Env(), v, &wrapped) != napi_ok || wrapped == nullptr) return nullptr;
  if (LiveObjects().count(wrapped) == 0) return nullptr;
  return static_cast<NativeBuffer*>(wrapped);  // ObjectWrap wraps static_cast<NativeBuffer*>(this)
}

NativeBuffer* NativeBuffer::From(const Napi::Value& v, const char* what) {
  NativeBuffer* b = Peek(v);
  if (!b) throw_type_error(what, " must be a ", kDeviceMemory.device, " NativeBuffer, got ", KindOf(v));
  if (b->disposed_) throw_type_error(what, " has been disposed");
  return b;
}

NativeBuffer* NativeBuffer::Self(const Napi::CallbackInfo& info, const char* what) {
  NativeBuffer* b = Peek(info.This());
  if (!b) throw_type_error(what, ": `this` must be a ", kDeviceMemory.device, " NativeBuffer, got ", KindOf(info.This()));
  return b;
}

NativeBuffer::NativeBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeBuffer>(info) {
  Napi::Env env = info.Env();
  LiveObjects().insert(static_cast<const void*>(this));
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, std::string("NativeBuffer(bytes): bytes must be a number, got ") + KindOf(info.Length() < 1 ? env.Undefined() : info[0]))
        .ThrowAsJavaScriptException();
    return;
  }
  double n = info[0].As<Napi::Number>().DoubleValue();
  if (!(n >= 0) || n > 9.0e15 || n != std::floor(n)) {
    Napi::RangeError::New(env, str_cat("NativeBuffer(bytes): bytes must be an integer in [0, 9e15], got ", n)).ThrowAsJavaScriptException();
    return;
  }
  bytes_ = static_cast<size_t>(n);
  const bool zero = info.Length() > 1 && info[1].ToBoolean();
  OpProgram* rec = recording_program();
  try {
    if (rec) {
      // an internal buffer of the recording (program.h): from the program's pool, its zeroing logged
      data_ = rec->pool->alloc(bytes_);
      pool_ = rec->pool;
      program_id_ = rec->next_id++;
      recording_ = rec->serial;
      if (zero) ProgramRecordZero(rec, data_, bytes_, program_id_);
    } else {
      data_ = bytes_ > 0 ? kDeviceMemory.alloc(bytes_) : nullptr;
    }
    if (data_ && zero) kDeviceMemory.zero(data_, bytes_);
  } catch (const std::exception& e) {
    if (pool_) {
      pool_->release(data_, bytes_);
      pool_.reset();
    } else if (data_) {
      kDeviceMemory.release(data_, bytes_);
    }
    data_ = nullptr;
    Napi::Error::New(env, std::string("NativeBuffer(bytes): ") + e.what()).ThrowAsJavaScriptException();
    return;
  }
  disposed_ = false;  // only a successful allocation is counted and later freed
  live_count++;
  live_bytes += static_cast<int64_t>(bytes_);
  ReportExternalMemory(env);
}

NativeBuffer::~NativeBuffer() {
  LiveObjects().erase(static_cast<const void*>(this));
  Free();
}

void NativeBuffer::CheckNotPinned(const char* what, bool disposing) const {
  if (pins_ > (disposing ? abandoned_ : 0)) throw_type_error(what, ": the buffer is in use by a collective that has not been waited for (wait for its Work first)");
}

void NativeBuffer::Free() {
  if (disposed_) return;
  disposed_ = true;
  if (pool_) {
    // an op program's memory: back to its pool, never to the cache while the program may still use it (pinned: a
    // collective may still write it, so never reused)
    if (pins_ == 0) pool_->release(data_, bytes_);
    else pool_->abandon(data_);
    pool_.reset();
  } else {
    // an external buffer of the recording in progress: a replay would find it gone
    if (OpProgram* rec = recording_program(); rec && rec->external_index.count(this))
      rec->Fail("a buffer the recorded ops use, created before the recording, was disposed during it");
    // pinned: a collective may still write it (a finalizer at exit, after a timeout), so it is never reused
    if (data_ && pins_ == 0) kDeviceMemory.release(data_, bytes_);
  }
  data_ = nullptr;
  live_count--;
  live_bytes -= static_cast<int64_t>(bytes_);
}

// V8 is told the high-water mark of live native memory, not every allocation and free. V8 starts a
// mark-compact whenever the external memory it was told about grows 64 MiB past its value at the last one,
// so following a training step's activations up and down (50 -> 400 -> 50 MiB every step) cost about three
// full GCs per step (12 ms of a 600 ms decoder step). With the high-water mark, growth beyond every earlier
// peak still makes V8 collect (the safety net for buffers a program forgot to dispose), and a steady
// training loop causes none. lower_reported_external_memory() brings it down to the live bytes (after
// releaseHostCache, when memory really goes back to the system).
static int64_t reported_external = 0;  // the JS thread only (constructors, dispose, finalizers)

void NativeBuffer::ReportExternalMemory(Napi::Env env) {
  const int64_t live = live_bytes.load();
  if (live <= reported_external) return;
  Napi::MemoryManagement::AdjustExternalMemory(env, live - reported_external);
  reported_external = live;
}

void NativeBuffer::LowerReportedExternalMemory(Napi::Env env) {
  const int64_t live = live_bytes.load();
  if (live >= reported_external) return;
  Napi::MemoryManagement::AdjustExternalMemory(env, live - reported_external);
  reported_external = live;
}

// dispose(): frees the memory now; idempotent.
Napi::Value NativeBuffer::Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    NativeBuffer* self = Self(info, "NativeBuffer.dispose");
    self->CheckNotPinned("NativeBuffer.dispose", true);
    self->Free();
    return env.Undefined();
  });
}

// write(typedArray, byteOffset = 0): copies the whole typed array into the buffer at byteOffset.
// read(typedArray, byteOffset = 0): fills the whole typed array from the buffer at byteOffset.
static void CheckRange(const NativeBuffer* b, size_t offset, size_t n, const char* what) {
  if (offset > b->bytes() || n > b->bytes() - offset)
    throw_range_error(what, ": ", n, " bytes at offset ", offset, " exceed the buffer's ", b->bytes(), " bytes");
}

// The typed array argument (its data pointer and byte length; a detached one has 0 bytes) and the offset.
static void ArrayArgs(const Napi::CallbackInfo& info, const char* what, uint8_t** data, size_t* bytes, size_t* offset) {
  if (info.Length() < 1 || !info[0].IsTypedArray())
    throw_type_error(what, ": expected a typed array, got ", info.Length() < 1 ? "no argument" : KindOf(info[0]));
  napi_typedarray_type type;
  size_t length = 0, byte_offset = 0;
  void* p = nullptr;
  napi_value ab;
  if (napi_get_typedarray_info(info.Env(), info[0], &type, &length, &p, &ab, &byte_offset) != napi_ok)
    throw_type_error(what, ": could not read the typed array");
  *data = static_cast<uint8_t*>(p);
  *bytes = length * info[0].As<Napi::TypedArray>().ElementSize();
  if (*bytes > 0 && !p) throw_type_error(what, ": the typed array has no data");
  *offset = 0;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsNumber()) throw_type_error(what, ": byteOffset must be a number, got ", KindOf(info[1]));
    double o = info[1].As<Napi::Number>().DoubleValue();
    if (!(o >= 0) || o != std::floor(o) || o > 9.0e15) throw_range_error(what, ": byteOffset must be an integer >= 0, got ", o);
    *offset = static_cast<size_t>(o);
  }
}

// write(typedArray, byteOffset?) copies host -> buffer, read(...) buffer -> host: the same checks either way.
Napi::Value NativeBuffer::Transfer(const Napi::CallbackInfo& info, const char* what, bool to_buffer) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    NativeBuffer* self = Self(info, what);
    if (self->disposed_) throw_type_error(what, ": the buffer has been disposed");
    self->CheckNotPinned(what);
    uint8_t* host;
    size_t n, off;
    ArrayArgs(info, what, &host, &n, &off);
    CheckRange(self, off, n, what);
    uint8_t* mem = static_cast<uint8_t*>(self->data_) + off;
    OpProgram* rec = recording_program();
    // a program replays without JavaScript, so nothing it records may depend on a value read back
    if (rec && !to_buffer) rec->Fail("the recorded function read a buffer back to the host (toArray), and the ops after it may depend on the value");
    if (n > 0) {
      if (to_buffer) {
        kDeviceMemory.upload(mem, host, n);
        if (rec) ProgramRecordUpload(rec, self, info.This(), off, host, n);
      } else {
        count_host_sync();
        kDeviceMemory.flags_before_read();
        kDeviceMemory.download(host, mem, n);
        kDeviceMemory.flags_after_read();
      }
    }
    return info.Env().Undefined();
  });
}

Napi::Value NativeBuffer::Write(const Napi::CallbackInfo& info) { return Transfer(info, "NativeBuffer.write", true); }
Napi::Value NativeBuffer::Read(const Napi::CallbackInfo& info) { return Transfer(info, "NativeBuffer.read", false); }

Napi::Value NativeBuffer::Bytes(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    return Napi::Number::New(info.Env(), static_cast<double>(Self(info, "NativeBuffer.bytes")->bytes_));
  });
}
Napi::Value NativeBuffer::Disposed(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    return Napi::Boolean::New(info.Env(), Self(info, "NativeBuffer.disposed")->disposed_);
  });
}
Napi::Value NativeBuffer::Device(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    Self(info, "NativeBuffer.device");
    return Napi::String::New(info.Env(), kDeviceMemory.device);
  });
}

}  // namespace vw::napi
