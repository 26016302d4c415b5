#include "buffer.h"

#include "../core/error.h"
#include "errors.h"

namespace vw::napi {

std::atomic<int64_t> NativeBuffer::live_count{0};
std::atomic<int64_t> NativeBuffer::live_bytes{0};

static Napi::FunctionReference* g_ctor = nullptr;

Napi::Function NativeBuffer::Init(Napi::Env env) {
  Napi::Function fn = DefineClass(env, "NativeBuffer",
                                  {InstanceMethod("dispose", &NativeBuffer::Dispose),
                                   InstanceMethod("write", &NativeBuffer::Write),
                                   InstanceMethod("read", &NativeBuffer::Read),
                                   InstanceAccessor("bytes", &NativeBuffer::Bytes, nullptr),
                                   InstanceAccessor("disposed", &NativeBuffer::Disposed, nullptr),
                                   InstanceAccessor("device", &NativeBuffer::Device, nullptr)});
  g_ctor = new Napi::FunctionReference(Napi::Persistent(fn));
  env.SetInstanceData<Napi::FunctionReference>(g_ctor);
  return fn;
}

Napi::Object NativeBuffer::Create(Napi::Env env, size_t bytes, bool zero) {
  Napi::Object obj = g_ctor->New({Napi::Number::New(env, static_cast<double>(bytes))});
  NativeBuffer* b = From(obj, "buffer");
  if (zero && bytes > 0) kDeviceMemory.zero(b->data_, bytes);
  return obj;
}

NativeBuffer* NativeBuffer::From(const Napi::Value& v, const char* what) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(g_ctor->Value()))
    throw_type_error(what, " must be a ", kDeviceMemory.device, " NativeBuffer");
  NativeBuffer* b = ObjectWrap<NativeBuffer>::Unwrap(v.As<Napi::Object>());
  if (b->disposed_) throw_type_error(what, " has been disposed");
  return b;
}

NativeBuffer::NativeBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeBuffer>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "NativeBuffer(bytes): bytes must be a number").ThrowAsJavaScriptException();
    return;
  }
  double n = info[0].As<Napi::Number>().DoubleValue();
  if (!(n >= 0) || n > 9.0e15 || n != static_cast<double>(static_cast<int64_t>(n))) {
    Napi::RangeError::New(env, "NativeBuffer(bytes): bytes must be a non-negative integer").ThrowAsJavaScriptException();
    return;
  }
  bytes_ = static_cast<size_t>(n);
  try {
    data_ = bytes_ > 0 ? kDeviceMemory.alloc(bytes_) : nullptr;
    if (data_ && info.Length() > 1 && info[1].ToBoolean()) kDeviceMemory.zero(data_, bytes_);
  } catch (const std::exception& e) {
    ThrowAsJs(env, e);
    return;
  }
  disposed_ = false;  // only a successful allocation is counted and later freed
  live_count++;
  live_bytes += static_cast<int64_t>(bytes_);
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(bytes_));
}

NativeBuffer::~NativeBuffer() { Free(nullptr); }

void NativeBuffer::Free(Napi::Env* env) {
  if (disposed_) return;
  disposed_ = true;
  if (data_) kDeviceMemory.release(data_, bytes_);
  data_ = nullptr;
  live_count--;
  live_bytes -= static_cast<int64_t>(bytes_);
  if (env) Napi::MemoryManagement::AdjustExternalMemory(*env, -static_cast<int64_t>(bytes_));
}

Napi::Value NativeBuffer::Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Free(&env);
  return env.Undefined();
}

// write(typedArray, byteOffset = 0): copies the whole typed array into the buffer at byteOffset.
// read(typedArray, byteOffset = 0): fills the whole typed array from the buffer at byteOffset.
static void CheckRange(const NativeBuffer* b, size_t offset, size_t n, const char* what) {
  if (offset > b->bytes() || n > b->bytes() - offset)
    throw_range_error(what, ": ", n, " bytes at offset ", offset, " exceed the buffer's ", b->bytes(), " bytes");
}

static void ArrayArgs(const Napi::CallbackInfo& info, const char* what, Napi::TypedArray* arr, size_t* offset) {
  if (info.Length() < 1 || !info[0].IsTypedArray()) throw_type_error(what, ": expected a typed array");
  *arr = info[0].As<Napi::TypedArray>();
  *offset = 0;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    double o = info[1].As<Napi::Number>().DoubleValue();
    if (!(o >= 0)) throw_range_error(what, ": byteOffset must be >= 0");
    *offset = static_cast<size_t>(o);
  }
}

Napi::Value NativeBuffer::Write(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    if (disposed_) throw_type_error("NativeBuffer.write: the buffer has been disposed");
    Napi::TypedArray arr;
    size_t off;
    ArrayArgs(info, "NativeBuffer.write", &arr, &off);
    CheckRange(this, off, arr.ByteLength(), "NativeBuffer.write");
    const uint8_t* src = static_cast<const uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
    if (arr.ByteLength() > 0) kDeviceMemory.upload(static_cast<uint8_t*>(data_) + off, src, arr.ByteLength());
    return info.Env().Undefined();
  });
}

Napi::Value NativeBuffer::Read(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    if (disposed_) throw_type_error("NativeBuffer.read: the buffer has been disposed");
    Napi::TypedArray arr;
    size_t off;
    ArrayArgs(info, "NativeBuffer.read", &arr, &off);
    CheckRange(this, off, arr.ByteLength(), "NativeBuffer.read");
    uint8_t* dst = static_cast<uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
    if (arr.ByteLength() > 0) kDeviceMemory.download(dst, static_cast<const uint8_t*>(data_) + off, arr.ByteLength());
    return info.Env().Undefined();
  });
}

Napi::Value NativeBuffer::Bytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(bytes_));
}
Napi::Value NativeBuffer::Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), disposed_); }
Napi::Value NativeBuffer::Device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), kDeviceMemory.device);
}

}  // namespace vw::napi
