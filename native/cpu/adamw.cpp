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
#include <vector>

#include "../core/adamw_args.h"
#include "work_split.h"
#include "ops_cpu.h"
#include "parallel.h"
#include "vec.h"

namespace vw::cpu {

namespace {

using Chunk = TensorChunk;

// Chunks per part: everything on the calling thread when all chunks together are one grain of work.
int64_t chunk_grain(const std::vector<Chunk>& chunks) {
  int64_t total = 0;
  for (const Chunk& ch : chunks) total += ch.end - ch.begin;
  return total <= kElemGrain ? std::max<int64_t>(1, static_cast<int64_t>(chunks.size())) : 1;
}

}  // namespace

void adamw_step_cpu(const OpCall& c) {
  const AdamWArgs a = read_adamw_step(c, false);
  const AdamScalars s = a.scalars();
  const float b1 = s.b1, b2 = s.b2, c1 = s.c1, c2 = s.c2, decay = s.decay, step_size = s.step_size;
  const float inv_bc2_sqrt = s.inv_bc2_sqrt, fe = s.eps, gs = s.gs;

  const std::vector<Chunk> chunks = tensor_chunks(a.n, kElemGrain);
  parallel_for(static_cast<int64_t>(chunks.size()), chunk_grain(chunks), [&](int64_t q0, int64_t q1) {
    for (int64_t ci = q0; ci < q1; ++ci) {
      const Chunk& ch = chunks[ci];
      const float* gt = a.g[ch.tensor];
      float *pt = a.p[ch.tensor], *mt = a.m[ch.tensor], *vt = a.v[ch.tensor];
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
  const SumSquaresArgs a = read_sum_squares(c);
  const std::vector<Chunk> chunks = tensor_chunks(a.n, kElemGrain);
  std::vector<double> part(chunks.size());
  parallel_for(static_cast<int64_t>(chunks.size()), chunk_grain(chunks), [&](int64_t q0, int64_t q1) {
    for (int64_t ci = q0; ci < q1; ++ci) {
      const Chunk& ch = chunks[ci];
      const float* xt = a.x[ch.tensor] + ch.begin;
      part[ci] = vec_dot(xt, xt, ch.end - ch.begin);
    }
  });
  double total = 0;
  for (double v : part) total += v;
  a.s[0] = static_cast<float>(total);
}

}  // namespace vw::cpu
