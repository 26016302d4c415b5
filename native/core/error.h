// vwlmm native error type. Kernels never abort or exit: they throw vw::Error, and the N-API layer turns
// it into a JS TypeError / RangeError / Error with the same message.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace vw {

enum class ErrorKind { Type, Range, Runtime };

struct Error : std::runtime_error {
  ErrorKind kind;
  Error(ErrorKind k, const std::string& msg) : std::runtime_error(msg), kind(k) {}
};

template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

template <typename... Args>
[[noreturn]] void throw_type_error(const Args&... args) { throw Error(ErrorKind::Type, str_cat(args...)); }
template <typename... Args>
[[noreturn]] void throw_range_error(const Args&... args) { throw Error(ErrorKind::Range, str_cat(args...)); }
template <typename... Args>
[[noreturn]] void throw_runtime_error(const Args&... args) { throw Error(ErrorKind::Runtime, str_cat(args...)); }

}  // namespace vw
