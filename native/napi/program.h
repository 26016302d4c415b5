// Op programs: a fixed sequence of op calls (a training step's forward and backward) recorded once from JavaScript
// and replayed natively, with no JavaScript, autograd or N-API per op (torch.cuda.graphs' record-then-replay, on
// every backend). On the GPU a small model's step is bound by the host's work per op (benchmarks/RESULTS.md, "Host
// waits per step"); a replay leaves the host one loop over recorded calls.
//
// Recording (programBegin(inputs) ... programEnd()) runs every op for real and logs, in order:
//   - each op call: its function, integer and float parameters, and its buffers;
//   - each upload (NativeBuffer.write): from a slice of one of the recording's `inputs` (the step's data, which a
//     replay takes anew), else as a constant (its bytes are kept);
//   - each zero-filled allocation.
// Buffers created while recording are internal: their memory comes from the program's own pool and goes back to it
// when they are disposed, so a later allocation of the recording reuses it as the backend's cache would, and no
// other tensor ever gets it while the program lives. Every internal buffer must be disposed by programEnd (a step's
// temporaries). Buffers created before are external (parameters, their gradients, optimizer state): the program
// holds a reference to each, and a replay refuses to run when one has been disposed or is in use by a collective.
// A recording only watches: the function runs as it would unrecorded. What a replay could not repeat (a read to the
// host, on whose value the function may branch; a collective; an external buffer disposed; an internal one left
// alive) makes programEnd refuse, naming the first such thing.
//
// What a recording cannot see is the JavaScript that chose the calls: a replay is only right when the recorded
// function makes the same calls for every input of the recorded sizes. programCompare(a, b) checks two recordings of
// it (two steps) call by call, so that a parameter drawn per step (a dropout seed), or data uploaded other than
// through `inputs`, is found before a program is trusted (src/program.ts, the Trainer's use).
#pragma once
#include <napi.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../core/error_flags.h"
#include "../core/op.h"
#include "buffer.h"
#include "errors.h"

namespace vw::napi {

// The memory of a program's internal buffers: never returned to the backend's cache while a program (or a buffer of
// an aborted recording) holds the pool. Requests are rounded to size classes (block_size_class of
// native/core/block_cache.h: 256-byte steps up to 1 MiB, then 4 per octave), and a freed block serves any later request
// of a class up to its own and at least half of it (best fit): recordings of other shapes sharing a pool (programBegin's
// second argument; a stage whose batches' lengths vary) reuse its blocks, where an exact class match made every new
// length allocate anew (a stage of 319 batch shapes held 1.6 GB for steps of 60 MB). Programs that share a pool must
// never run at once (they do not: one JS thread, and a replay or recording holds no internal buffer past its end).
class ProgramPool {
 public:
  ProgramPool() = default;
  ProgramPool(const ProgramPool&) = delete;
  ProgramPool& operator=(const ProgramPool&) = delete;
  ~ProgramPool() {
    for (const auto& b : blocks_)
      if (b.first) kDeviceMemory.release(b.first, b.second);
  }
  static size_t size_class(size_t bytes) { return block_size_class(bytes, 256, size_t{1} << 20); }
  void* alloc(size_t bytes) {
    void* p = nullptr;
    if (bytes > 0) {
      const size_t cls = size_class(bytes);
      // the smallest free block that fits, if it wastes less than half of itself
      auto it = free_.lower_bound(cls);
      if (it != free_.end() && it->first / 2 <= cls) {
        p = it->second;
        free_.erase(it);
      } else {
        p = kDeviceMemory.alloc(cls);
        blocks_.emplace_back(p, cls);
        sizes_.emplace(p, cls);
        bytes_ += cls;
      }
      live_bytes_ += sizes_.at(p);
      if (live_bytes_ > peak_bytes_) peak_bytes_ = live_bytes_;
    }
    ++live_;
    return p;
  }
  void release(void* p, size_t /*bytes*/) {
    --live_;
    if (!p) return;
    live_bytes_ -= sizes_.at(p);
    free_.emplace(sizes_.at(p), p);  // back at its own size, whatever request it served
  }
  // A block a collective may still write (its buffer disposed while pinned): never reused nor freed, as the cache
  // never frees such a block either.
  void abandon(void* p) {
    --live_;
    if (!p) return;
    live_bytes_ -= sizes_.at(p);
    sizes_.erase(p);
    for (auto& b : blocks_)
      if (b.first == p) b.first = nullptr;
  }
  int64_t live() const { return live_; }  // internal buffers not yet disposed
  size_t bytes() const { return bytes_; }  // memory the pool holds
  // the most its live blocks held at once since start_peak(): a recording's own footprint (its step's temporaries)
  void start_peak() { peak_bytes_ = live_bytes_; }
  size_t peak() const { return peak_bytes_; }

