// One calling convention for every op of the table (native/core/ops.def), so the N-API binding is a
// single function (native/napi/op_napi.h) and a new op is a table row plus its kernels:
//   inputs and outputs are buffers (allocated by TypeScript, which knows the shapes; an absent optional
//   one is a null buffer), plus integer and float parameters whose meaning each op documents in ops.def.
// Every op reads its parameters with the readers of native/core/op_args.h (shared by the backends) and
// re-checks buffer sizes against them (OpCall::in_f32 etc.) before touching memory: that check, with its
// byte-count overflow test, is the only one in the native code.
// The fused vocabulary ops also report a few host numbers (the reduced loss, rows, chunk, workspace
// used) in *OpCall::stats; the binding returns them to JS.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dtype.h"
#include "error.h"

namespace vw {

struct Buf {
  void* data = nullptr;  // null for zero bytes too
  size_t bytes = 0;
  DType dtype = DType::F32;
  bool present = false;  // a buffer was given (false: a null slot, an absent optional buffer)
};

// Host results of the fused ops (linear_cross_entropy, visual_word_kl, visual_words, pseudo_image_features*).
struct OpStats {
  bool set = false;             // written by the op (the binding returns null otherwise)
  double loss = 0.0;            // reduced loss (linear_cross_entropy, visual_word_kl)
  int64_t rows = 0;             // rows that contributed (non-ignored for the cross-entropy)
  int64_t chunk_rows = 0;       // row chunk actually used (the logit blocks' rows)
  int64_t group_rows = 0;       // rows of a gradient group, whose backward GEMMs run at once: chunk_rows where the
                                // gradient overwrites the logits; more on CUDA in bf16 (plan_chunks, fused_args.h)
  int64_t workspace_bytes = 0;  // peak scratch allocated by the op (beyond inputs and outputs): what the
                                // workspace budget parameter bounded
};

struct OpCall {
  const char* op = "";
  std::vector<Buf> in, out;
  std::vector<int64_t> i;
  std::vector<double> f;
  OpStats* stats = nullptr;  // where a fused op reports; may be null (the op then reports nothing)

  int64_t ip(size_t k, const char* name) const {
    if (k >= i.size()) throw_type_error("[", op, "] missing integer parameter ", k, " (", name, ")");
    return i[k];
  }
  double fp(size_t k, const char* name) const {
    if (k >= f.size()) throw_type_error("[", op, "] missing float parameter ", k, " (", name, ")");
    return f[k];
  }
  // Typed views that check the slot exists, the dtype, and that it holds at least `elems` elements.
  const float* in_f32(size_t k, int64_t elems, const char* name) const { return static_cast<const float*>(check(in, k, elems, DType::F32, name, "input")); }
  const int32_t* in_i32(size_t k, int64_t elems, const char* name) const { return static_cast<const int32_t*>(check(in, k, elems, DType::I32, name, "input")); }
  float* out_f32(size_t k, int64_t elems, const char* name) const { return static_cast<float*>(check(out, k, elems, DType::F32, name, "output")); }
  int32_t* out_i32(size_t k, int64_t elems, const char* name) const { return static_cast<int32_t*>(check(out, k, elems, DType::I32, name, "output")); }
  const void* in_any(size_t k, int64_t elems, DType t, const char* name) const { return check(in, k, elems, t, name, "input"); }
  void* out_any(size_t k, int64_t elems, DType t, const char* name) const { return check(out, k, elems, t, name, "output"); }
  bool has_in(size_t k) const { return k < in.size() && in[k].data != nullptr; }
  bool has_out(size_t k) const { return k < out.size() && out[k].data != nullptr; }
  void report(const OpStats& s) const {
    if (stats) {
      *stats = s;
      stats->set = true;
    }
  }

 private:
  void* check(const std::vector<Buf>& v, size_t k, int64_t elems, DType t, const char* name, const char* kind) const {
    if (elems < 0) throw_range_error("[", op, "] negative size for ", name);
    if (k >= v.size()) throw_type_error("[", op, "] missing ", kind, " ", k, " (", name, ")");
    const Buf& b = v[k];
    if (b.dtype != t) throw_type_error("[", op, "] ", name, " must be ", dtype_name(t), ", got ", dtype_name(b.dtype));
    // elems x size can overflow size_t (2^62 elements x 4 bytes wraps to 0) although elems fits int64
    if (static_cast<uint64_t>(elems) > SIZE_MAX / dtype_size(t)) throw_range_error("[", op, "] ", name, ": ", elems, " elements overflow the byte count");
    const size_t need = static_cast<size_t>(elems) * dtype_size(t);
    if (need > 0 && !b.present) throw_type_error("[", op, "] ", name, " is missing (null)");
    if (b.bytes < need) throw_range_error("[", op, "] ", name, " holds ", b.bytes, " bytes but needs ", need);
    return b.data;
  }
};

using OpFn = void (*)(const OpCall&);

}  // namespace vw
