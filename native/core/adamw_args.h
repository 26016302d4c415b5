// Parameters and buffers of the multi-tensor ops adamw_step and sum_squares (native/core/ops.def), read and
// checked once for both backends, so the CPU and CUDA ops validate in the same order with the same
// messages; and the chunking of their k tensors that both backends run over.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "op_args.h"

namespace vw {

// "name[t]", the message name of tensor t of a list.
inline std::string nth(const char* name, int64_t t) { return std::string(name) + "[" + std::to_string(t) + "]"; }

// k (integer parameter 0) and the k sizes n_1..n_k that follow `first` integer parameters; `extra`
// optional trailing integers are allowed after them (their count is returned in *n_extra).
inline std::vector<int64_t> tensor_sizes(const OpCall& c, size_t first, size_t extra = 0, size_t* n_extra = nullptr) {
  const int64_t k = size_arg(c, 0, "k");
  const size_t base = first + static_cast<size_t>(k);
  if (c.i.size() < base || c.i.size() > base + extra) {
    if (extra == 0)
      throw_type_error("[", c.op, "] expects ", base, " integer parameters for k = ", k, ", got ", c.i.size());
    throw_type_error("[", c.op, "] expects ", base, " integer parameters for k = ", k, " (", base + extra,
                     " with bf16Copies), got ", c.i.size());
  }
  if (n_extra) *n_extra = c.i.size() - base;
  std::vector<int64_t> n(static_cast<size_t>(k));
  for (int64_t t = 0; t < k; ++t) n[t] = size_arg(c, first + t, nth("n", t).c_str());
  return n;
}

// A piece [begin, end) of tensor `tensor`: the tensors are cut into pieces of at most `chunk` elements.
struct TensorChunk {
  int64_t tensor, begin, end;
};

inline std::vector<TensorChunk> tensor_chunks(const std::vector<int64_t>& sizes, int64_t chunk) {
  std::vector<TensorChunk> chunks;
  for (size_t t = 0; t < sizes.size(); ++t)
    for (int64_t b = 0; b < sizes[t]; b += chunk) chunks.push_back({static_cast<int64_t>(t), b, std::min(sizes[t], b + chunk)});
  return chunks;
}

// The float32 constants of one AdamW step (bias corrections formed in double):
//   m = b1 m + c1 g,  v = b2 v + c2 g^2  (g = grad * gs),  p = p decay - step_size m / (sqrt(v) inv_bc2_sqrt + eps).
struct AdamScalars {
  float b1, b2, c1, c2, decay, step_size, inv_bc2_sqrt, eps, gs;
};

// adamw_step: in [g_1..g_k] out [p_1..p_k, m_1..m_k, v_1..v_k, c_1..c_k?], i [k, step, n_1..n_k, bf16Copies?]
// f [lr, beta1, beta2, eps, weightDecay, gradScale]. bf16Copies (and the c_t outputs, bfloat16) only
// where the backend offers them (`copies_ok`); elsewhere the extra integer is rejected.
struct AdamWArgs {
  std::vector<int64_t> n;  // the k tensor sizes
  int64_t step = 1;
  double lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0, grad_scale = 1;
  bool copies = false;
  std::vector<const float*> g;
  std::vector<float*> p, m, v;
  std::vector<void*> copy;  // bfloat16, when copies
  AdamScalars scalars() const {
    const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
    const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
    AdamScalars s;
    s.b1 = static_cast<float>(beta1);
    s.b2 = static_cast<float>(beta2);
    s.c1 = static_cast<float>(1.0 - beta1);
    s.c2 = static_cast<float>(1.0 - beta2);
    s.decay = static_cast<float>(1.0 - lr * weight_decay);
    s.step_size = static_cast<float>(lr / bc1);
    s.inv_bc2_sqrt = static_cast<float>(1.0 / std::sqrt(bc2));
    s.eps = static_cast<float>(eps);
    s.gs = static_cast<float>(grad_scale);
    return s;
  }
};

inline AdamWArgs read_adamw_step(const OpCall& c, bool copies_ok) {
  AdamWArgs a;
  size_t n_extra = 0;
  a.n = tensor_sizes(c, 2, copies_ok ? 1 : 0, &n_extra);
  const int64_t k = static_cast<int64_t>(a.n.size());
  a.copies = n_extra == 1 && flag_arg(c, 2 + static_cast<size_t>(k), "bf16Copies");
  a.step = c.ip(1, "step");
  if (a.step < 1) throw_range_error("[", c.op, "] step must be >= 1 (the count of steps taken, this one included), got ", a.step);
  a.lr = finite_arg(c, 0, "lr"), a.beta1 = finite_arg(c, 1, "beta1"), a.beta2 = finite_arg(c, 2, "beta2");
  a.eps = finite_arg(c, 3, "eps"), a.weight_decay = finite_arg(c, 4, "weightDecay"), a.grad_scale = finite_arg(c, 5, "gradScale");
  if (a.lr < 0) throw_range_error("[", c.op, "] lr must be >= 0, got ", a.lr);
  if (!(a.beta1 >= 0 && a.beta1 < 1)) throw_range_error("[", c.op, "] beta1 must be in [0, 1), got ", a.beta1);
  if (!(a.beta2 >= 0 && a.beta2 < 1)) throw_range_error("[", c.op, "] beta2 must be in [0, 1), got ", a.beta2);
  if (a.eps < 0) throw_range_error("[", c.op, "] eps must be >= 0, got ", a.eps);
  if (a.weight_decay < 0) throw_range_error("[", c.op, "] weightDecay must be >= 0, got ", a.weight_decay);
  expect_counts(c, static_cast<size_t>(k), static_cast<size_t>((a.copies ? 4 : 3) * k));
  a.g.resize(a.n.size()), a.p.resize(a.n.size()), a.m.resize(a.n.size()), a.v.resize(a.n.size());
  a.copy.assign(a.n.size(), nullptr);
  for (int64_t t = 0; t < k; ++t) {
    a.g[t] = c.in_f32(t, a.n[t], nth("g", t).c_str());
    a.p[t] = c.out_f32(t, a.n[t], nth("p", t).c_str());
    a.m[t] = c.out_f32(k + t, a.n[t], nth("m", t).c_str());
    a.v[t] = c.out_f32(2 * k + t, a.n[t], nth("v", t).c_str());
    if (a.copies) a.copy[t] = c.out_any(3 * k + t, a.n[t], DType::BF16, nth("c", t).c_str());
  }
  return a;
}

// sum_squares: in [x_1..x_k] out [s f32[1]], i [k, n_1..n_k].
struct SumSquaresArgs {
  std::vector<int64_t> n;
  std::vector<const float*> x;
  float* s = nullptr;
};

inline SumSquaresArgs read_sum_squares(const OpCall& c) {
  SumSquaresArgs a;
  a.n = tensor_sizes(c, 1);
  const int64_t k = static_cast<int64_t>(a.n.size());
  expect_counts(c, static_cast<size_t>(k), 1);
  a.x.resize(a.n.size());
  for (int64_t t = 0; t < k; ++t) a.x[t] = c.in_f32(t, a.n[t], nth("x", t).c_str());
  a.s = c.out_f32(0, 1, "s");
  return a;
}

}  // namespace vw