 private:
  std::vector<std::pair<void*, size_t>> blocks_;
  std::unordered_map<void*, size_t> sizes_;  // each block's size (its class when made)
  std::multimap<size_t, void*> free_;         // by size, for the best fit
  int64_t live_ = 0;
  size_t bytes_ = 0, live_bytes_ = 0, peak_bytes_ = 0;
};

namespace program_detail {

constexpr int64_t kAbsent = INT64_MIN;  // a null buffer slot

struct Op {
  const char* name;
  OpFn fn;
  OpCall call;  // the buffers as recorded (data pointers fixed for the program's life), stats null
  // per buffer slot: an internal buffer's creation index (>= 0), -(external index + 1), or kAbsent
  std::vector<int64_t> ids_in, ids_out;
};
struct Upload {
  void* dst;
  size_t bytes;
  int64_t id;
  int32_t input;  // the recording input it came from, or -1: a constant
  size_t input_offset;
  std::vector<uint8_t> constant;
};
struct Zero {
  void* dst;
  size_t bytes;
  int64_t id;
};
struct External {
  Napi::ObjectReference ref;
  NativeBuffer* buf;
  void* data;
  size_t bytes;
};
enum class Kind : uint8_t { Op, Upload, Zero };
struct Event {
  Kind kind;
  uint32_t index;
};
struct Input {
  const uint8_t* data;
  size_t bytes;
};

}  // namespace program_detail

class OpProgram {
 public:
  OpProgram() = default;
  OpProgram(const OpProgram&) = delete;
  OpProgram& operator=(const OpProgram&) = delete;
  ~OpProgram() {
    if (const GraphHooks* g = graph_hooks) {
      if (graph) {
        // a launch in flight may still copy from the pinned memory (cudaFreeHost is not documented to wait)
        try {
          g->wait(graph);
        } catch (...) {
        }
        g->destroy(graph);
      }
      if (pinned) g->free_pinned(pinned);
    }
  }

  // which recording made a buffer (NativeBuffer::recorded_by): a serial number, never reused as an address could be
  const uint64_t serial = NextSerial();
  std::shared_ptr<ProgramPool> pool = std::make_shared<ProgramPool>();
  size_t step_bytes = 0;  // the most its internal buffers held at once while it was recorded (programInfo's stepBytes)
  std::vector<program_detail::Event> events;
  std::vector<program_detail::Op> ops;
  std::vector<program_detail::Upload> uploads;
  std::vector<program_detail::Zero> zeros;
  std::vector<program_detail::External> externals;
  std::vector<size_t> input_bytes;
  // while recording
  std::unordered_map<const NativeBuffer*, int32_t> external_index;
  std::vector<program_detail::Input> inputs;
  int64_t next_id = 0;
  std::string failed;  // why the recording cannot become a program (the first reason)
  // The backend's graph of a replay (GraphHooks: CUDA graphs), captured at the first replay that can and launched at
  // the next ones (program.cc, "Graphs"): its uploads come from `pinned` (one slice per upload, at pinned_offset),
  // and the error-flag checks its ops claimed at capture are claimed again at each launch.
  bool graph_wanted = true;  // programBegin's `graph` option
  const GraphHooks* graph_hooks = nullptr;  // the hooks that made `graph` and `pinned` (and free them)
  void* graph = nullptr;
  std::string graph_why;  // why there is no graph (empty: not tried yet, or there is one)
  uint8_t* pinned = nullptr;
  std::vector<size_t> pinned_offset;
  std::vector<ValueCheck> graph_checks;
  uint64_t graph_launches = 0;

