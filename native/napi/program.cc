// The N-API functions of op programs (native/napi/program.h):
//   programBegin(inputs: TypedArray[], poolOf?, graph?) starts recording; uploads from a slice of an input are replay
//                                               inputs; with a program, the new one shares its memory pool (program.h);
//                                               graph false: never a backend graph (default true; "Graphs" below)
//   programEnd() -> handle                      the recorded program (or the reason it cannot be one, as a TypeError)
//   programAbort() -> boolean                   drops the recording in progress (false: none)
//   programReplay(handle, inputs: TypedArray[]) runs the recorded calls with new inputs of the recorded sizes
//   programCompare(a, b) -> string | null       the first difference between two recordings, null when none
//   programInfo(handle) -> { ops, uploads, zeros, constantBytes, inputBytes, externals, poolBytes, stepBytes, opNames, graph }
//   programDispose(handle)                      frees the program's memory now (idempotent)
//   programHostGraphs(on[, failLaunches]) -> boolean  tests: host graphs where the backend has none (the CPU), the next
//                                                failLaunches of their launches failing; the old value
#include <cmath>
#include <functional>
#include <stdexcept>
#include <cstring>
#include <string>
#include <unordered_set>
#include <utility>

#include "program.h"

namespace vw::napi {

namespace {

// A handle's target: null once disposed. The handle (a napi External) owns this box; the box is freed with it.
struct ProgramBox {
  OpProgram* p = nullptr;
};

std::unordered_set<const ProgramBox*>& live_boxes() {
  static auto* s = new std::unordered_set<const ProgramBox*>();
  return *s;
}

void Destroy(ProgramBox* box) {
  if (!box->p) return;
  delete box->p;
  box->p = nullptr;
}

ProgramBox* BoxOf(const Napi::Value& v, const char* what) {
  if (v.Type() != napi_external) throw_type_error(what, ": expected an op program handle");
  auto* box = static_cast<ProgramBox*>(v.As<Napi::External<void>>().Data());
  if (!live_boxes().count(box)) throw_type_error(what, ": expected an op program handle of this addon");
  return box;
}

OpProgram* ProgramOf(const Napi::Value& v, const char* what) {
  ProgramBox* box = BoxOf(v, what);
  if (!box->p) throw_type_error(what, ": the op program has been disposed");
  return box->p;
}

// The typed arrays of `v` (an array) as (pointer, bytes).
std::vector<program_detail::Input> InputsOf(const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw_type_error(what, ": inputs must be an array of typed arrays");
  Napi::Array a = v.As<Napi::Array>();
  const uint32_t n = a.Length();
  std::vector<program_detail::Input> out;
  out.reserve(n);
  for (uint32_t k = 0; k < n; ++k) {
    Napi::Value x = a.Get(k);
    if (!x.IsTypedArray()) throw_type_error(what, ": inputs[", k, "] must be a typed array");
    napi_typedarray_type type;
    size_t length = 0, byte_offset = 0;
    void* p = nullptr;
    napi_value ab;
    if (napi_get_typedarray_info(x.Env(), x, &type, &length, &p, &ab, &byte_offset) != napi_ok) throw_type_error(what, ": could not read inputs[", k, "]");
    const size_t bytes = length * x.As<Napi::TypedArray>().ElementSize();
    if (bytes > 0 && !p) throw_type_error(what, ": inputs[", k, "] has no data (detached)");
    out.push_back({static_cast<const uint8_t*>(p), bytes});
  }
  return out;
}

std::string Ints(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t k = 0; k < v.size(); ++k) s += (k ? ", " : "") + std::to_string(v[k]);
  return s + "]";
}
std::string Floats(const std::vector<double>& v) {
  std::string s = "[";
  for (size_t k = 0; k < v.size(); ++k) s += (k ? ", " : "") + str_cat(v[k]);
  return s + "]";
}
bool SameBits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}
bool SameBufs(const std::vector<Buf>& a, const std::vector<Buf>& b) {
  if (a.size() != b.size()) return false;
  for (size_t k = 0; k < a.size(); ++k)
    if (a[k].bytes != b[k].bytes || a[k].dtype != b[k].dtype || a[k].present != b[k].present) return false;
  return true;
}

