// Visual words: top-k of softmax(x Wvm^T) per row (VISUAL_WORDS.md section 4), streaming over row chunks.
// Probabilities are exp(z - lse(z)) over the whole vocabulary, formed as exp((z - m) - log(sum exp(z - m))): lse itself
// is not representable next to a huge max (at |m| ~ 1e30, m + log 3 rounds to m in double, and three tied top words each
// came out with probability 1). Ties go to the lower token id.
#include <algorithm>
#include <utility>

#include "common.h"
#include "float32_view.h"
#include "gemm.h"
#include "ops_cpu.h"

namespace vw::cpu {

OpStats visual_words(const VisualWordsArgs& a) {
  const char* op = "visual_words";
  const int64_t N = a.N, d = a.d, V = a.V, k = a.k;
  const float* x = static_cast<const float*>(a.x);
  const float* w = static_cast<const float*>(a.w_vm);
  check_finite(op, "x", x, N * d);
  check_finite(op, "wVm", w, V * d);
  OpStats st;
  st.rows = N;
  if (N == 0) return st;
  LogitBlocks blocks(st, a.chunk_rows, N, V, 1, a.workspace_budget);
  const int64_t chunk = blocks.rows;
  float* z = blocks.block(0);

  // "better" = larger logit, then lower id; the heap keeps the worst of the current top-k on top.
  auto better = [](const std::pair<float, int32_t>& l, const std::pair<float, int32_t>& r) {
    return l.first > r.first || (l.first == r.first && l.second < r.second);
  };
  for (int64_t c0 = 0; c0 < N; c0 += chunk) {
    const int64_t nc = std::min(chunk, N - c0);
    sgemm(false, true, nc, V, d, 1.f, x + c0 * d, d, w, d, 0.f, z, V);
    parallel_for(nc, 1, [&](int64_t r0, int64_t r1) {
      std::vector<std::pair<float, int32_t>> heap;
      heap.reserve(static_cast<size_t>(k));
      for (int64_t r = r0; r < r1; ++r) {
        const float* row = z + r * V;
        const float m = vec_max(row, V);
        check_logit_row(op, m, c0 + r);
        const double log_s = std::log(vec_sum_exp(row, V, m));
        heap.clear();
        for (int32_t v = 0; v < V; ++v) {
          std::pair<float, int32_t> cand(row[v], v);
          if (static_cast<int64_t>(heap.size()) < k) {
            heap.push_back(cand);
            std::push_heap(heap.begin(), heap.end(), better);
          } else if (better(cand, heap.front())) {
            std::pop_heap(heap.begin(), heap.end(), better);
            heap.back() = cand;
            std::push_heap(heap.begin(), heap.end(), better);
          }
        }
        std::sort(heap.begin(), heap.end(), better);
        const int64_t i = c0 + r;
        for (int64_t j = 0; j < k; ++j) {
          a.ids[i * k + j] = heap[j].second;
          // z - m first (exact for z near m), then the log of the sum: never m + log s, which rounds to m at huge m
          a.probs[i * k + j] = static_cast<float>(std::exp((static_cast<double>(heap[j].first) - m) - log_s));
        }
      }
    });
  }
  return st;
}

// The table entries (native/core/ops.def).
// bf16 h/w/x (mixed precision) run on float32 copies (float32_view.h), after the call is checked as given.
void visual_words_cpu(const OpCall& c) {
  read_visual_words(c);
  in_float32(c, [](const OpCall& w) { w.report(visual_words(read_visual_words(w))); });
}

}  // namespace vw::cpu