  void Fail(std::string why) {
    if (failed.empty()) failed = std::move(why);
  }
  static uint64_t NextSerial() {
    static uint64_t n = 0;
    return ++n;
  }
  size_t constant_bytes() const {
    size_t n = 0;
    for (const auto& u : uploads) n += u.constant.size();
    return n;
  }
};

// The recording in progress (the JS thread only), or null.
inline OpProgram*& recording_program() {
  static OpProgram* p = nullptr;
  return p;
}

// Hooks of NativeBuffer (buffer.cc) and callOp (op_napi.h) while recording.
inline void ProgramRecordZero(OpProgram* p, void* dst, size_t bytes, int64_t id) {
  p->events.push_back({program_detail::Kind::Zero, static_cast<uint32_t>(p->zeros.size())});
  p->zeros.push_back({dst, bytes, id});
}

inline int64_t ProgramBufferId(OpProgram* p, NativeBuffer* b, const Napi::Value& v) {
  if (b->recorded_by() == p->serial) return b->program_id();
  auto it = p->external_index.find(b);
  if (it != p->external_index.end()) return -(static_cast<int64_t>(it->second) + 1);
  const int32_t k = static_cast<int32_t>(p->externals.size());
  p->externals.push_back({Napi::Persistent(v.As<Napi::Object>()), b, b->data(), b->bytes()});
  p->external_index.emplace(b, k);
  return -(static_cast<int64_t>(k) + 1);
}

inline void ProgramRecordUpload(OpProgram* p, NativeBuffer* b, const Napi::Value& v, size_t offset, const uint8_t* host, size_t n) {
  program_detail::Upload u{static_cast<uint8_t*>(b->data()) + offset, n, ProgramBufferId(p, b, v), -1, 0, {}};
  for (size_t k = 0; k < p->inputs.size(); ++k) {
    const auto& in = p->inputs[k];
    if (n > 0 && host >= in.data && host + n <= in.data + in.bytes) {
      u.input = static_cast<int32_t>(k);
      u.input_offset = static_cast<size_t>(host - in.data);
      break;
    }
  }
  if (u.input < 0) u.constant.assign(host, host + n);
  p->events.push_back({program_detail::Kind::Upload, static_cast<uint32_t>(p->uploads.size())});
  p->uploads.push_back(std::move(u));
}

inline void ProgramRecordOp(OpProgram* p, const char* name, OpFn fn, const OpCall& c, const std::vector<NativeBuffer*>& in,
                            const std::vector<Napi::Value>& in_values, const std::vector<NativeBuffer*>& out,
                            const std::vector<Napi::Value>& out_values) {
  program_detail::Op op{name, fn, c, {}, {}};
  op.call.stats = nullptr;
  op.ids_in.reserve(in.size());
  op.ids_out.reserve(out.size());
  for (size_t k = 0; k < in.size(); ++k) op.ids_in.push_back(in[k] ? ProgramBufferId(p, in[k], in_values[k]) : program_detail::kAbsent);
  for (size_t k = 0; k < out.size(); ++k) op.ids_out.push_back(out[k] ? ProgramBufferId(p, out[k], out_values[k]) : program_detail::kAbsent);
  p->events.push_back({program_detail::Kind::Op, static_cast<uint32_t>(p->ops.size())});
  p->ops.push_back(std::move(op));
}

// Registers programBegin, programEnd, programAbort, programReplay, programCompare, programInfo and programDispose.
void RegisterProgram(Napi::Env env, Napi::Object exports);

}  // namespace vw::napi
