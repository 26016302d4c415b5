// NativeBuffer: a block of backend memory (host RAM for the CPU addon, device memory for the CUDA addon)
// owned by a JS object. dispose() frees it at once and is idempotent (a second dispose() does nothing);
// any other use of a disposed buffer throws a TypeError. The GC finalizer is only a safety net. Every
// allocation is counted, so tests can check leaks, and the high-water mark of live bytes is reported to V8
// (AdjustExternalMemory; buffer.cc says why not every allocation).
// Objects are recognised by the addon's own set of the buffers it constructed (buffer.cc; not instanceof, which JS
// can redefine), so an object of another class, another addon's buffer, or Object.create(NativeBuffer.prototype)
// is a TypeError, also as `this` of the methods and accessors.
#pragma once
#include <napi.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "../core/block_cache.h"
#include "../core/op.h"

namespace vw::napi {

class ProgramPool;  // native/napi/program.h

// A backend's graphs of op programs (native/napi/program.cc): CUDA graphs, which the CUDA addon provides and the CPU
// addon does not (null; program.cc's host graphs stand in for them in tests, programHostGraphs). A program captures
// one replay into a graph and launches that graph afterwards: one host call a step instead of one per op. The copies
// and fills inside a capture are stream-ordered ones on the ops' stream, from pinned host memory (NativeBuffer's own
// run on the legacy default stream, which a capture may not touch).
struct GraphHooks {
  void (*op)(OpFn fn, const OpCall& call);  // one recorded op call: run (its kernels captured), or kept (host graphs)
  bool (*begin)(std::string* why);  // starts capturing the ops' stream; false (and why) when it cannot
  void* (*end)(std::string* why);   // ends the capture: the instantiated graph, or null and why
  void (*launch)(void* graph);      // enqueued, with an event after it
  void (*wait)(void* graph);        // until the last launch is done (counted as a host synchronisation when it waits)
  void (*destroy)(void* graph);
  size_t (*nodes)(void* graph);
  void (*upload)(void* dst, const void* pinned_src, size_t n);
  void (*zero)(void* dst, size_t n);
  void* (*alloc_pinned)(size_t n);
  void (*free_pinned)(void* p);
};

// What a backend provides to NativeBuffer. Each addon defines exactly one (see addon_*.cc).
struct DeviceMemory {
  const char* device;                                  // "cpu" | "cuda"
  void* (*alloc)(size_t bytes);                        // throws vw::Error on failure
  void (*release)(void* ptr, size_t bytes);  // bytes: the size it was allocated with
  void (*upload)(void* dst, const void* src, size_t);  // host -> backend
  void (*download)(void* dst, const void* src, size_t);
  void (*zero)(void* dst, size_t);
  BlockCacheStats (*cache_stats)();  // the backend's caching allocator (native/core/block_cache.h)
  size_t (*release_cache)();         // its cached blocks back to the system; returns the bytes
  // The error flags (native/core/error_flags.h) at a host synchronisation: before_read enqueues the copy of
  // the device's flags ahead of a read (whose wait then covers it); after_read raises the first failed
  // check; synchronize waits for all enqueued work, then does the same.
  void (*flags_before_read)();
  void (*flags_after_read)();
  void (*synchronize)();
  const GraphHooks* graphs;  // null: the backend replays op programs call by call (the CPU)
};
extern const DeviceMemory kDeviceMemory;

class NativeBuffer : public Napi::ObjectWrap<NativeBuffer> {
 public:
  static Napi::Function Init(Napi::Env env);
  // Allocates a new buffer of `bytes` (zeroed when `zero`) and returns its JS object.
  static Napi::Object Create(Napi::Env env, size_t bytes, bool zero);
  // The buffer behind a JS value; throws a TypeError naming `what` if it is not a live NativeBuffer.
  static NativeBuffer* From(const Napi::Value& v, const char* what);
  // The same without the liveness check (null if v is not a NativeBuffer of this addon).
  static NativeBuffer* Peek(const Napi::Value& v);

  explicit NativeBuffer(const Napi::CallbackInfo& info);
  ~NativeBuffer() override;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  bool disposed() const { return disposed_; }

  // Frees the memory now (idempotent); used to drop outputs of a kernel call that failed.
  void Release() { Free(); }

  // A collective (native/napi/dist_napi.h) that has started on the buffer and not been waited for pins it:
  // dispose(), write(), read() and ops refuse a pinned buffer, since the communication thread or stream may still
  // read or write it. A buffer pinned for good (its collective timed out) is never returned to the allocator, but
  // dispose() accepts it (Abandon): the cleanup after a timeout must not replace the timeout's error with its own.
  void Pin() { ++pins_; }
  void Unpin() { --pins_; }
  void Abandon() { ++abandoned_; }
  bool pinned() const { return pins_ > 0; }
  // Throws a TypeError naming `what` when pinned (for dispose: by a collective that has not timed out).
  void CheckNotPinned(const char* what, bool disposing = false) const;

  // A buffer created while an op program was recording (native/napi/program.h) takes its memory from, and gives it
  // back to, that program's pool; program_id() is its creation index in the recording (-1 otherwise).
  int64_t program_id() const { return program_id_; }
  uint64_t recorded_by() const { return recording_; }  // the serial number of the recording that created it (0: none)

  static std::atomic<int64_t> live_count, live_bytes;
  // What V8 hears of live_bytes (buffer.cc): its high-water mark, lowered only by the second call.
  static void ReportExternalMemory(Napi::Env env);
  static void LowerReportedExternalMemory(Napi::Env env);

 private:
  // Methods and accessors are free functions that check `this` themselves (see the header comment).
  static Napi::Value Dispose(const Napi::CallbackInfo& info);
  static Napi::Value Write(const Napi::CallbackInfo& info);
  static Napi::Value Read(const Napi::CallbackInfo& info);
  static Napi::Value Transfer(const Napi::CallbackInfo& info, const char* what, bool to_buffer);
  static Napi::Value Bytes(const Napi::CallbackInfo& info);
  static Napi::Value Disposed(const Napi::CallbackInfo& info);
  static Napi::Value Device(const Napi::CallbackInfo& info);
  static NativeBuffer* Self(const Napi::CallbackInfo& info, const char* what);
  void Free();

  void* data_ = nullptr;
  size_t bytes_ = 0;
  bool disposed_ = true;
  int pins_ = 0;       // the JS thread only
  int abandoned_ = 0;  // of those pins, the ones whose collective timed out
  std::shared_ptr<ProgramPool> pool_;
  int64_t program_id_ = -1;
  uint64_t recording_ = 0;
};

}  // namespace vw::napi
