// Bindings of the fused vocabulary kernels, shared by both addons: `Backend` supplies the implementations
// (vw::cpu::*_cpu or vw::cuda::*_cuda). Each binding reads dims/options, re-checks buffer sizes, allocates
// the outputs, calls the kernel, and returns { ...stats, outputs }. If the kernel throws, the outputs
// are freed before the error reaches JS.
// Order matters: everything that can run JS (property reads of dims/options, which may be getters or
// proxies) happens first, the input buffers are looked up after it, and nothing runs JS between that and
// the kernel (the outputs are only attached to the result afterwards), so no JS code can free an input
// whose pointer was taken. Element counts are overflow-checked before they size anything.
#pragma once
#include <napi.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <vector>

#include "args.h"
#include "buffer.h"
#include "errors.h"

namespace vw::napi {

// Output buffers of one call; released unless the call succeeds. The JS objects are attached to the
// result only after the kernel (Set may run JS setters of Object.prototype).
class Outputs {
 public:
  explicit Outputs(Napi::Env env) : env_(env) {}
  ~Outputs() {
    if (!ok_)
      for (auto& e : entries_)
        if (e.buf) e.buf->Release(env_);  // alive: e.ref holds its JS object
  }
  // A new buffer of elems x t, or nullptr (a null JS value in the result) when !wanted.
  void* Add(const char* key, int64_t elems, DType t, bool wanted) {
    Entry e{key, Napi::ObjectReference(), nullptr};
    if (wanted) {
      size_t bytes;
      if (elems < 0 || __builtin_mul_overflow(static_cast<size_t>(elems), dtype_size(t), &bytes))
        throw_range_error("output ", key, " is too large (", elems, " elements)");
      Napi::Object o = NativeBuffer::Create(env_, bytes, false);
      e.ref = Napi::Persistent(o);
      e.buf = NativeBuffer::From(o, key);
    }
    entries_.push_back(std::move(e));
    return entries_.back().buf ? entries_.back().buf->data() : nullptr;
  }
  // Marks the call as successful and attaches the outputs to `result`.
  // ok_ only after every Set: a throwing setter (a patched Object.prototype) leaves the outputs to be released.
  void Commit(Napi::Object result) {
    for (auto& e : entries_) result.Set(e.key, e.buf ? Napi::Value(e.ref.Value()) : env_.Null());
    ok_ = true;
  }

 private:
  struct Entry {
    const char* key;
    Napi::ObjectReference ref;
    NativeBuffer* buf;
  };
  Napi::Env env_;
  std::vector<Entry> entries_;
  bool ok_ = false;
};

inline Napi::Object OptsArg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  if (info.Length() <= i || info[i].IsUndefined()) return Napi::Object::New(info.Env());
  if (!info[i].IsObject()) throw_type_error("[", op, "] options must be an object");
  return info[i].As<Napi::Object>();
}

inline Napi::Object DimsArg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  if (info.Length() <= i || !info[i].IsObject()) throw_type_error("[", op, "] dims must be an object");
  return info[i].As<Napi::Object>();
}

// An integer option in [lo, hi] (dflt when absent).
inline int64_t GetInt(const Napi::Object& o, const char* key, double dflt, double lo, double hi, const char* op) {
  const double v = GetNumber(o, key, dflt, op);
  if (v != std::floor(v) || v < lo || v > hi) throw_range_error("[", op, "] option ", key, " must be an integer in [", lo, ", ", hi, "], got ", v);
  return static_cast<int64_t>(v);
}

inline void CommonChunkOpts(const Napi::Object& o, const char* op, int64_t* chunk_rows, int64_t* budget) {
  *chunk_rows = GetInt(o, "chunkRows", 0, 0, 9.0e15, op);
  *budget = GetInt(o, "workspaceBytes", static_cast<double>(*budget), 1, 9.0e15, op);
}

// The per-row losses (a host Float32Array of `rows` entries).
inline Napi::Float32Array RowLoss(Napi::Env env, int64_t rows) { return Napi::Float32Array::New(env, static_cast<size_t>(rows)); }

