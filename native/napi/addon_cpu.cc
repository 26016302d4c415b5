// vwlmm.node: the CPU addon (always built): the op table bound to the CPU kernels, host memory
// (native/cpu/host_memory.h), sgemm and backendInfo().
#include <napi.h>

#include <dlfcn.h>

#include <algorithm>
#include <string>
#ifdef __GLIBC__  // mallopt / M_MMAP_THRESHOLD are glibc's; other C libraries keep their malloc defaults
#include <malloc.h>
#endif

#include "../core/error_flags.h"
#include "../cpu/gemm.h"
#include "../cpu/host_memory.h"
#include "../cpu/ops_cpu.h"
#include "../cpu/parallel.h"
#include "../cpu/vec.h"
#include "../distributed/mpi_communicator.h"
#include "args.h"
#include "dist_napi.h"
#include "op_napi.h"

namespace vw::napi {

namespace {
// The CPU runs every check on the host as its op runs: a read has nothing to fetch, only to raise what async
// mode has kept (native/core/error_flags.h).
void NoFlagsToFetch() {}
void RaiseFlags() {
  if (error_flags().pending()) error_flags().raise_pending(nullptr);
}
}  // namespace

const DeviceMemory kDeviceMemory = {"cpu", cpu::host_alloc, cpu::host_free, cpu::host_copy, cpu::host_copy, cpu::host_zero,
                                    cpu::host_cache_stats, cpu::release_host_cache, NoFlagsToFetch, RaiseFlags, RaiseFlags,
                                    /*graphs=*/nullptr};

// sgemm(transA, transB, M, N, K, A, B, C, options?) on NativeBuffers, C = alpha op(A) op(B) + beta C:
// exposed for the benchmarks' GEMM measurements and the GEMM tests. options (all optional):
//   builtin: true runs the built-in GEMM even where OpenBLAS is in use (to compare the two in one process),
//   alpha (1), beta (0; 0 overwrites C without reading it), lda / ldb / ldc: row strides >= the logical
//   widths (default: the widths), the buffers then holding (rows - 1) * ld + width elements.
Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    const char* op = "sgemm";
    if (info.Length() < 8) throw_type_error("[sgemm] expected (transA, transB, M, N, K, A, B, C), got ", info.Length(), " arguments");
    const bool ta = GemmFlag(info[0], "transA"), tb = GemmFlag(info[1], "transB");
    const int64_t M = GemmSize(info[2], "M"), N = GemmSize(info[3], "N"), K = GemmSize(info[4], "K");
    bool builtin = false;
    float alpha = 1.f, beta = 0.f;
    // Row strides: at least the stored width and 1 (as BLAS requires); read before the buffers are.
    int64_t lda = std::max<int64_t>(1, ta ? M : K), ldb = std::max<int64_t>(1, tb ? K : N), ldc = std::max<int64_t>(1, N);
    if (info.Length() > 8 && !info[8].IsUndefined() && !info[8].IsNull()) {
      if (!info[8].IsObject()) throw_type_error("[sgemm] options must be an object");
      const Napi::Object o = info[8].As<Napi::Object>();
      builtin = GetBool(o, "builtin", false, op);
      alpha = static_cast<float>(GetNumber(o, "alpha", 1, op));
      beta = static_cast<float>(GetNumber(o, "beta", 0, op));
      const auto stride = [&](const char* key, int64_t min) {
        const Napi::Value v = o.Get(key);
        if (v.IsUndefined() || v.IsNull()) return min;
        const int64_t ld = GemmSize(v, key);
        if (ld < min) throw_range_error("[sgemm] ", key, " must be >= ", min, " (the row width), got ", ld);
        return ld;
      };
      lda = stride("lda", lda), ldb = stride("ldb", ldb), ldc = stride("ldc", ldc);
    }
    // Elements a [rows, width] matrix with row stride ld spans: (rows - 1) * ld + width.
    const auto extent = [&](int64_t rows, int64_t width, int64_t ld) {
      return rows == 0 || width == 0 ? 0 : GemmElems(rows - 1, ld) + width;
    };
    const OpCall c = GemmBuffers(info, DType::F32);
    const float* A = c.in_f32(0, ta ? extent(K, M, lda) : extent(M, K, lda), "A");
    const float* B = c.in_f32(1, tb ? extent(N, K, ldb) : extent(K, N, ldb), "B");
    float* C = c.out_f32(0, extent(M, N, ldc), "C");
    (builtin ? cpu::sgemm_builtin : cpu::sgemm)(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return info.Env().Undefined();
  });
}

// libvwlmm_mpi.so beside this addon, whichever file it was loaded from (build/Release, or a prebuilds/<platform>
// folder: CMake and scripts/prebuild.js put it there where MPI is found).
std::string DefaultMpiLibrary() {
  Dl_info info{};
  if (!dladdr(reinterpret_cast<void*>(&DefaultMpiLibrary), &info) || !info.dli_fname) return "libvwlmm_mpi.so";
  const std::string self = info.dli_fname;
  const size_t slash = self.rfind('/');
  return (slash == std::string::npos ? std::string(".") : self.substr(0, slash)) + "/libvwlmm_mpi.so";
}

// The host's process group: MPI (options.library: another libvwlmm_mpi.so).
dist::Communicator* OpenHostCommunicator(const std::string& backend, const Napi::Object& o, double timeout_s) {
  if (backend != "mpi") throw_type_error("[distInit] the cpu backend runs process groups over 'mpi', not '", backend, "' (NCCL is the cuda backend's)");
  const Napi::Value lib = o.Get("library");
  if (!lib.IsUndefined() && !lib.IsString()) throw_type_error("[distInit] options.library must be a path string");
  return dist::open_mpi(lib.IsString() ? lib.As<Napi::String>().Utf8Value() : DefaultMpiLibrary(), timeout_s);
}

// The CPU implements every op of the table (a missing one fails to link).
const OpEntry kCpuOps[] = {
#define VW_OP(name, inputs, outputs, ints, floats) {#name, cpu::name##_cpu, inputs, outputs, ints, floats},
#include "../core/ops.def"
#undef VW_OP
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
#ifdef __GLIBC__
  // Kernel scratch (std::vector on worker threads) of 1 MiB and more stays in mmap and goes back to the
  // system on free: with glibc's dynamic threshold such blocks drift into per-thread arenas that fragment.
  mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
#endif
  RegisterOps(env, exports, kCpuOps, "cpu");
  exports.Set("sgemm", Napi::Function::New(env, Sgemm, "sgemm"));
  RegisterDist(env, exports, OpenHostCommunicator);
  exports.Set("backendInfo", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("device", "cpu");
    o.Set("gemm", cpu::gemm_backend_name());
    o.Set("threads", cpu::num_threads());
    o.Set("simd", cpu::vec_isa_name());
    o.Set("napiVersion", NAPI_VERSION);
    // the MPI backend of process groups beside this addon: whether it is there, whether it loads (as NCCL's
    // status does, this loads it), with which MPI, or why not
    const std::string mpi = DefaultMpiLibrary();
    const dist::MpiStatus st = dist::mpi_status(mpi);
    Napi::Object m = Napi::Object::New(info.Env());
    m.Set("library", mpi);
    m.Set("built", st.built);
    m.Set("available", st.available);
    if (st.available) {
      m.Set("version", st.version);
      m.Set("mpiLibrary", st.mpi_path);
    } else {
      m.Set("reason", st.reason);
    }
    o.Set("mpi", m);
    return o;
  }));
  return exports;
}

NODE_API_MODULE(vwlmm, Init)

}  // namespace vw::napi
