// Optimizer step and gradient-norm reduction over a list of k tensors in one call.
//   adamw_step: for each element of each tensor (torch.optim.AdamW, decoupled weight decay):
//       g = grad * gradScale
//       m = beta1 m + (1 - beta1) g,        v = beta2 v + (1 - beta2) g^2
//       p = p (1 - lr weightDecay)
//       p = p - (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps),   bc1 = 1 - beta1^step, bc2 = 1 - beta2^step
//     in float, with the bias corrections formed in double. p, m, v are updated in place.
//   sum_squares: s = sum over all tensors of sum x^2, in double, stored as float32 (the global gradient
//     norm for clipping is sqrt(s)).
// Work is cut into fixed chunks of kElemGrain elements across all tensors, so small tensors share a
// thread and large ones spread; sum_squares adds its per-chunk double sums in chunk order, which makes
// it bit-identical whatever the thread count.
#include <cmath>
#include <string>
#include <vector>

#include "work_split.h"
#include "ops_cpu.h"
#include "parallel.h"
#include "vec.h"

namespace vw::cpu {

namespace {

struct Chunk {
  int64_t tensor, begin, end;
};

std::vector<Chunk> make_chunks(const std::vector<int64_t>& sizes) {
  std::vector<Chunk> chunks;
  for (size_t t = 0; t < sizes.size(); ++t)
    for (int64_t b = 0; b < sizes[t]; b += kElemGrain) chunks.push_back({static_cast<int64_t>(t), b, std::min(sizes[t], b + kElemGrain)});
  return chunks;
}

// k (integer parameter 0) and the k sizes that follow `first` other integer parameters.
std::vector<int64_t> tensor_sizes(const OpCall& c, size_t first) {
  const int64_t k = size_arg(c, 0, "k");
  if (c.i.size() != first + static_cast<size_t>(k))
    throw_type_error("[", c.op, "] expects ", first + k, " integer parameters for k = ", k, ", got ", c.i.size());
  std::vector<int64_t> n(static_cast<size_t>(k));
  for (int64_t t = 0; t < k; ++t) n[t] = size_arg(c, first + t, ("n[" + std::to_string(t) + "]").c_str());
  return n;
}

// Chunks per part: everything on the calling thread when all chunks together are one grain of work.
int64_t chunk_grain(const std::vector<Chunk>& chunks) {
  int64_t total = 0;
  for (const Chunk& ch : chunks) total += ch.end - ch.begin;
  return total <= kElemGrain ? std::max<int64_t>(1, static_cast<int64_t>(chunks.size())) : 1;
}

std::string nth(const char* name, int64_t t) { return std::string(name) + "[" + std::to_string(t) + "]"; }

}  // namespace

void adamw_step_cpu(const OpCall& c) {
  const std::vector<int64_t> n = tensor_sizes(c, 2);
  const int64_t k = static_cast<int64_t>(n.size());
  const int64_t step = c.ip(1, "step");
  if (step < 1) throw_range_error("[", c.op, "] step must be >= 1 (the count of steps taken, this one included), got ", step);
  const double lr = finite_arg(c, 0, "lr"), beta1 = finite_arg(c, 1, "beta1"), beta2 = finite_arg(c, 2, "beta2");
  const double eps = finite_arg(c, 3, "eps"), wd = finite_arg(c, 4, "weightDecay"), gscale = finite_arg(c, 5, "gradScale");
  if (lr < 0) throw_range_error("[", c.op, "] lr must be >= 0, got ", lr);
  if (!(beta1 >= 0 && beta1 < 1)) throw_range_error("[", c.op, "] beta1 must be in [0, 1), got ", beta1);
  if (!(beta2 >= 0 && beta2 < 1)) throw_range_error("[", c.op, "] beta2 must be in [0, 1), got ", beta2);
  if (eps < 0) throw_range_error("[", c.op, "] eps must be >= 0, got ", eps);
  if (wd < 0) throw_range_error("[", c.op, "] weightDecay must be >= 0, got ", wd);
  expect_counts(c, static_cast<size_t>(k), static_cast<size_t>(3 * k));
  std::vector<const float*> g(n.size());
  std::vector<float*> p(n.size()), m(n.size()), v(n.size());
  for (int64_t t = 0; t < k; ++t) {
    g[t] = c.in_f32(t, n[t], nth("g", t).c_str());
    p[t] = c.out_f32(t, n[t], nth("p", t).c_str());
    m[t] = c.out_f32(k + t, n[t], nth("m", t).c_str());
    v[t] = c.out_f32(2 * k + t, n[t], nth("v", t).c_str());
  }
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  const float b1 = static_cast<float>(beta1), b2 = static_cast<float>(beta2);
  const float c1 = static_cast<float>(1.0 - beta1), c2 = static_cast<float>(1.0 - beta2);
  const float decay = static_cast<float>(1.0 - lr * wd), step_size = static_cast<float>(lr / bc1);
  const float inv_bc2_sqrt = static_cast<float>(1.0 / std::sqrt(bc2)), fe = static_cast<float>(eps);
  const float gs = static_cast<float>(gscale);

  const std::vector<Chunk> chunks = make_chunks(n);
  parallel_for(static_cast<int64_t>(chunks.size()), chunk_grain(chunks), [&](int64_t q0, int64_t q1) {
    for (int64_t ci = q0; ci < q1; ++ci) {
      const Chunk& ch = chunks[ci];
      const float* gt = g[ch.tensor];
      float *pt = p[ch.tensor], *mt = m[ch.tensor], *vt = v[ch.tensor];
#pragma omp simd
      for (int64_t i = ch.begin; i < ch.end; ++i) {
        const float gi = gt[i] * gs;
        const float mi = b1 * mt[i] + c1 * gi, vi = b2 * vt[i] + c2 * gi * gi;
        mt[i] = mi;
        vt[i] = vi;
        pt[i] = pt[i] * decay - step_size * mi / (std::sqrt(vi) * inv_bc2_sqrt + fe);
      }
    }
  });
}

void sum_squares_cpu(const OpCall& c) {
  const std::vector<int64_t> n = tensor_sizes(c, 1);
  const int64_t k = static_cast<int64_t>(n.size());
  expect_counts(c, static_cast<size_t>(k), 1);
  std::vector<const float*> x(n.size());
  for (int64_t t = 0; t < k; ++t) x[t] = c.in_f32(t, n[t], nth("x", t).c_str());
  float* s = c.out_f32(0, 1, "s");
  const std::vector<Chunk> chunks = make_chunks(n);
  std::vector<double> part(chunks.size());
  parallel_for(static_cast<int64_t>(chunks.size()), chunk_grain(chunks), [&](int64_t q0, int64_t q1) {
    for (int64_t ci = q0; ci < q1; ++ci) {
      const Chunk& ch = chunks[ci];
      const float* xt = x[ch.tensor] + ch.begin;
      part[ci] = vec_dot(xt, xt, ch.end - ch.begin);
    }
  });
  double total = 0;
  for (double v : part) total += v;
  s[0] = static_cast<float>(total);
}

}  // namespace vw::cpu