// linearCrossEntropy(h, w, targets, {N, d, V}, opts) -> { loss, rows, chunkRows, workspaceBytes, rowLoss, dh, dw }
template <typename B>
Napi::Value linearCrossEntropy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    const char* op = "linear_cross_entropy";
    Napi::Object dims = DimsArg(info, 3, op), o = OptsArg(info, 4, op);
    LinearCrossEntropyArgs a;
    a.N = GetDim(dims, "N", op), a.d = GetDim(dims, "d", op, 1), a.V = GetDim(dims, "V", op, 1);
    a.dtype = GetDType(o, op);
    a.ignore_index = static_cast<int32_t>(GetInt(o, "ignoreIndex", -100, INT32_MIN, INT32_MAX, op));
    a.reduction = GetReduction(o, op);
    a.grad_scale = GetNumber(o, "gradScale", 1, op);
    a.label_smoothing = GetNumber(o, "labelSmoothing", 0, op);
    a.z_loss_weight = GetNumber(o, "zLossWeight", 0, op);
    a.compute_grad = GetBool(o, "grad", true, op);
    if (a.label_smoothing < 0 || a.label_smoothing > 1) throw_range_error("[", op, "] labelSmoothing must be in [0, 1]");
    if (a.z_loss_weight < 0) throw_range_error("[", op, "] zLossWeight must be >= 0");
    CommonChunkOpts(o, op, &a.chunk_rows, &a.workspace_budget);
    a.h = BufferArg(info[0], op, "h", Elems(op, a.N, a.d), a.dtype);
    a.w = BufferArg(info[1], op, "w", Elems(op, a.V, a.d), a.dtype);
    a.targets = static_cast<const int32_t*>(BufferArg(info[2], op, "targets", a.N, DType::I32));
    Outputs outs(env);
    a.dh = outs.Add("dh", Elems(op, a.N, a.d), a.dtype, a.compute_grad);
    a.dw = static_cast<float*>(outs.Add("dw", Elems(op, a.V, a.d), DType::F32, a.compute_grad));
    Napi::Float32Array row_loss = RowLoss(env, a.N);
    a.row_loss = row_loss.Data();
    KernelStats st = B::linear_cross_entropy(a);
    Napi::Object s = StatsObject(env, st);
    s.Set("rowLoss", row_loss);
    outs.Commit(s);
    return s;
  });
}

// visualWordKL(h, wLm, x, wVm, {M, d, V}, opts) -> { loss, ..., rowLoss, dh, dwLm, dx, dwVm }
template <typename B>
Napi::Value visualWordKL(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    const char* op = "visual_word_kl";
    Napi::Object dims = DimsArg(info, 4, op), o = OptsArg(info, 5, op);
    VisualWordKLArgs a;
    a.M = GetDim(dims, "M", op), a.d = GetDim(dims, "d", op, 1), a.V = GetDim(dims, "V", op, 1);
    a.dtype = GetDType(o, op);
    a.reduction = GetReduction(o, op);
    a.temperature = GetNumber(o, "temperature", 1, op);
    a.grad_scale = GetNumber(o, "gradScale", 1, op);
    a.detach_target = GetBool(o, "detachTarget", false, op);
    a.compute_grad = GetBool(o, "grad", true, op);
    CommonChunkOpts(o, op, &a.chunk_rows, &a.workspace_budget);
    a.h = BufferArg(info[0], op, "h", Elems(op, a.M, a.d), a.dtype);
    a.w_lm = BufferArg(info[1], op, "wLm", Elems(op, a.V, a.d), a.dtype);
    a.x = BufferArg(info[2], op, "x", Elems(op, a.M, a.d), a.dtype);
    a.w_vm = BufferArg(info[3], op, "wVm", Elems(op, a.V, a.d), a.dtype);
    const bool gt = a.compute_grad && !a.detach_target;
    Outputs outs(env);
    a.dh = outs.Add("dh", Elems(op, a.M, a.d), a.dtype, a.compute_grad);
    a.dw_lm = static_cast<float*>(outs.Add("dwLm", Elems(op, a.V, a.d), DType::F32, a.compute_grad));
    a.dx = outs.Add("dx", Elems(op, a.M, a.d), a.dtype, gt);
    a.dw_vm = static_cast<float*>(outs.Add("dwVm", Elems(op, a.V, a.d), DType::F32, gt));
    Napi::Float32Array row_loss = RowLoss(env, a.M);
    a.row_loss = row_loss.Data();
    KernelStats st = B::visual_word_kl(a);
    Napi::Object s = StatsObject(env, st);
    s.Set("rowLoss", row_loss);
    outs.Commit(s);
    return s;
  });
}

