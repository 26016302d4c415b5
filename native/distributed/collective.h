// Collectives of a process group (src/distributed/process_group.ts), backend-neutral: their kinds and reductions, the
// one check of a call's buffers against the world size, and the Communicator a backend implements (MPI on the
// host: native/distributed/mpi_communicator.cpp; NCCL on the GPU: native/cuda/nccl_communicator.cu). The binding is
// native/napi/dist_napi.h, shared by both addons.
//
// Sizes, with `count` the elements of one rank's chunk:
//   all_reduce      in [count] -> out [count] (in == out: in place)
//   reduce_scatter  in [world * count] -> out [count] (rank r gets the reduction of chunk r)
//   all_gather      in [count] -> out [world * count] (chunk r is rank r's in)
//   broadcast       buffer [count] (in == out), root's values everywhere
// Collectives start in call order on a queue of their own (the communication "stream": a host thread for MPI,
// a CUDA stream for NCCL) and are waited for by handle; every rank must start the same ones in the same order.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "../core/dtype.h"
#include "../core/error.h"

namespace vw::dist {

// The integer values cross the C ABI of libvwlmm_mpi.so (mpi_api.h): append, never renumber.
enum class Collective : int32_t { all_reduce = 0, reduce_scatter = 1, all_gather = 2, broadcast = 3 };
enum class ReduceOp : int32_t { sum = 0, avg = 1, max = 2, min = 3 };
constexpr int kCollectiveCount = 4, kReduceOpCount = 4;

inline const char* collective_name(Collective c) {
  static const char* names[kCollectiveCount] = {"all_reduce", "reduce_scatter", "all_gather", "broadcast"};
  return names[static_cast<int>(c)];
}
inline const char* reduce_op_name(ReduceOp r) {
  static const char* names[kReduceOpCount] = {"sum", "avg", "max", "min"};
  return names[static_cast<int>(r)];
}
inline Collective collective_from_name(const std::string& s) {
  for (int k = 0; k < kCollectiveCount; ++k)
    if (s == collective_name(static_cast<Collective>(k))) return static_cast<Collective>(k);
  throw_type_error("[collective] unknown collective '", s, "' (expected all_reduce, reduce_scatter, all_gather or broadcast)");
}
inline ReduceOp reduce_op_from_name(const std::string& s, const char* where) {
  for (int k = 0; k < kReduceOpCount; ++k)
    if (s == reduce_op_name(static_cast<ReduceOp>(k))) return static_cast<ReduceOp>(k);
  throw_type_error("[", where, "] unknown reduction '", s, "' (expected sum, avg, max or min)");
}
inline bool reduces(Collective c) { return c == Collective::all_reduce || c == Collective::reduce_scatter; }

struct CollectiveArgs {
  Collective kind;
  const void* in;
  void* out;
  size_t count;  // elements of one rank's chunk
  DType dtype;
  ReduceOp op;  // all_reduce, reduce_scatter
  int root;     // broadcast
};

// Elements the input and output buffers must hold for `kind` at `count` over `world` ranks; refuses a product
// that overflows.
inline void collective_extents(Collective kind, size_t count, int world, size_t* in, size_t* out) {
  const char* name = collective_name(kind);
  if (world < 1) throw_range_error("[", name, "] world size ", world, " < 1");
  if (count > SIZE_MAX / 8 / static_cast<size_t>(world)) throw_range_error("[", name, "] count ", count, " x world ", world, " overflows");
  const size_t all = count * static_cast<size_t>(world);
  *in = kind == Collective::reduce_scatter ? all : count;
  *out = kind == Collective::all_gather ? all : count;
}

// The one check of a call: buffer sizes (bytes) against the extents, the root, the in-place rules.
inline void check_collective(const CollectiveArgs& a, size_t in_bytes, size_t out_bytes, int world) {
  const char* name = collective_name(a.kind);
  size_t in = 0, out = 0;
  collective_extents(a.kind, a.count, world, &in, &out);
  const size_t es = dtype_size(a.dtype);
  if (in_bytes < in * es)
    throw_range_error("[", name, "] the input holds ", in_bytes, " bytes but ", in, " ", dtype_name(a.dtype), " elements need ", in * es);
  if (out_bytes < out * es)
    throw_range_error("[", name, "] the output holds ", out_bytes, " bytes but ", out, " ", dtype_name(a.dtype), " elements need ", out * es);
  if (a.kind == Collective::broadcast && (a.root < 0 || a.root >= world)) throw_range_error("[broadcast] root ", a.root, " is not a rank of a world of ", world);
  if (a.kind == Collective::broadcast && a.in != a.out) throw_range_error("[broadcast] runs in place: input and output must be one buffer");
  // reduce_scatter / all_gather in place would read what the collective already wrote
  if ((a.kind == Collective::reduce_scatter || a.kind == Collective::all_gather) && a.in == a.out && a.count > 0 && world > 1)
    throw_range_error("[", name, "] input and output must be different buffers");
  if (reduces(a.kind) && a.dtype == DType::I32 && a.op == ReduceOp::avg) throw_type_error("[", name, "] avg of int32 is not defined: reduce float32");
}

// What wait() throws when a collective did not finish in time, or cannot finish any more (the group broke
// before it ran): its buffers may still be read or written, so the binding keeps them pinned for good.
struct CollectiveTimeout : Error {
  explicit CollectiveTimeout(const std::string& msg) : Error(ErrorKind::Runtime, msg) {}
};

// A process group's backend: started collectives run in order on its queue; wait() blocks the caller until one
// finished, at most timeout_s, and throws vw::Error naming what failed (a timeout's message counts waited_s too: the
// time its caller already spent polling test(), so that it names the group's whole deadline). After a timeout or a failure the group
// is broken: every later call throws the first failure (a collective left half-done cannot be resumed).
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual const char* backend() const = 0;
  virtual std::string library() const = 0;  // the MPI / NCCL library and version, for backendInfo and errors
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_rank() const = 0;
  virtual int local_size() const = 0;
  // The buffers are checked by the caller (check_collective) and kept alive until the handle is waited for.
  virtual uint64_t start(const CollectiveArgs& a) = 0;
  virtual bool test(uint64_t handle) = 0;
  virtual void wait(uint64_t handle, double timeout_s, double waited_s) = 0;
  // Waits for what is queued (timeout_s), then ends the backend (MPI_Finalize / ncclCommDestroy).
  virtual void finalize(double timeout_s) = 0;
};

}  // namespace vw::dist
