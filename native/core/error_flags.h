// Error flags: data-dependent argument checks (ids in range, key-mask values, cross-entropy targets) and
// when their failures are raised. Both backends use this one path, so the CPU exercises in CI what a GPU
// does with it:
//   - a check is enqueued with the op's work. A host scan (the CPU, or a CUDA op that has the data on the
//     host anyway) records its result at once (record); a device scan claims a slot (claim_slot) into which
//     its kernel writes the first failing index and its value (FlagSlot);
//   - the flags are read when the host next synchronises with the backend (a buffer read, synchronize(),
//     or, in sync mode, the end of the op), and the first failure, in the order the checks were enqueued,
//     is raised there with its op's name (raise_pending). All pending checks are cleared either way.
// Sync mode (the CPU's default; VWLMM_CUDA_ASYNC=0 for CUDA): the op drains its own checks, so its error is raised
// by the op itself, before it writes an output on the CPU (on CUDA at its end, where it then waits). Async mode
// (CUDA's default; setAsync(true)): nothing waits for a check; the error is raised at the next
// synchronisation. An op whose check failed must stay memory-safe (it skips the bad entries or its whole
// work); what it and later ops compute is undefined until the error is raised, as after PyTorch's
// device-side asserts.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "error.h"

namespace vw {

constexpr uint64_t kNoFailure = ~uint64_t{0};

// What a device check writes: the first flat index whose value failed (kNoFailure: none) and that value.
// 16 bytes; a backend resets a slot to all-ones bytes before its kernel runs.
struct FlagSlot {
  uint64_t first;
  int64_t value;
};

// A check of int32 values x[i]: passes when lo <= x[i] < hi, or x[i] == allowed (the ignore index). Two kinds
// report what the fused vocabulary ops find instead of testing a value: NonFinite (the first non-finite element of
// an input: its flat index, and its float32 bits as the value) and Logits (the first row whose logits are not
// finite: the row, and its max's float32 bits).
struct ValueCheck {
  enum class Kind { Ids, KeyMask, Targets, NonFinite, Logits };
  const char* op;    // a static string: the op's table name
  const char* name;  // a static string: the argument ("ids", "idx", "keyMask", "targets"; NonFinite: "h", "wLm", ...)
  Kind kind;
  int64_t lo, hi;
  int64_t allowed;  // kind Targets: the ignore index
  int64_t row_len;  // kind KeyMask: Tk (the index is reported as [b, j])

  static ValueCheck ids(const char* op, const char* name, int64_t S) { return {op, name, Kind::Ids, 0, S, 0, 0}; }
  static ValueCheck key_mask(const char* op, int64_t Tk) { return {op, "keyMask", Kind::KeyMask, 0, 2, 0, Tk}; }
  static ValueCheck targets(const char* op, int64_t V, int64_t ignore_index) {
    return {op, "targets", Kind::Targets, 0, V, ignore_index, 0};
  }
  static ValueCheck non_finite(const char* op, const char* name) { return {op, name, Kind::NonFinite, 0, 0, 0, 0}; }
  static ValueCheck logits(const char* op) { return {op, "logits", Kind::Logits, 0, 0, 0, 0}; }

#if defined(__CUDACC__)
  __host__ __device__
#endif
  bool passes(int64_t v) const {
    return (v >= lo && v < hi) || (kind == Kind::Targets && v == allowed);
  }

  // The message both backends give for x[index] = value (the same words as before checks were deferred).
  std::string message(uint64_t index, int64_t value) const {
    const int64_t i = static_cast<int64_t>(index);
    switch (kind) {
      case Kind::NonFinite:
        return str_cat("[", op, "] ", name, " contains a non-finite value (", float_of_bits(value), ") at flat index ", i);
      case Kind::Logits:
        return str_cat("[", op, "] logits of row ", i, " are not finite (", float_of_bits(value),
                       "): the inputs overflow float32 in the projection");
      case Kind::KeyMask:
        return str_cat("[", op, "] ", name, "[", i / row_len, ", ", i % row_len, "] = ", value, " must be 0 or 1");
      case Kind::Targets:
        return str_cat("[", op, "] ", name, "[", i, "] = ", value, " is outside [", lo, ", ", hi,
                       ") and is not ignoreIndex (", allowed, ")");
      case Kind::Ids:
      default:
        return str_cat("[", op, "] ", name, "[", i, "] = ", value, " is outside [", lo, ", ", hi, ")");
    }
  }

  // A float32's bits as FlagSlot::value holds them (NonFinite, Logits), and back.
  static int64_t bits_of_float(float v) {
    uint32_t b;
    std::memcpy(&b, &v, sizeof b);
    return static_cast<int64_t>(b);
  }
  static float float_of_bits(int64_t value) {
    const uint32_t b = static_cast<uint32_t>(value);
    float v;
    std::memcpy(&v, &b, sizeof v);
    return v;
  }

