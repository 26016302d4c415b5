// Translation of C++ exceptions into JS exceptions: vw::Error keeps its kind (TypeError / RangeError),
// anything else (std::bad_alloc, CUDA failures) becomes a plain Error. Nothing escapes as a crash.
#pragma once
#include <napi.h>

#include <exception>
#include <new>

#include "../core/error.h"

namespace vw::napi {

inline void ThrowAsJs(Napi::Env env, const std::exception& e) {
  if (auto* ve = dynamic_cast<const vw::Error*>(&e)) {
    if (ve->kind == ErrorKind::Type) throw Napi::TypeError::New(env, ve->what());
    if (ve->kind == ErrorKind::Range) throw Napi::RangeError::New(env, ve->what());
  }
  if (dynamic_cast<const std::bad_alloc*>(&e)) throw Napi::Error::New(env, "out of host memory (std::bad_alloc)");
  throw Napi::Error::New(env, e.what());
}

// Runs fn, converting vw::Error and std::exception into JS exceptions (Napi::Error passes through).
template <typename Fn>
Napi::Value Guard(Napi::Env env, Fn&& fn) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    ThrowAsJs(env, e);
  }
  return env.Undefined();
}

}  // namespace vw::napi
