// Rotary position embedding, HF LLaMA convention (rotate_half: dimension j pairs with j + Dh/2):
//   inv_freq[j] = theta^(-2j/Dh),  angle(t, j) = (posOffset + t) inv_freq[j],  j < Dh/2,
//   y[j]        = x[j] cos - x[j + Dh/2] sin,
//   y[j + Dh/2] = x[j + Dh/2] cos + x[j] sin,
// over X [B, T, H, Dh] (position t for every batch row and head). Each pair is rotated by its angle, an
// orthogonal map, so the backward (the transpose) is the rotation by -angle: inverse = 1. Angles are
// formed and reduced in double (positions reach ~1e5, where a float angle would be off by ~1e-2 rad);
// the cos/sin table [T, Dh/2] is built once per (theta, Dh, positions, direction) of the last few calls. Y may be X (in place). X and Y float32, or both bf16.
#include <cmath>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "float32_view.h"
#include "work_split.h"
#include "ops_cpu.h"
#include "parallel.h"

namespace vw::cpu {

namespace {
// The cos/sin table of one call: [T, Dh/2] each, sin negated for the inverse.
struct RopeTable {
  double theta;
  int64_t Dh, pos0, T;
  bool inverse;
  std::vector<float> cos, sin;
};

// A decoder's layers rotate q and k at the same positions, 2 x layers calls in a row: the last few tables are
// kept, so the ~T x Dh/2 double-precision cos and sin (0.25 ms at T = 250, Dh = 64) are computed once per forward,
// not per call.
std::shared_ptr<const RopeTable> rope_table(double theta, int64_t Dh, int64_t pos0, int64_t T, bool inverse) {
  static std::mutex mu;
  static std::deque<std::shared_ptr<const RopeTable>> recent;  // most recent first
  constexpr size_t kKept = 4;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& t : recent)
      if (t->theta == theta && t->Dh == Dh && t->pos0 == pos0 && t->T == T && t->inverse == inverse) return t;
  }
  const int64_t half = Dh / 2;
  auto table = std::make_shared<RopeTable>(RopeTable{theta, Dh, pos0, T, inverse, std::vector<float>(static_cast<size_t>(T * half)),
                                                     std::vector<float>(static_cast<size_t>(T * half))});
  std::vector<double> inv_freq(static_cast<size_t>(half));
  for (int64_t j = 0; j < half; ++j) inv_freq[j] = std::pow(theta, -2.0 * static_cast<double>(j) / static_cast<double>(Dh));
  const double sign = inverse ? -1.0 : 1.0;
  parallel_for(T, row_grain(4 * half), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const double pos = static_cast<double>(pos0 + t);
      for (int64_t j = 0; j < half; ++j) {
        const double a = pos * inv_freq[j];
        table->cos[t * half + j] = static_cast<float>(std::cos(a));
        table->sin[t * half + j] = static_cast<float>(sign * std::sin(a));
      }
    }
  });
  std::lock_guard<std::mutex> lock(mu);
  recent.push_front(table);
  if (recent.size() > kKept) recent.pop_back();
  return table;
}

void rope_f32(const OpCall& c) {
  const int64_t B = size_arg(c, 0, "B"), T = size_arg(c, 1, "T"), H = size_arg(c, 2, "H"), Dh = size_arg(c, 3, "Dh");
  const int64_t pos0 = size_arg(c, 4, "posOffset");
  const bool inverse = flag_arg(c, 5, "inverse");
  const double theta = c.fp(0, "theta");
  if (Dh % 2 != 0) throw_range_error("[", c.op, "] Dh must be even (rotate_half pairs j with j + Dh/2), got ", Dh);
  if (!(theta > 0) || !std::isfinite(theta)) throw_range_error("[", c.op, "] theta must be finite and > 0, got ", theta);
  const int64_t n = numel(c, {B, T, H, Dh});
  const float* x = c.in_f32(0, n, "X");
  float* y = c.out_f32(0, n, "Y");
  if (n == 0) return;
  const int64_t half = Dh / 2, row = H * Dh;

  const std::shared_ptr<const RopeTable> table = rope_table(theta, Dh, pos0, T, inverse);
  const float *cos_t = table->cos.data(), *sin_t = table->sin.data();

  parallel_for(B * T, row_grain(row), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t t = r % T;
      const float *cs = cos_t + t * half, *sn = sin_t + t * half;
      for (int64_t h = 0; h < H; ++h) {
        const float* xh = x + r * row + h * Dh;
        float* yh = y + r * row + h * Dh;
        // In place is safe: element j and j + half are both read before either is written.
#pragma omp simd
        for (int64_t j = 0; j < half; ++j) {
          const float a = xh[j], b = xh[j + half];
          yh[j] = a * cs[j] - b * sn[j];
          yh[j + half] = b * cs[j] + a * sn[j];
        }
      }
    }
  });
}
}  // namespace

// bf16 X and Y (autocast's attention inputs) run on widened copies (float32_view.h); one float type for both.
void rope_cpu(const OpCall& c) {
  const int64_t n = numel(c, {size_arg(c, 0, "B"), size_arg(c, 1, "T"), size_arg(c, 2, "H"), size_arg(c, 3, "Dh")});
  same_type_in_float32(c, n, {"X"}, {"Y"}, rope_f32);
}

}  // namespace vw::cpu
