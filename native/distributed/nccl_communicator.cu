// NCCL process groups (nccl_communicator.h). Ordering: a collective waits (cudaStreamWaitEvent) for what the ops'
// stream has queued, runs on the group's own stream, and records an event; wait() polls that event and NCCL's
// asynchronous error until the deadline, then makes the ops' stream wait for it. Past the deadline the communicator
// is aborted (ncclCommAbort), so no rank stays blocked on a dead peer.
// Ran on an H200 with one rank (2026-12-04: bit for bit with the single-process path, benchmarks/gpu/device_check.sh);
// several GPUs have not run it.
#include "nccl_communicator.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cstdlib>
#include <thread>
#include <unordered_map>
#include <vector>

#include "../cuda/common.cuh"

#ifdef VWLMM_HAVE_NCCL
#include <dlfcn.h>
#include <nccl.h>
#endif

namespace vw::dist {

#ifndef VWLMM_HAVE_NCCL

NcclStatus nccl_status() {
  NcclStatus s;
  s.reason = "the CUDA addon was built without NCCL's header (set VWLMM_NCCL_ROOT to the nvidia-nccl wheel's nvidia/nccl folder and rebuild)";
  return s;
}
std::string nccl_unique_id() { throw_runtime_error("[process group] ", nccl_status().reason); }
Communicator* open_nccl(const std::string&, int, int, int, int, double) { throw_runtime_error("[process group] ", nccl_status().reason); }

#else

namespace {

// The NCCL functions used, resolved from the library dlopen found.
struct NcclApi {
  ncclResult_t (*GetUniqueId)(ncclUniqueId*);
  ncclResult_t (*CommInitRankConfig)(ncclComm_t*, int, ncclUniqueId, int, ncclConfig_t*);
  ncclResult_t (*AllReduce)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
  ncclResult_t (*ReduceScatter)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
  ncclResult_t (*AllGather)(const void*, void*, size_t, ncclDataType_t, ncclComm_t, cudaStream_t);
  ncclResult_t (*Broadcast)(const void*, void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t*);
  ncclResult_t (*CommAbort)(ncclComm_t);
  ncclResult_t (*CommDestroy)(ncclComm_t);
  ncclResult_t (*GetVersion)(int*);
  const char* (*GetErrorString)(ncclResult_t);
};

struct Loaded {
  NcclApi api{};
  std::string path, error;
  int version = 0;
};

const Loaded& loaded() {
  static const Loaded l = [] {
    Loaded r;
    std::string candidates[3];
    int n = 0;
    if (const char* env = std::getenv("VWLMM_NCCL_LIBRARY")) candidates[n++] = env;
    candidates[n++] = "libnccl.so.2";
#ifdef VWLMM_NCCL_LIBDIR
    candidates[n++] = std::string(VWLMM_NCCL_LIBDIR) + "/libnccl.so.2";
#endif
    void* h = nullptr;
    std::string tried;
    for (int k = 0; k < n && !h; ++k) {
      h = dlopen(candidates[k].c_str(), RTLD_NOW | RTLD_LOCAL);
      if (h) r.path = candidates[k];
      else tried += (tried.empty() ? "" : "; ") + std::string(dlerror());
    }
    if (!h) {
      r.error = "libnccl.so.2 was not found (" + tried + "): put the nvidia-nccl wheel's lib folder on LD_LIBRARY_PATH or set VWLMM_NCCL_LIBRARY";
      return r;
    }
    const auto sym = [&](const char* name) {
      void* p = dlsym(h, name);
      if (!p && r.error.empty()) r.error = std::string(r.path) + " has no " + name + " (NCCL >= 2.14 is needed)";
      return p;
    };
    r.api.GetUniqueId = reinterpret_cast<decltype(r.api.GetUniqueId)>(sym("ncclGetUniqueId"));
    r.api.CommInitRankConfig = reinterpret_cast<decltype(r.api.CommInitRankConfig)>(sym("ncclCommInitRankConfig"));
    r.api.AllReduce = reinterpret_cast<decltype(r.api.AllReduce)>(sym("ncclAllReduce"));
    r.api.ReduceScatter = reinterpret_cast<decltype(r.api.ReduceScatter)>(sym("ncclReduceScatter"));
    r.api.AllGather = reinterpret_cast<decltype(r.api.AllGather)>(sym("ncclAllGather"));
    r.api.Broadcast = reinterpret_cast<decltype(r.api.Broadcast)>(sym("ncclBroadcast"));
    r.api.CommGetAsyncError = reinterpret_cast<decltype(r.api.CommGetAsyncError)>(sym("ncclCommGetAsyncError"));
    r.api.CommAbort = reinterpret_cast<decltype(r.api.CommAbort)>(sym("ncclCommAbort"));
    r.api.CommDestroy = reinterpret_cast<decltype(r.api.CommDestroy)>(sym("ncclCommDestroy"));
    r.api.GetVersion = reinterpret_cast<decltype(r.api.GetVersion)>(sym("ncclGetVersion"));
    r.api.GetErrorString = reinterpret_cast<decltype(r.api.GetErrorString)>(sym("ncclGetErrorString"));
    if (r.error.empty()) r.api.GetVersion(&r.version);
    return r;
  }();
  return l;
}

const NcclApi& api(const char* what) {
  const Loaded& l = loaded();
  if (!l.error.empty()) throw_runtime_error("[", what, "] NCCL is unavailable: ", l.error);
  return l.api;
}

void check(const char* what, ncclResult_t r) {
  if (r != ncclSuccess && r != ncclInProgress) throw_runtime_error("[", what, "] NCCL: ", loaded().api.GetErrorString(r));
}

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::F32: return ncclFloat32;
    case DType::BF16: return ncclBfloat16;
    case DType::I32: return ncclInt32;
  }
  return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::avg: return ncclAvg;
    case ReduceOp::max: return ncclMax;
    case ReduceOp::min: return ncclMin;
  }
  return ncclSum;
}