// The first difference between two recordings, or "".
std::string Compare(const OpProgram& a, const OpProgram& b) {
  using program_detail::Kind;
  if (a.input_bytes != b.input_bytes) return "their inputs differ in number or size";
  if (a.externals.size() != b.externals.size()) return str_cat("they use ", a.externals.size(), " and ", b.externals.size(), " buffers made before the recording");
  for (size_t k = 0; k < a.externals.size(); ++k)
    if (a.externals[k].buf != b.externals[k].buf || a.externals[k].data != b.externals[k].data)
      return str_cat("buffer ", k, " of those made before the recording is not the same in both");
  const size_t n = std::min(a.events.size(), b.events.size());
  for (size_t e = 0; e < n; ++e) {
    const auto &ea = a.events[e], &eb = b.events[e];
    const std::string at = str_cat("event ", e);
    if (ea.kind != eb.kind) return at + ": an op call in one, an upload or a zero-fill in the other";
    if (ea.kind == Kind::Op) {
      const auto &x = a.ops[ea.index], &y = b.ops[eb.index];
      const std::string op = at + " (op " + x.name + ")";
      if (x.fn != y.fn) return at + ": op " + x.name + " against op " + y.name;
      if (x.call.i != y.call.i) return op + ": integer parameters " + Ints(x.call.i) + " against " + Ints(y.call.i);
      if (!SameBits(x.call.f, y.call.f)) return op + ": float parameters " + Floats(x.call.f) + " against " + Floats(y.call.f);
      if (!SameBufs(x.call.in, y.call.in) || !SameBufs(x.call.out, y.call.out)) return op + ": buffers of other sizes or dtypes";
      if (x.ids_in != y.ids_in || x.ids_out != y.ids_out) return op + ": other buffers";
    } else if (ea.kind == Kind::Upload) {
      const auto &x = a.uploads[ea.index], &y = b.uploads[eb.index];
      if (x.id != y.id || x.bytes != y.bytes) return at + ": an upload of another size or to another buffer";
      if (x.input != y.input || x.input_offset != y.input_offset)
        return at + ": an upload from " + (x.input < 0 ? std::string("data that is not an input") : str_cat("input ", x.input)) + " against one from " +
               (y.input < 0 ? std::string("data that is not an input") : str_cat("input ", y.input));
      if (x.input < 0 && x.constant != y.constant)
        return at + str_cat(": ", x.bytes, " bytes uploaded from data that is not an input differ (pass that data as an input)");
    } else {
      const auto &x = a.zeros[ea.index], &y = b.zeros[eb.index];
      if (x.id != y.id || x.bytes != y.bytes) return at + ": a zero-fill of another size or buffer";
    }
  }
  if (a.events.size() != b.events.size()) return str_cat(a.events.size(), " events against ", b.events.size());
  return "";
}

// ---------------------------------------------------------------------------------------------------- graphs
// On a backend with graphs (CUDA), the first replay that finds no error-flag check pending captures the program:
// its calls run as in a plain replay, but into a graph, which is then launched, now and at every later replay (one
// host call a step). The uploads come from the program's pinned memory: the constants written there once, the
// inputs' slices copied there before each launch (after the previous launch is done with them). The checks the ops
// claimed while captured (native/core/error_flags.h) are claimed again, in order, at each launch, so a failure is
// raised at the next synchronisation as after a plain replay; a launch therefore needs the same free slots as the
// capture had (none pending), else that replay runs call by call. A capture that fails (an op that waits for the
// device, or a check whose result the host knew) leaves the reason in info().graph and the program replaying call by
// call.

constexpr size_t kPinnedAlign = 256;

