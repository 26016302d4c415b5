// Bindings of the fused vocabulary kernels, shared by both addons: `Backend` supplies the implementations
// (vw::cpu::*_cpu or vw::cuda::*_cuda). Each binding reads dims/options, re-checks buffer sizes, allocates
// the outputs, calls the kernel, and returns { ...stats, outputs }. If the kernel throws, the outputs
// are freed before the error reaches JS.
#pragma once
#include <napi.h>

#include <vector>

#include "args.h"
#include "buffer.h"
#include "errors.h"

namespace vw::napi {

// Output buffers of one call; released unless the call succeeds.
class Outputs {
 public:
  explicit Outputs(Napi::Env env) : env_(env) {}
  ~Outputs() {
    if (!ok_)
      for (auto& r : refs_) NativeBuffer::From(r.Value(), "output")->Release(env_);
  }
  // A new buffer of elems x t, or null JS value when !wanted.
  void* Add(const char* key, int64_t elems, DType t, bool wanted, Napi::Object result) {
    if (!wanted) {
      result.Set(key, env_.Null());
      return nullptr;
    }
    Napi::Object o = NativeBuffer::Create(env_, static_cast<size_t>(elems) * dtype_size(t), false);
    refs_.push_back(Napi::Persistent(o));
    result.Set(key, o);
    return NativeBuffer::From(o, key)->data();
  }
  void Commit() { ok_ = true; }

 private:
  Napi::Env env_;
  std::vector<Napi::ObjectReference> refs_;
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

inline void CommonChunkOpts(const Napi::Object& o, const char* op, int64_t* chunk_rows, int64_t* budget) {
  *chunk_rows = static_cast<int64_t>(GetNumber(o, "chunkRows", 0, op));
  double b = GetNumber(o, "workspaceBytes", static_cast<double>(*budget), op);
  if (*chunk_rows < 0 || b < 1) throw_range_error("[", op, "] chunkRows must be >= 0 and workspaceBytes >= 1");
  *budget = static_cast<int64_t>(b);
}

// linearCrossEntropy(h, w, targets, {N, d, V}, opts) -> { loss, rows, chunkRows, workspaceBytes, rowLoss, dh, dw }
template <typename B>
Napi::Value linearCrossEntropy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    const char* op = "linear_cross_entropy";
    Napi::Object dims = DimsArg(info, 3, op), o = OptsArg(info, 4, op);
    LinearCrossEntropyArgs a;
    a.N = GetDim(dims, "N", op), a.d = GetDim(dims, "d", op), a.V = GetDim(dims, "V", op);
    a.dtype = GetDType(o, op);
    a.h = BufferArg(info[0], op, "h", a.N * a.d, a.dtype);
    a.w = BufferArg(info[1], op, "w", a.V * a.d, a.dtype);
    a.targets = static_cast<const int32_t*>(BufferArg(info[2], op, "targets", a.N, DType::I32));
    a.ignore_index = static_cast<int32_t>(GetNumber(o, "ignoreIndex", -100, op));
    a.reduction = GetReduction(o, op);
    a.grad_scale = GetNumber(o, "gradScale", 1, op);
    a.label_smoothing = GetNumber(o, "labelSmoothing", 0, op);
    a.z_loss_weight = GetNumber(o, "zLossWeight", 0, op);
    a.compute_grad = GetBool(o, "grad", true, op);
    if (a.label_smoothing < 0 || a.label_smoothing > 1) throw_range_error("[", op, "] labelSmoothing must be in [0, 1]");
    if (a.z_loss_weight < 0) throw_range_error("[", op, "] zLossWeight must be >= 0");
    CommonChunkOpts(o, op, &a.chunk_rows, &a.workspace_budget);
    Napi::Object r = Napi::Object::New(env);
    Outputs outs(env);
    a.dh = outs.Add("dh", a.N * a.d, a.dtype, a.compute_grad, r);
    a.dw = static_cast<float*>(outs.Add("dw", a.V * a.d, DType::F32, a.compute_grad, r));
    Napi::Float32Array row_loss = Napi::Float32Array::New(env, static_cast<size_t>(a.N));
    a.row_loss = row_loss.Data();
    KernelStats st = B::linear_cross_entropy(a);
    outs.Commit();
    Napi::Object s = StatsObject(env, st);
    s.Set("rowLoss", row_loss);
    s.Set("dh", r.Get("dh"));
    s.Set("dw", r.Get("dw"));
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
    a.M = GetDim(dims, "M", op), a.d = GetDim(dims, "d", op), a.V = GetDim(dims, "V", op);
    a.dtype = GetDType(o, op);
    a.h = BufferArg(info[0], op, "h", a.M * a.d, a.dtype);
    a.w_lm = BufferArg(info[1], op, "wLm", a.V * a.d, a.dtype);
    a.x = BufferArg(info[2], op, "x", a.M * a.d, a.dtype);
    a.w_vm = BufferArg(info[3], op, "wVm", a.V * a.d, a.dtype);
    a.reduction = GetReduction(o, op);
    a.temperature = GetNumber(o, "temperature", 1, op);
    a.grad_scale = GetNumber(o, "gradScale", 1, op);
    a.detach_target = GetBool(o, "detachTarget", false, op);
    a.compute_grad = GetBool(o, "grad", true, op);
    CommonChunkOpts(o, op, &a.chunk_rows, &a.workspace_budget);
    const bool gt = a.compute_grad && !a.detach_target;
    Napi::Object r = Napi::Object::New(env);
    Outputs outs(env);
    a.dh = outs.Add("dh", a.M * a.d, a.dtype, a.compute_grad, r);
    a.dw_lm = static_cast<float*>(outs.Add("dwLm", a.V * a.d, DType::F32, a.compute_grad, r));
    a.dx = outs.Add("dx", a.M * a.d, a.dtype, gt, r);
    a.dw_vm = static_cast<float*>(outs.Add("dwVm", a.V * a.d, DType::F32, gt, r));
    Napi::Float32Array row_loss = Napi::Float32Array::New(env, static_cast<size_t>(a.M));
    a.row_loss = row_loss.Data();
    KernelStats st = B::visual_word_kl(a);
    outs.Commit();
    Napi::Object s = StatsObject(env, st);
    s.Set("rowLoss", row_loss);
    for (const char* k : {"dh", "dwLm", "dx", "dwVm"}) s.Set(k, r.Get(k));
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
    a.N = GetDim(dims, "N", op), a.d = GetDim(dims, "d", op), a.V = GetDim(dims, "V", op);
    a.dtype = GetDType(o, op);
    a.k = static_cast<int64_t>(GetNumber(o, "topK", 1, op));
    a.x = BufferArg(info[0], op, "x", a.N * a.d, a.dtype);
    a.w_vm = BufferArg(info[1], op, "wVm", a.V * a.d, a.dtype);
    CommonChunkOpts(o, op, &a.chunk_rows, &a.workspace_budget);
    if (a.k < 1 || a.k > a.V) throw_range_error("[", op, "] topK must be in [1, V = ", a.V, "], got ", a.k);
    Napi::Object r = Napi::Object::New(env);
    Outputs outs(env);
    a.ids = static_cast<int32_t*>(outs.Add("ids", a.N * a.k, DType::I32, true, r));
    a.probs = static_cast<float*>(outs.Add("probs", a.N * a.k, DType::F32, true, r));
    KernelStats st = B::visual_words(a);
    outs.Commit();
    Napi::Object s = StatsObject(env, st);
    s.Set("ids", r.Get("ids"));
    s.Set("probs", r.Get("probs"));
    return s;
  });
}