  // First index i < n whose value fails, scanning on the host; kNoFailure when all pass.
  uint64_t first_failure(const int32_t* x, int64_t n) const {
    for (int64_t i = 0; i < n; ++i)
      if (!passes(x[i])) return static_cast<uint64_t>(i);
    return kNoFailure;
  }
};

class ErrorFlags {
 public:
  // Device slots per backend: a drain is forced (one synchronisation) when an op needs a slot and all are
  // pending, which takes more checks than a training step enqueues.
  static constexpr int kSlots = 256;

  bool async() const { return async_; }
  void set_async(bool on) { async_ = on; }

  // A check the host has just run. A passing one is not kept. In sync mode a failure is raised now, unless device
  // checks from an earlier async stretch are still pending: the op's end then raises them all, in order.
  void record(const ValueCheck& c, uint64_t first, int64_t value) {
    if (first == kNoFailure) return;
    pending_.push_back({c, -1, first, value, async_});
    if (!async_ && slots_used_ == 0) raise_pending(nullptr);
  }
  // Scans x[0, n) on the host and records the result; true when every value passed.
  bool check_on_host(const ValueCheck& c, const int32_t* x, int64_t n) {
    const uint64_t first = c.first_failure(x, n);
    record(c, first, first == kNoFailure ? 0 : x[first]);
    return first == kNoFailure;
  }

  // A check the device will run: the slot its kernel writes. Call slots_full() first and drain when true.
  int claim_slot(const ValueCheck& c) {
    if (slots_used_ >= kSlots) throw_runtime_error("[", c.op, "] internal: no free error-flag slot (drain first)");
    pending_.push_back({c, slots_used_, kNoFailure, 0, async_});
    return slots_used_++;
  }
  bool slots_full() const { return slots_used_ >= kSlots; }
  bool slots_free(int n) const { return slots_used_ + n <= kSlots; }

  // For a CUDA graph of op calls (native/napi/program.cc), which claims its slots once, at capture: the pending
  // checks as a mark, the device checks enqueued since a mark (false when a host-known result came in between,
  // which a graph launch would not repeat), a rollback to a mark (a capture that failed), and the same checks
  // claimed again, in order, for each launch (which writes the slots the capture claimed: pending must be empty).
  struct Mark {
    size_t entries;
    int slots;
  };
  Mark mark() const { return {pending_.size(), slots_used_}; }
  bool device_checks_since(const Mark& m, std::vector<ValueCheck>& out) const {
    out.clear();
    for (size_t k = m.entries; k < pending_.size(); ++k) {
      if (pending_[k].slot < 0) return false;
      out.push_back(pending_[k].check);
    }
    return true;
  }
  void rollback(const Mark& m) {
    if (pending_.size() > m.entries) pending_.resize(m.entries);
    slots_used_ = m.slots;
  }
  void claim_all(const std::vector<ValueCheck>& checks) {
    for (const ValueCheck& c : checks) claim_slot(c);
  }
  // Slots [0, slots_used()) are the ones to fetch from the device before raise_pending.
  int slots_used() const { return slots_used_; }
  bool pending() const { return !pending_.empty(); }
  // Whether a pending check run on the host failed (record keeps failures only; device slots are read by kernels).
  bool host_failure_pending() const {
    for (const Entry& e : pending_)
      if (e.slot < 0) return true;
    return false;
  }
  // Drops the pending checks unraised (a sync-mode op that failed otherwise: its own error wins).
  void clear() {
    pending_.clear();
    slots_used_ = 0;
  }

  // Clears every pending check, then raises the first failure in enqueue order, if any. `slots`: the host
  // copy of slots [0, slots_used()) (null when none was claimed).
  void raise_pending(const FlagSlot* slots) {
    std::vector<Entry> entries;
    entries.swap(pending_);
    slots_used_ = 0;
    const Entry* first = nullptr;
    uint64_t first_index = kNoFailure;
    int64_t first_value = 0;
    int64_t failed = 0;
    for (const Entry& e : entries) {
      uint64_t index = e.first;
      int64_t value = e.value;
      if (e.slot >= 0) {
        if (!slots) throw_runtime_error("[", e.check.op, "] internal: device error flags were not fetched");
        index = slots[e.slot].first;
        value = slots[e.slot].value;
      }
      if (index == kNoFailure) continue;
      if (++failed == 1) first = &e, first_index = index, first_value = value;
    }
    if (!first) return;
    std::string msg = first->check.message(first_index, first_value);
    if (first->deferred)  // enqueued in async mode (the mode may have changed since)
      msg += " (an asynchronous check, raised at the next synchronisation: what was computed since is undefined)";
    if (failed > 1) msg += str_cat(" (and ", failed - 1, " later failed check", failed > 2 ? "s" : "", ")");
    throw_range_error(msg);
  }

 private:
  struct Entry {
    ValueCheck check;
    int slot;  // device slot, or -1 when the host already knows the result
    uint64_t first;
    int64_t value;
    bool deferred;  // enqueued in async mode: raised at a later synchronisation than its op
  };
  std::vector<Entry> pending_;
  int slots_used_ = 0;
  bool async_ = false;
};

// The backend's flags: one per addon (each .node links its own copy), used from the JS thread only.
inline ErrorFlags& error_flags() {
  static ErrorFlags f;
  return f;
}

}  // namespace vw