// Host graphs (programHostGraphs(true); tests only, on a backend without graphs of its own: the CPU): a capture keeps
// the calls, uploads and fills instead of running them, and a launch runs what it kept, so CI runs the capture,
// staging and launch logic below that CUDA graphs take.
struct HostGraph {
  std::vector<std::function<void()>> steps;
};
HostGraph*& host_capture() {
  static HostGraph* g = nullptr;
  return g;
}
bool& host_graphs_on() {
  static bool on = false;
  return on;
}
// programHostGraphs(true, n): the next n host-graph launches fail, as a CUDA graph's can (out of graph memory)
int& host_failing_launches() {
  static int n = 0;
  return n;
}
// Its hooks are called only while a capture is open (Capture below), so each one keeps what it is given.
HostGraph& host_capturing() { return *host_capture(); }
const GraphHooks kHostGraphs = {
    [](OpFn fn, const OpCall& call) { host_capturing().steps.push_back([fn, &call] { fn(call); }); },  // the call lives in its program, as the graph
    [](std::string*) {
      host_capture() = new HostGraph();
      return true;
    },
    [](std::string*) -> void* {
      HostGraph* g = host_capture();
      host_capture() = nullptr;
      return g;
    },
    [](void* g) {
      if (host_failing_launches() > 0) {
        --host_failing_launches();
        throw std::runtime_error("host graphs: a launch made to fail (programHostGraphs)");
      }
      for (auto& step : static_cast<HostGraph*>(g)->steps) step();
    },
    [](void*) {},
    [](void* g) { delete static_cast<HostGraph*>(g); },
    [](void* g) { return static_cast<HostGraph*>(g)->steps.size(); },
    [](void* dst, const void* src, size_t n) { host_capturing().steps.push_back([dst, src, n] { kDeviceMemory.upload(dst, src, n); }); },
    [](void* dst, size_t n) { host_capturing().steps.push_back([dst, n] { kDeviceMemory.zero(dst, n); }); },
    [](size_t n) -> void* { return ::operator new(n > 0 ? n : 1); },
    [](void* p) { ::operator delete(p); },
};

// The backend's graphs: its own (CUDA), else the host graphs when a test has turned them on, else none.
const GraphHooks* Graphs() {
  if (kDeviceMemory.graphs) return kDeviceMemory.graphs;
  return host_graphs_on() ? &kHostGraphs : nullptr;
}

void Enqueue(const OpProgram& p, const std::vector<program_detail::Input>& inputs, const GraphHooks* g) {
  using program_detail::Kind;
  for (const auto& e : p.events) {
    switch (e.kind) {
      case Kind::Op: {
        const auto& op = p.ops[e.index];
        if (g)
          g->op(op.fn, op.call);
        else
          op.fn(op.call);
        break;
      }
      case Kind::Upload: {
        const auto& u = p.uploads[e.index];
        if (g)
          g->upload(u.dst, p.pinned + p.pinned_offset[e.index], u.bytes);
        else
          kDeviceMemory.upload(u.dst, u.input < 0 ? u.constant.data() : inputs[u.input].data + u.input_offset, u.bytes);
        break;
      }
      case Kind::Zero: {
        const auto& z = p.zeros[e.index];
        if (z.bytes == 0) break;
        if (g)
          g->zero(z.dst, z.bytes);
        else
          kDeviceMemory.zero(z.dst, z.bytes);
        break;
      }
    }
  }
}

// The inputs' slices into the pinned memory, once the last launch has copied from it.
void StageInputs(OpProgram& p, const std::vector<program_detail::Input>& inputs, const GraphHooks* g) {
  if (p.graph) g->wait(p.graph);
  for (size_t k = 0; k < p.uploads.size(); ++k) {
    const auto& u = p.uploads[k];
    if (u.input >= 0 && u.bytes > 0) std::memcpy(p.pinned + p.pinned_offset[k], inputs[u.input].data + u.input_offset, u.bytes);
  }
}