inline void PifArgs(const Napi::CallbackInfo& info, const char* op, size_t dims_at, PseudoImageFeaturesArgs* a) {
  Napi::Object dims = DimsArg(info, dims_at, op), o = OptsArg(info, dims_at + 1, op);
  a->N = GetDim(dims, "N", op), a->d = GetDim(dims, "d", op), a->V = GetDim(dims, "V", op);
  a->dE = GetDim(dims, "dE", op);
  a->dtype = GetDType(o, op);
  a->x = BufferArg(info[0], op, "x", a->N * a->d, a->dtype);
  a->w_vm = BufferArg(info[1], op, "wVm", a->V * a->d, a->dtype);
  a->e = BufferArg(info[2], op, "e", a->V * a->dE, a->dtype);
  CommonChunkOpts(o, op, &a->chunk_rows, &a->workspace_budget);
}

// pseudoImageFeatures(x, wVm, e, {N, d, V, dE}, opts) -> { out }
template <typename B>
Napi::Value pseudoImageFeatures(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, [&]() -> Napi::Value {
    const char* op = "pseudo_image_features";
    PseudoImageFeaturesArgs a;
    PifArgs(info, op, 3, &a);
    Napi::Object r = Napi::Object::New(env);
    Outputs outs(env);
    a.out = outs.Add("out", a.N * a.dE, a.dtype, true, r);
    KernelStats st = B::pseudo_image_features(a);
    outs.Commit();
    Napi::Object s = StatsObject(env, st);
    s.Set("out", r.Get("out"));
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
    a.grad_out = BufferArg(info[3], op, "gradOut", a.N * a.dE, a.dtype);
    Napi::Object r = Napi::Object::New(env);
    Outputs outs(env);
    a.dx = outs.Add("dx", a.N * a.d, a.dtype, true, r);
    a.dw_vm = static_cast<float*>(outs.Add("dwVm", a.V * a.d, DType::F32, true, r));
    a.de = static_cast<float*>(outs.Add("de", a.V * a.dE, DType::F32, true, r));
    KernelStats st = B::pseudo_image_features_backward(a);
    outs.Commit();
    Napi::Object s = StatsObject(env, st);
    for (const char* k : {"dx", "dwVm", "de"}) s.Set(k, r.Get(k));
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
