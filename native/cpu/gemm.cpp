#include "gemm.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <string>

#include "isa.h"
#include "parallel.h"

#ifdef VWLMM_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace vw::cpu {

namespace {
inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return cdiv(a, b) * b; }
// Below this many flops per thread, waking another thread costs more than it saves.
constexpr double kMinFlopsPerThread = 2e6;
}  // namespace

GemmGrid gemm_grid(int64_t M, int64_t N, int64_t K, int64_t mr, int64_t nr, int64_t nc, double pack_cost) {
  const double flops = 2.0 * M * N * K;
  const int64_t T = std::max<int64_t>(1, static_cast<int64_t>(std::min<double>(num_threads(), flops / kMinFlopsPerThread)));
  int64_t pm = 1, pn = 1;
  double best = -1;
  for (int64_t m = 1; m <= T; ++m) {
    const int64_t n = T / m;
    const int64_t mt = round_up(cdiv(M, m), mr), nt = round_up(cdiv(N, n), nr);
    if ((m > 1 && mt * (m - 1) >= M) || (n > 1 && nt * (n - 1) >= N)) continue;  // an idle tile
    const double cost = 2.0 * mt * nt * K + pack_cost * K * (mt * cdiv(nt, nc) + nt);
    if (best < 0 || cost < best) best = cost, pm = m, pn = n;
  }
  return {pm, pn, round_up(cdiv(M, pm), mr), round_up(cdiv(N, pn), nr)};
}

#ifdef VWLMM_HAVE_OPENBLAS

// OpenBLAS's DYNAMIC_ARCH kernels chosen for this CPU, when they lack AVX2+FMA: true for an old CPU, and for a new
// one the linked OpenBLAS does not know. OpenBLAS 0.3.21 (Debian 12's) falls back to its Prescott (SSE3) kernels on
// an Emerald Rapids Xeon (family 6, model 207; AVX-512 and AMX): the demo's question steps 1.7x as long as with the
// built-in GEMM (benchmarks/RESULTS.md, "OpenBLAS on a CPU it does not know").
static bool openblas_kernels_lack_avx2() {
  std::string core = openblas_get_corename();
  for (char& c : core) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* k : {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids", "excavator"})
    if (core == k) return false;
  return true;
}

// Which GEMM runs in a build with OpenBLAS (src/native.ts rejects other values of VWLMM_GEMM than openblas /
// builtin): VWLMM_GEMM=builtin the built-in one, VWLMM_GEMM=openblas OpenBLAS; unset, the built-in one on a CPU with
// AVX-512F (also under VWLMM_SIMD=avx2, whose AVX2 kernel gives the AVX-512 kernel's bits: the cap must not switch
// GEMMs) or where OpenBLAS's kernels lack the AVX2+FMA the built-in one uses, else OpenBLAS. With AVX2+FMA
// alone the two are on par (1.03-1.05x on the decoder's and demo's products, AMD EPYC 2026-12-07); the AVX-512 kernel
// takes 0.44-0.59x of OpenBLAS's time with its Haswell kernels on an AVX-512 EPYC (the demo's steps 0.8-0.85x), and
// 0.65-1.01x with its own AVX-512 kernels on a Xeon (benchmarks/RESULTS.md).
enum class GemmChoice { OpenBlas, Builtin, BuiltinOverWeakOpenBlas, BuiltinAvx512 };
static GemmChoice gemm_choice() {
  static const GemmChoice g = [] {
    const char* s = std::getenv("VWLMM_GEMM");
    if (s && std::string(s) == "builtin") return GemmChoice::Builtin;
    if (s && std::string(s) == "openblas") return GemmChoice::OpenBlas;
    if (!vw_use_avx2()) return GemmChoice::OpenBlas;  // the built-in GEMM would run its portable kernel
    if (openblas_kernels_lack_avx2()) return GemmChoice::BuiltinOverWeakOpenBlas;
    return vw_cpu_has_avx512() ? GemmChoice::BuiltinAvx512 : GemmChoice::OpenBlas;
  }();
  return g;
}
static bool use_builtin() { return gemm_choice() != GemmChoice::OpenBlas; }

// OpenBLAS's tiles: rows and columns in multiples of 16 (its x86 sgemm kernels' register tiles are at most 16
// wide), packing costed as the built-in GEMM's.
constexpr int64_t kBlasTile = 16, kBlasPanel = 4096;
constexpr double kBlasPackCost = 16;

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  // BLAS leaves C untouched for K = 0 only when beta = 1: the built-in GEMM gives C = beta C for any beta.
  if (K <= 0 || use_builtin()) return sgemm_builtin(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  // OpenBLAS runs single-threaded inside our pool's tiles: its own threads, woken for each call, did not speed up
  // the demo's small products at all (a question step's matmuls 29-33 ms on 1 or 2 OpenBLAS threads), and a
  // second pool beside ours would oversubscribe the cores.
  static const bool single = (openblas_set_num_threads(1), true);
  (void)single;
  const GemmGrid g = gemm_grid(M, N, K, kBlasTile, kBlasTile, kBlasPanel, kBlasPackCost);
  const auto call = [&](int64_t m0, int64_t m, int64_t n0, int64_t n) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                (blasint)m, (blasint)n, (blasint)K, alpha, trans_a ? A + m0 : A + m0 * lda, (blasint)lda,
                trans_b ? B + n0 * ldb : B + n0, (blasint)ldb, beta, C + m0 * ldc + n0, (blasint)ldc);
  };
  if (g.pm * g.pn == 1) return call(0, M, 0, N);
  parallel_for(g.pm * g.pn, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t m0 = (t / g.pn) * g.mt, n0 = (t % g.pn) * g.nt;
      if (m0 < M && n0 < N) call(m0, std::min(g.mt, M - m0), n0, std::min(g.nt, N - n0));
    }
  });
}

const char* gemm_backend_name() {
  static std::string name = [] {
    const std::string linked = std::string("openblas ") + openblas_get_config();
    switch (gemm_choice()) {
      case GemmChoice::Builtin: return std::string("builtin (") + gemm_builtin_kernel() + "; VWLMM_GEMM=builtin; linked: " + linked + ")";
      case GemmChoice::BuiltinOverWeakOpenBlas:
        return std::string("builtin (") + gemm_builtin_kernel() + ": the linked OpenBLAS chose its " +
               openblas_get_corename() + " kernels on this CPU; VWLMM_GEMM=openblas keeps them; linked: " + linked + ")";
      case GemmChoice::BuiltinAvx512:
        return std::string("builtin (") + gemm_builtin_kernel() + ": the built-in GEMM on this AVX-512 CPU, faster than the " +
               openblas_get_corename() + " kernels the linked OpenBLAS chose" +
               (vw_use_avx512() ? "" : " (its AVX2 kernel under VWLMM_SIMD=avx2: the AVX-512 kernel's bits)") +
               "; VWLMM_GEMM=openblas keeps them; linked: " + linked + ")";
      default: return linked;
    }
  }();
  return name.c_str();
}

#else

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm_builtin(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

const char* gemm_backend_name() {
  static const std::string name = std::string("builtin (") + gemm_builtin_kernel() + ")";
  return name.c_str();
}

#endif

}  // namespace vw::cpu