using Clock = std::chrono::steady_clock;

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(int rank, int size, int local_rank, int local_size) : rank_(rank), size_(size), local_rank_(local_rank), local_size_(local_size) {}

  void open(const ncclUniqueId& id, double timeout_s) {
    const NcclApi& a = api("process group");
    ops_stream_ = cuda::context("process group").stream;
    CUDA_CHECK("process group", cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;  // polled below, so a rank that never arrives ends this one at the deadline
    check("ncclCommInitRank", a.CommInitRankConfig(&comm_, size_, id, rank_, &cfg));
    timeout_s_ = timeout_s;
    settle("ncclCommInitRank", timeout_s);
  }

  const char* backend() const override { return "nccl"; }
  std::string library() const override {
    const int v = loaded().version;
    return "NCCL " + std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100) + " (" + loaded().path + ")";
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }

  uint64_t start(const CollectiveArgs& c) override {
    throw_if_broken();
    const NcclApi& a = api(collective_name(c.kind));
    const char* what = collective_name(c.kind);
    cudaEvent_t ready, done;
    CUDA_CHECK(what, cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    CUDA_CHECK(what, cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    // after everything the ops' stream has queued (the gradients it is still writing)
    CUDA_CHECK(what, cudaEventRecord(ready, ops_stream_));
    CUDA_CHECK(what, cudaStreamWaitEvent(stream_, ready, 0));
    cudaEventDestroy(ready);
    const ncclDataType_t t = nccl_type(c.dtype);
    ncclResult_t r = ncclSuccess;
    switch (c.kind) {
      case Collective::all_reduce: r = a.AllReduce(c.in, c.out, c.count, t, nccl_op(c.op), comm_, stream_); break;
      case Collective::reduce_scatter: r = a.ReduceScatter(c.in, c.out, c.count, t, nccl_op(c.op), comm_, stream_); break;
      case Collective::all_gather: r = a.AllGather(c.in, c.out, c.count, t, comm_, stream_); break;
      case Collective::broadcast: r = a.Broadcast(c.in, c.out, c.count, t, c.root, comm_, stream_); break;
    }
    check(what, r);
    if (r == ncclInProgress) settle(what, timeout_s_);  // the group's deadline, as every wait
    CUDA_CHECK(what, cudaEventRecord(done, stream_));
    const uint64_t h = ++next_;
    pending_[h] = {done, what};
    return h;
  }

  bool test(uint64_t h) override {
    auto it = find(h);
    async_error(it->second.what);
    const cudaError_t e = cudaEventQuery(it->second.done);
    if (e == cudaErrorNotReady) {
      cudaGetLastError();  // not ready is no error: clear it, or the next launch check would report it (as PyTorch does)
      return false;
    }
    CUDA_CHECK(it->second.what, e);
    return true;
  }

  void wait(uint64_t h, double timeout_s, double waited_s) override {
    auto it = find(h);
    const char* what = it->second.what;
    if (!broken_.empty()) throw CollectiveTimeout(broken_);
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
    for (auto sleep = std::chrono::microseconds(20);; sleep = std::min(sleep * 2, std::chrono::microseconds(2000))) {
      async_error(what);
      const cudaError_t e = cudaEventQuery(it->second.done);
      if (e == cudaSuccess) break;
      if (e != cudaErrorNotReady) CUDA_CHECK(what, e);
      cudaGetLastError();  // (as in test())
      if (Clock::now() > deadline) {
        loaded().api.CommAbort(comm_);  // frees the peers' kernels on this side; the buffers stay pinned
        broken_ = str_cat("[", what, "] rank ", rank_, " of ", size_, ": the collective did not complete within ", timeout_s + waited_s,
                          " s: another rank died, hangs, or did not start the same collectives in the same order; the NCCL communicator was aborted");
        throw CollectiveTimeout(broken_);
      }
      std::this_thread::sleep_for(sleep);
    }
    // what the ops run next reads the result
    CUDA_CHECK(what, cudaStreamWaitEvent(ops_stream_, it->second.done, 0));
    cudaEventDestroy(it->second.done);
    pending_.erase(it);
  }

  void finalize(double timeout_s) override {
    throw_if_broken();
    std::vector<uint64_t> handles;
    for (const auto& e : pending_) handles.push_back(e.first);
    for (uint64_t h : handles) wait(h, timeout_s, 0);
    check("ncclCommDestroy", loaded().api.CommDestroy(comm_));
    cudaStreamDestroy(stream_);
  }

 private:
  struct Pending {
    cudaEvent_t done;
    const char* what;
  };

  std::unordered_map<uint64_t, Pending>::iterator find(uint64_t h) {
    auto it = pending_.find(h);
    if (it == pending_.end()) throw_range_error("[process group] unknown or already waited-for collective ", h);
    return it;
  }

  void throw_if_broken() const {
    if (!broken_.empty()) throw CollectiveTimeout(broken_);
  }

  // A failure NCCL found in the background (a peer's connection gone, say) ends the group.
  void async_error(const char* what) {
    ncclResult_t r = ncclSuccess;
    loaded().api.CommGetAsyncError(comm_, &r);
    if (r != ncclSuccess && r != ncclInProgress) {
      loaded().api.CommAbort(comm_);
      broken_ = str_cat("[", what, "] rank ", rank_, " of ", size_, ": NCCL failed: ", loaded().api.GetErrorString(r), "; the communicator was aborted");
      throw CollectiveTimeout(broken_);
    }
  }

  // A non-blocking communicator's call in progress: polled until done, aborted at the deadline.
  void settle(const char* what, double timeout_s) {
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
    for (;;) {
      ncclResult_t r = ncclInProgress;
      loaded().api.CommGetAsyncError(comm_, &r);
      if (r == ncclSuccess) return;
      if (r != ncclInProgress) {
        loaded().api.CommAbort(comm_);
        broken_ = str_cat("[", what, "] rank ", rank_, " of ", size_, ": NCCL failed: ", loaded().api.GetErrorString(r));
        throw_runtime_error(broken_);
      }
      if (Clock::now() > deadline) {
        loaded().api.CommAbort(comm_);
        broken_ = str_cat("[", what, "] rank ", rank_, " of ", size_, ": not every rank joined within ", timeout_s, " s; the communicator was aborted");
        throw CollectiveTimeout(broken_);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  int rank_, size_, local_rank_, local_size_;
  ncclComm_t comm_ = nullptr;
  double timeout_s_ = 0;
  cudaStream_t stream_ = nullptr, ops_stream_ = nullptr;
  std::unordered_map<uint64_t, Pending> pending_;
  uint64_t next_ = 0;
  std::string broken_;
};

}  // namespace

NcclStatus nccl_status() {
  NcclStatus s;
  s.compiled = true;
  const Loaded& l = loaded();
  s.available = l.error.empty();
  s.library = l.path;
  s.reason = l.error;
  if (s.available) s.version = std::to_string(l.version / 10000) + "." + std::to_string(l.version / 100 % 100) + "." + std::to_string(l.version % 100);
  return s;
}

std::string nccl_unique_id() {
  ncclUniqueId id;
  check("ncclGetUniqueId", api("ncclGetUniqueId").GetUniqueId(&id));
  return std::string(id.internal, sizeof id.internal);
}

Communicator* open_nccl(const std::string& unique_id, int rank, int size, int local_rank, int local_size, double timeout_s) {
  ncclUniqueId id;
  if (unique_id.size() != sizeof id.internal) throw_range_error("[process group] the NCCL unique id must be ", sizeof id.internal, " bytes, got ", unique_id.size());
  std::memcpy(id.internal, unique_id.data(), sizeof id.internal);
  auto* c = new NcclCommunicator(rank, size, local_rank, local_size);
  c->open(id, timeout_s);
  return c;
}

#endif  // VWLMM_HAVE_NCCL

}  // namespace vw::dist