// visualWords(x, wVm, {N, d, V}, { topK }) -> { ids: NativeBuffer int32 [N,k], probs: NativeBuffer f32 [N,k] }
template <typename B>
Napi::Value visualWords(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    const char* op = "visual_words";
    Napi::Object dims = DimsArg(info, 2, op), o = OptsArg(info, 3, op);
    VisualWordsArgs a;
    a.N = GetDim(dims, "N", op), a.d = GetDim(dims, "d", op, 1), a.V = GetDim(dims, "V", op, 1);
    a.dtype = GetDType(o, op);
    a.k = GetInt(o, "topK", 1, 1, static_cast<double>(a.V), op);
    CommonChunkOpts(o, op, &a.chunk_rows, &a.workspace_budget);
    a.x = BufferArg(info[0], op, "x", Elems(op, a.N, a.d), a.dtype);
    a.w_vm = BufferArg(info[1], op, "wVm", Elems(op, a.V, a.d), a.dtype);
    Outputs outs(env);
    a.ids = static_cast<int32_t*>(outs.Add("ids", Elems(op, a.N, a.k), DType::I32, true));
    a.probs = static_cast<float*>(outs.Add("probs", Elems(op, a.N, a.k), DType::F32, true));
    KernelStats st = B::visual_words(a);
    Napi::Object s = StatsObject(env, st);
    outs.Commit(s);
    return s;
  });
}

// Dims and options of both PIF bindings (JS-running reads), then the buffers x, wVm, e.
inline void PifArgs(const Napi::CallbackInfo& info, const char* op, size_t dims_at, PseudoImageFeaturesArgs* a) {
  Napi::Object dims = DimsArg(info, dims_at, op), o = OptsArg(info, dims_at + 1, op);
  a->N = GetDim(dims, "N", op), a->d = GetDim(dims, "d", op, 1), a->V = GetDim(dims, "V", op, 1);
  a->dE = GetDim(dims, "dE", op, 1);
  a->dtype = GetDType(o, op);
  CommonChunkOpts(o, op, &a->chunk_rows, &a->workspace_budget);
}
inline void PifBuffers(const Napi::CallbackInfo& info, const char* op, PseudoImageFeaturesArgs* a) {
  a->x = BufferArg(info[0], op, "x", Elems(op, a->N, a->d), a->dtype);
  a->w_vm = BufferArg(info[1], op, "wVm", Elems(op, a->V, a->d), a->dtype);
  a->e = BufferArg(info[2], op, "e", Elems(op, a->V, a->dE), a->dtype);
}

// pseudoImageFeatures(x, wVm, e, {N, d, V, dE}, opts) -> { out }
template <typename B>
Napi::Value pseudoImageFeatures(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    const char* op = "pseudo_image_features";
    PseudoImageFeaturesArgs a;
    PifArgs(info, op, 3, &a);
    PifBuffers(info, op, &a);
    Outputs outs(env);
    a.out = outs.Add("out", Elems(op, a.N, a.dE), a.dtype, true);
    KernelStats st = B::pseudo_image_features(a);
    Napi::Object s = StatsObject(env, st);
    outs.Commit(s);
    return s;
  });
}

// pseudoImageFeaturesBackward(x, wVm, e, gradOut, {N, d, V, dE}, opts) -> { dx, dwVm, de }
template <typename B>
Napi::Value pseudoImageFeaturesBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    const char* op = "pseudo_image_features_backward";
    PseudoImageFeaturesArgs a;
    PifArgs(info, op, 4, &a);
    PifBuffers(info, op, &a);
    a.grad_out = BufferArg(info[3], op, "gradOut", Elems(op, a.N, a.dE), a.dtype);
    Outputs outs(env);
    a.dx = outs.Add("dx", Elems(op, a.N, a.d), a.dtype, true);
    a.dw_vm = static_cast<float*>(outs.Add("dwVm", Elems(op, a.V, a.d), DType::F32, true));
    a.de = static_cast<float*>(outs.Add("de", Elems(op, a.V, a.dE), DType::F32, true));
    KernelStats st = B::pseudo_image_features_backward(a);
    Napi::Object s = StatsObject(env, st);
    outs.Commit(s);
    return s;
  });
}

// Registers the op table (native/core/ops.def) and the shared buffer/memory functions.
template <typename B>
void RegisterCommon(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeBuffer", NativeBuffer::Init(env));
#define VW_OP(c_name, js_name) exports.Set(#js_name, Napi::Function::New(env, js_name<B>, #js_name));
#include "../core/ops.def"
#undef VW_OP
  exports.Set("opNames", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Array a = Napi::Array::New(info.Env());
    uint32_t i = 0;
#define VW_OP(c_name, js_name) a.Set(i++, Napi::String::New(info.Env(), #js_name));
#include "../core/ops.def"
#undef VW_OP
    return a;
  }));
  exports.Set("memoryStats", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("liveBuffers", Napi::Number::New(info.Env(), static_cast<double>(NativeBuffer::live_count.load())));
    o.Set("liveBytes", Napi::Number::New(info.Env(), static_cast<double>(NativeBuffer::live_bytes.load())));
    return o;
  }));
}

}  // namespace vw::napi
