// The binding of a process group's collectives (native/distributed/collective.h), shared by both addons, which differ
// only in the Communicator they open (the CPU addon: MPI; the CUDA addon: NCCL):
//   distInit(backend, options) -> { backend, rank, worldSize, localRank, localWorldSize, library }
//   distStart(collective, input, output, dtype, count, op, root) -> handle   (queued; pins both buffers)
//   distTest(handle) -> boolean      distWait(handle, timeoutMs[, waitedMs])      distDestroy(timeoutMs)
//   distInfo() -> the group's fields, or null before distInit / after distDestroy
// One group per process (MPI cannot start twice). src/distributed/process_group.ts is the TS side.
#pragma once
#include <napi.h>

#include <cmath>
#include <string>
#include <unordered_map>
#include <vector>

#include "../distributed/collective.h"
#include "buffer.h"
#include "program.h"
#include "errors.h"

namespace vw::napi {

// Opens the addon's backend `backend` (options: the JS object distInit got); throws vw::Error. The result is
// never freed (its thread or stream may outlive a timed-out wait).
using OpenCommunicator = dist::Communicator* (*)(const std::string& backend, const Napi::Object& options, double timeout_s);

namespace detail {

struct DistState {
  dist::Communicator* comm = nullptr;
  bool destroyed = false;
  // The buffers a started collective pins, by handle, until it is waited for.
  struct Pinned {
    Napi::ObjectReference in, out;
    NativeBuffer *in_buf, *out_buf;
    bool abandoned = false;  // its wait timed out (Abandon)
  };
  std::unordered_map<uint64_t, Pinned> pinned;
};

inline DistState& dist_state() {
  static DistState* s = new DistState();  // never destroyed: see OpenCommunicator
  return *s;
}

inline double TimeoutSeconds(const Napi::Value& v, const char* where) {
  if (!v.IsNumber()) throw_type_error("[", where, "] timeoutMs must be a number");
  const double ms = v.As<Napi::Number>().DoubleValue();
  if (!(ms > 0) || !std::isfinite(ms)) throw_range_error("[", where, "] timeoutMs must be a finite number > 0, got ", ms);
  return ms / 1000.0;
}

inline dist::Communicator& Comm(const char* where) {
  DistState& s = dist_state();
  if (!s.comm || s.destroyed) throw_type_error("[", where, "] no process group: call initProcessGroup first", s.destroyed ? " (it has been destroyed)" : "");
  return *s.comm;
}

inline uint64_t Handle(const Napi::Value& v, const char* where) {
  if (!v.IsNumber()) throw_type_error("[", where, "] handle must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 1) || d != std::floor(d) || d > 9007199254740992.0) throw_range_error("[", where, "] handle must be a positive integer, got ", d);
  return static_cast<uint64_t>(d);
}

// A timed-out collective's buffers stay pinned (never reused) but may be disposed (NativeBuffer::Abandon).
inline void Abandon(uint64_t h) {
  DistState& s = dist_state();
  auto it = s.pinned.find(h);
  if (it == s.pinned.end() || it->second.abandoned) return;  // once per collective: a second wait times out too
  it->second.abandoned = true;
  it->second.in_buf->Abandon();
  it->second.out_buf->Abandon();  // twice for an in-place collective, as it was pinned twice
}

inline void Unpin(uint64_t h) {
  DistState& s = dist_state();
  auto it = s.pinned.find(h);
  if (it == s.pinned.end()) return;
  it->second.in_buf->Unpin();
  it->second.out_buf->Unpin();
  s.pinned.erase(it);
}

inline Napi::Value InfoObject(Napi::Env env, dist::Communicator& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("backend", c.backend());
  o.Set("rank", c.rank());
  o.Set("worldSize", c.size());
  o.Set("localRank", c.local_rank());
  o.Set("localWorldSize", c.local_size());
  o.Set("library", c.library());
  return o;
}

}  // namespace detail

inline void RegisterDist(Napi::Env env, Napi::Object exports, OpenCommunicator open) {
  using detail::dist_state;
  exports.Set("distInit", Napi::Function::New(env, [open](const Napi::CallbackInfo& info) -> Napi::Value {
    return Guard(info.Env(), [&]() -> Napi::Value {
      const char* where = "distInit";
      if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject()) throw_type_error("[", where, "] expected (backend: string, options: object)");
      detail::DistState& s = dist_state();
      if (s.comm) throw_type_error("[", where, "] a process group already ", s.destroyed ? "ran in this process (MPI and NCCL start once per process)" : "exists: destroy it first");
      const Napi::Object o = info[1].As<Napi::Object>();
      const double timeout = detail::TimeoutSeconds(o.Get("timeoutMs"), where);
      s.comm = open(info[0].As<Napi::String>().Utf8Value(), o, timeout);
      return detail::InfoObject(info.Env(), *s.comm);
    });
  }, "distInit"));
  exports.Set("distInfo", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    detail::DistState& s = dist_state();
    if (!s.comm || s.destroyed) return info.Env().Null();
    return detail::InfoObject(info.Env(), *s.comm);
  }, "distInfo"));
  exports.Set("distStart", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Guard(info.Env(), [&]() -> Napi::Value {
      if (info.Length() < 7 || !info[0].IsString() || !info[3].IsString() || !info[5].IsString())
        throw_type_error("[distStart] expected (collective, input, output, dtype, count, op, root)");
      dist::CollectiveArgs a{};
      a.kind = dist::collective_from_name(info[0].As<Napi::String>().Utf8Value());
      const char* name = dist::collective_name(a.kind);
      a.dtype = dtype_from_name(info[3].As<Napi::String>().Utf8Value(), name);
      a.op = dist::reduce_op_from_name(info[5].As<Napi::String>().Utf8Value(), name);
      for (int k : {4, 6})
        if (!info[k].IsNumber()) throw_type_error("[", name, "] ", k == 4 ? "count" : "root", " must be a number");
      const double count = info[4].As<Napi::Number>().DoubleValue(), root = info[6].As<Napi::Number>().DoubleValue();
      if (!(count >= 0) || count != std::floor(count) || count > 9.0e15) throw_range_error("[", name, "] count must be an integer >= 0, got ", count);
      if (root != std::floor(root) || std::fabs(root) > 1e9) throw_range_error("[", name, "] root must be an integer, got ", root);
      a.count = static_cast<size_t>(count);
      a.root = static_cast<int>(root);
      // a collective is not an op call: a program would replay the step without it
      if (OpProgram* rec = recording_program()) rec->Fail(std::string("the recorded function started a collective (") + name + "), which a replay would not");
      dist::Communicator& c = detail::Comm(name);
      // Buffers last: no JS runs between taking their pointers and queueing the collective.
      NativeBuffer* in = NativeBuffer::From(info[1], (std::string("[") + name + "] input").c_str());
      NativeBuffer* out = NativeBuffer::From(info[2], (std::string("[") + name + "] output").c_str());
      in->CheckNotPinned((std::string("[") + name + "] input").c_str());
      out->CheckNotPinned((std::string("[") + name + "] output").c_str());
      a.in = in->data();
      a.out = out->data();
      dist::check_collective(a, in->bytes(), out->bytes(), c.size());
      const uint64_t h = c.start(a);
      in->Pin();
      out->Pin();
      dist_state().pinned.emplace(h, detail::DistState::Pinned{Napi::Persistent(info[1].As<Napi::Object>()), Napi::Persistent(info[2].As<Napi::Object>()), in, out, false});
      return Napi::Number::New(info.Env(), static_cast<double>(h));
    });
  }, "distStart"));
  exports.Set("distTest", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Guard(info.Env(), [&]() -> Napi::Value {
      const uint64_t h = detail::Handle(info.Length() > 0 ? info[0] : info.Env().Undefined(), "distTest");
      return Napi::Boolean::New(info.Env(), detail::Comm("distTest").test(h));
    });
  }, "distTest"));
  exports.Set("distWait", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Guard(info.Env(), [&]() -> Napi::Value {
      if (info.Length() < 2) throw_type_error("[distWait] expected (handle, timeoutMs)");
      const uint64_t h = detail::Handle(info[0], "distWait");
      const double timeout = detail::TimeoutSeconds(info[1], "distWait");
      // how long the caller already polled distTest (Work.waitAsync): a timeout's message names the whole deadline
      double waited = 0;
      if (info.Length() > 2 && !info[2].IsUndefined()) {
        if (!info[2].IsNumber() || !(info[2].As<Napi::Number>().DoubleValue() >= 0)) throw_type_error("[distWait] waitedMs must be a number >= 0");
        waited = info[2].As<Napi::Number>().DoubleValue() / 1000.0;
      }
      dist::Communicator& c = detail::Comm("distWait");
      try {
        c.wait(h, timeout, waited);
      } catch (const dist::CollectiveTimeout&) {
        detail::Abandon(h);  // it may still run: its buffers stay pinned for good
        throw;
      } catch (const Error&) {
        detail::Unpin(h);  // it failed and returned: its buffers are free again
        throw;
      }
      detail::Unpin(h);
      return info.Env().Undefined();
    });
  }, "distWait"));
  exports.Set("distDestroy", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Guard(info.Env(), [&]() -> Napi::Value {
      const double timeout = detail::TimeoutSeconds(info.Length() > 0 ? info[0] : info.Env().Undefined(), "distDestroy");
      detail::DistState& s = dist_state();
      if (!s.comm || s.destroyed) return info.Env().Undefined();
      if (!s.pinned.empty()) throw_type_error("[distDestroy] ", s.pinned.size(), " collective(s) not yet waited for: wait for them first");
      s.comm->finalize(timeout);
      s.destroyed = true;
      return info.Env().Undefined();
    });
  }, "distDestroy"));
}

}  // namespace vw::napi