// Gives the program's graph up (a failed capture or launch): the graph (`graph`, captured or not yet p.graph) and the
// pinned memory freed once no launch reads it, the reason kept; it replays call by call from then on.
void GiveUpGraph(OpProgram& p, const GraphHooks* g, void* graph, std::string why) {
  if (graph) {
    try {
      g->wait(graph);  // an earlier launch may still read the pinned memory
    } catch (...) {
    }
    g->destroy(graph);
  }
  p.graph = nullptr;
  g->free_pinned(p.pinned);
  p.pinned = nullptr;
  p.graph_checks.clear();
  p.graph_why = std::move(why);
}

// Captures the program (true: p.graph is set, its inputs staged for the first launch), or leaves why not in p.graph_why.
bool Capture(OpProgram& p, const std::vector<program_detail::Input>& inputs, const GraphHooks* g) {
  size_t bytes = 0;
  p.pinned_offset.assign(p.uploads.size(), 0);
  for (size_t k = 0; k < p.uploads.size(); ++k) {
    p.pinned_offset[k] = bytes;
    bytes += (p.uploads[k].bytes + kPinnedAlign - 1) / kPinnedAlign * kPinnedAlign;
  }
  p.graph_hooks = g;
  p.pinned = static_cast<uint8_t*>(g->alloc_pinned(bytes));  // a program is captured at most once
  for (size_t k = 0; k < p.uploads.size(); ++k)
    if (p.uploads[k].input < 0 && p.uploads[k].bytes > 0) std::memcpy(p.pinned + p.pinned_offset[k], p.uploads[k].constant.data(), p.uploads[k].bytes);
  StageInputs(p, inputs, g);

  ErrorFlags& flags = error_flags();
  const ErrorFlags::Mark mark = flags.mark();
  std::string why;
  if (!g->begin(&why)) {
    GiveUpGraph(p, g, nullptr, why);
    return false;
  }
  try {
    Enqueue(p, inputs, g);
  } catch (const std::exception& e) {
    why = str_cat("an op failed while captured: ", e.what());
  } catch (...) {
    why = "an op failed while captured";
  }
  std::string end_why;
  void* graph = g->end(&end_why);  // always: the stream leaves capture mode
  if (why.empty() && !graph) why = end_why;
  if (why.empty() && !flags.device_checks_since(mark, p.graph_checks))
    why = "an op checked its data on the host while captured (a launch would not repeat that check)";
  flags.rollback(mark);  // nothing ran: the launch claims the checks again
  if (!why.empty()) {
    GiveUpGraph(p, g, graph, why);
    return false;
  }
  p.graph = graph;
  return true;
}

// Launches the captured graph (true), or (false) gives it up with the reason in p.graph_why, so that this replay and
// the next ones run call by call: a launch can fail where the calls would not (the graph's workspace is out of the
// graph memory pool, not the one the calls trim and retry in). An error that is not the graph's (a sticky fault of
// earlier work) then comes from the calls.
bool Launch(OpProgram& p, const GraphHooks* g) {
  ErrorFlags& flags = error_flags();
  const ErrorFlags::Mark mark = flags.mark();
  flags.claim_all(p.graph_checks);
  try {
    g->launch(p.graph);
  } catch (const std::exception& e) {
    flags.rollback(mark);  // nothing will write those slots
    GiveUpGraph(p, g, p.graph, str_cat("a launch failed: ", e.what()));
    return false;
  }
  ++p.graph_launches;
  return true;
}

void Replay(OpProgram& p, const std::vector<program_detail::Input>& inputs) {
  constexpr const char* what = "programReplay";
  if (inputs.size() != p.input_bytes.size()) throw_type_error(what, ": ", inputs.size(), " inputs for a program recorded with ", p.input_bytes.size());
  for (size_t k = 0; k < inputs.size(); ++k)
    if (inputs[k].bytes != p.input_bytes[k]) throw_range_error(what, ": inputs[", k, "] holds ", inputs[k].bytes, " bytes, the recording's ", p.input_bytes[k]);
  // a buffer made by a recording that shares this pool and is still alive may hold a block this program writes
  if (p.pool->live() != 0)
    throw_type_error(what, ": ", p.pool->live(), " buffer(s) made while recording a program that shares this one's memory are still alive (a recording that could not become a program); dispose them first");
  for (size_t k = 0; k < p.externals.size(); ++k) {
    const auto& x = p.externals[k];
    if (x.buf->disposed() || x.buf->data() != x.data)
      throw_type_error(what, ": a buffer the program uses (made before its recording, ", x.bytes, " bytes) has been disposed since");
    if (x.buf->pinned()) throw_type_error(what, ": a buffer the program uses is in use by a collective that has not been waited for");
  }
  const GraphHooks* g = p.graph_hooks ? p.graph_hooks : Graphs();
  // a graph needs every error-flag slot its capture claimed free and no host-known failure pending (a captured
  // checks_failed would bake it), and async mode
  if (g && p.graph_wanted && !error_flags().pending() && error_flags().async()) {
    if (p.graph) {
      StageInputs(p, inputs, g);
      if (Launch(p, g)) return;
    } else if (p.graph_why.empty() && Capture(p, inputs, g) && Launch(p, g)) {
      return;
    }
  }
  Enqueue(p, inputs, nullptr);
}

}  // namespace

void RegisterProgram(Napi::Env env, Napi::Object exports) {
  exports.Set("programBegin", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Guard(info.Env(), [&]() -> Napi::Value {
      if (recording_program()) throw_type_error("programBegin: an op program is already recording (end or abort it first)");
      auto inputs = InputsOf(info.Length() > 0 ? info[0] : info.Env().Undefined(), "programBegin");
      std::shared_ptr<ProgramPool> pool;
      if (info.Length() > 1 && !info[1].IsUndefined() && !info[1].IsNull()) pool = ProgramOf(info[1], "programBegin (poolOf)")->pool;
      bool graph = true;
      if (info.Length() > 2 && !info[2].IsUndefined()) {
        if (!info[2].IsBoolean()) throw_type_error("programBegin: graph must be a boolean");
        graph = info[2].As<Napi::Boolean>().Value();
      }
      auto* p = new OpProgram();
      if (pool) p->pool = std::move(pool);
      p->pool->start_peak();
      p->graph_wanted = graph;
      p->inputs = std::move(inputs);
      for (const auto& in : p->inputs) p->input_bytes.push_back(in.bytes);
      recording_program() = p;
      return info.Env().Undefined();
    });
  }));
  exports.Set("programAbort", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    OpProgram* p = recording_program();
    recording_program() = nullptr;
    delete p;  // its pool lives on in the internal buffers still alive, which give their memory back as they go
    return Napi::Boolean::New(info.Env(), p != nullptr);
  }));
  exports.Set("programEnd", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Guard(info.Env(), [&]() -> Napi::Value {
      OpProgram* p = recording_program();
      if (!p) throw_type_error("programEnd: no op program is recording");
      recording_program() = nullptr;
      std::unique_ptr<OpProgram> owned(p);
      if (!p->failed.empty()) throw_type_error("programEnd: the recording cannot be replayed: ", p->failed);
      if (p->pool->live() != 0)
        throw_type_error("programEnd: the recording cannot be replayed: ", p->pool->live(),
                         " buffer(s) created during it are still alive (a program's own buffers must all be disposed by its end)");
      p->step_bytes = p->pool->peak();
      p->inputs.clear();
      p->external_index.clear();
      auto* box = new ProgramBox{owned.release()};
      live_boxes().insert(box);
      return Napi::External<void>::New(info.Env(), box, [](Napi::Env, void* data) {
        auto* b = static_cast<ProgramBox*>(data);
        Destroy(b);
        live_boxes().erase(b);
        delete b;
      });
    });
  }));
  exports.Set("programReplay", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Guard(info.Env(), [&]() -> Napi::Value {
      if (recording_program()) throw_type_error("programReplay: an op program is recording (a replay is not recorded)");
      OpProgram* p = ProgramOf(info.Length() > 0 ? info[0] : info.Env().Undefined(), "programReplay");
      Replay(*p, InputsOf(info.Length() > 1 ? info[1] : info.Env().Undefined(), "programReplay"));
      return info.Env().Undefined();
    });
  }));
  exports.Set("programCompare", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Guard(info.Env(), [&]() -> Napi::Value {
      OpProgram* a = ProgramOf(info.Length() > 0 ? info[0] : info.Env().Undefined(), "programCompare");
      OpProgram* b = ProgramOf(info.Length() > 1 ? info[1] : info.Env().Undefined(), "programCompare");
      const std::string d = Compare(*a, *b);
      return d.empty() ? info.Env().Null() : Napi::String::New(info.Env(), d);
    });
  }));
  exports.Set("programInfo", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Guard(info.Env(), [&]() -> Napi::Value {
      OpProgram* p = ProgramOf(info.Length() > 0 ? info[0] : info.Env().Undefined(), "programInfo");
      Napi::Env e = info.Env();
      Napi::Object o = Napi::Object::New(e);
      o.Set("ops", static_cast<double>(p->ops.size()));
      o.Set("uploads", static_cast<double>(p->uploads.size()));
      o.Set("zeros", static_cast<double>(p->zeros.size()));
      o.Set("constantBytes", static_cast<double>(p->constant_bytes()));
      Napi::Array ib = Napi::Array::New(e, p->input_bytes.size());
      for (size_t k = 0; k < p->input_bytes.size(); ++k) ib.Set(static_cast<uint32_t>(k), static_cast<double>(p->input_bytes[k]));
      o.Set("inputBytes", ib);
      o.Set("externals", static_cast<double>(p->externals.size()));
      o.Set("poolBytes", static_cast<double>(p->pool->bytes()));
      o.Set("stepBytes", static_cast<double>(p->step_bytes));
      // the backend's graph: null where there are none (the CPU) or none is wanted; else whether one was captured,
      // its nodes and launches, and why not (null: captured, or not tried yet)
      const GraphHooks* hooks = p->graph_hooks ? p->graph_hooks : Graphs();
      if (hooks && p->graph_wanted) {
        Napi::Object g = Napi::Object::New(e);
        g.Set("captured", p->graph != nullptr);
        g.Set("nodes", static_cast<double>(p->graph ? hooks->nodes(p->graph) : 0));
        g.Set("launches", static_cast<double>(p->graph_launches));
        g.Set("reason", p->graph_why.empty() ? e.Null() : Napi::String::New(e, p->graph_why));
        o.Set("graph", g);
      } else {
        o.Set("graph", e.Null());
      }
      Napi::Array names = Napi::Array::New(e, p->ops.size());
      for (size_t k = 0; k < p->ops.size(); ++k) names.Set(static_cast<uint32_t>(k), p->ops[k].name);
      o.Set("opNames", names);
      return o;
    });
  }));
  exports.Set("programHostGraphs", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Guard(info.Env(), [&]() -> Napi::Value {
      if (info.Length() < 1 || !info[0].IsBoolean()) throw_type_error("programHostGraphs: expected a boolean");
      if (host_capture()) throw_type_error("programHostGraphs: a host graph is being captured");
      int fail = 0;
      if (info.Length() > 1 && !info[1].IsUndefined()) {
        const double n = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
        if (!(n >= 0 && n <= 1e6 && n == std::floor(n))) throw_type_error("programHostGraphs: expected a count of launches to fail (an integer in [0, 1e6])");
        fail = static_cast<int>(n);
      }
      const bool was = host_graphs_on();
      host_graphs_on() = info[0].As<Napi::Boolean>().Value();
      host_failing_launches() = fail;
      return Napi::Boolean::New(info.Env(), was);
    });
  }));
  exports.Set("programDispose", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Guard(info.Env(), [&]() -> Napi::Value {
      Destroy(BoxOf(info.Length() > 0 ? info[0] : info.Env().Undefined(), "programDispose"));
      return info.Env().Undefined();
    });
  }));
}

}  // namespace vw::napi
