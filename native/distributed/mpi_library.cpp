// libvwlmm_mpi.so: the collectives of native/distributed/collective.h on MPI (the C interface: mpi_api.h). Built only
// where CMake finds MPI (apt install libopenmpi-dev); the CPU addon dlopens it, so nothing else links MPI.
// Errors come back as MPI's own message (MPI_ERRORS_RETURN on the world communicator), never as an abort.
// The C API only (mpi.h would pull in the deprecated C++ bindings, and a dependency on libmpi_cxx).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <dlfcn.h>

#include <climits>
#include <cstdio>
#include <cstring>

#include "../core/bf16.h"
#include "../core/dtype.h"
#include "collective.h"
#include "mpi_api.h"

namespace {

using vw::DType;
using vw::dist::Collective;
using vw::dist::ReduceOp;

// MPI counts are int: all_reduce and broadcast go in pieces of at most this many elements; a reduce_scatter or
// all_gather chunk larger than it is refused.
constexpr unsigned long long kMaxPiece = 1ull << 30;

int fail(char* err, size_t n, const char* what, int rc) {
  char s[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  if (rc != MPI_SUCCESS) MPI_Error_string(rc, s, &len);
  std::snprintf(err, n, "%s%s%s", what, rc != MPI_SUCCESS ? ": " : "", s);
  return 1;
}

// bfloat16 has no MPI type: it travels as 16-bit words and reduces through these operations, which widen to
// float32 and round the result back (as NCCL's bf16 reductions do at every partial sum).
template <int kOp>
void bf16_reduce(void* in, void* inout, int* len, MPI_Datatype*) {
  const uint16_t* a = static_cast<const uint16_t*>(in);
  uint16_t* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) {
    const float x = vw::f32_from_bf16(a[i]), y = vw::f32_from_bf16(b[i]);
    const float r = kOp == 0 ? x + y : kOp == 2 ? (x > y || x != x ? x : y) : (x < y || x != x ? x : y);
    b[i] = vw::bf16_from_f32(r);
  }
}
MPI_Op g_bf16_ops[3] = {MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL};  // sum, max, min

MPI_Datatype mpi_type(int dtype) {
  switch (static_cast<DType>(dtype)) {
    case DType::F32: return MPI_FLOAT;
    case DType::I32: return MPI_INT32_T;
    case DType::BF16: return MPI_UINT16_T;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op mpi_op(int dtype, int op) {
  const ReduceOp r = static_cast<ReduceOp>(op);
  if (static_cast<DType>(dtype) == DType::BF16) return g_bf16_ops[r == ReduceOp::max ? 1 : r == ReduceOp::min ? 2 : 0];
  return r == ReduceOp::max ? MPI_MAX : r == ReduceOp::min ? MPI_MIN : MPI_SUM;  // avg: a sum, divided below
}

// avg = sum / world, on the finished output.
void divide(void* out, unsigned long long n, int dtype, int world) {
  if (static_cast<DType>(dtype) == DType::F32) {
    float* p = static_cast<float*>(out);
    const float s = 1.0f / static_cast<float>(world);
    for (unsigned long long i = 0; i < n; ++i) p[i] *= s;
  } else if (static_cast<DType>(dtype) == DType::BF16) {
    uint16_t* p = static_cast<uint16_t*>(out);
    for (unsigned long long i = 0; i < n; ++i) p[i] = vw::bf16_from_f32(vw::f32_from_bf16(p[i]) / static_cast<float>(world));
  }
}

// MPI_Get_library_version up to its first line break or comma ("Open MPI v4.1.4, package: ..." -> "Open MPI v4.1.4").
void library_version(char* out, size_t n) {
  char version[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int len = 0;
  MPI_Get_library_version(version, &len);
  const char* nl = std::strpbrk(version, "\n,");
  const size_t keep = nl ? static_cast<size_t>(nl - version) : std::strlen(version);
  std::snprintf(out, n, "%.*s", static_cast<int>(keep), version);
}

void describe(char* version, size_t versionlen, char* path, size_t pathlen) {
  library_version(version, versionlen);
  // MPI_Init's address (through the GOT: libmpi's own) names the libmpi the dynamic loader picked
  Dl_info info{};
  const bool found = dladdr(reinterpret_cast<void*>(&MPI_Init), &info) != 0 && info.dli_fname;
  std::snprintf(path, pathlen, "%s", found ? info.dli_fname : "");
}

int init(VwMpiWorld* w, char* err, size_t n) {
  int inited = 0, rc = MPI_Initialized(&inited);
  if (rc != MPI_SUCCESS) return fail(err, n, "MPI_Initialized", rc);
  if (!inited) {
    int provided = 0;
    rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return fail(err, n, "MPI_Init_thread", rc);
    if (provided < MPI_THREAD_FUNNELED) return fail(err, n, "MPI_Init_thread: the MPI library does not provide MPI_THREAD_FUNNELED", MPI_SUCCESS);
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  if ((rc = MPI_Comm_rank(MPI_COMM_WORLD, &w->rank)) != MPI_SUCCESS) return fail(err, n, "MPI_Comm_rank", rc);
  if ((rc = MPI_Comm_size(MPI_COMM_WORLD, &w->size)) != MPI_SUCCESS) return fail(err, n, "MPI_Comm_size", rc);
  MPI_Comm local;
  if ((rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL, &local)) != MPI_SUCCESS)
    return fail(err, n, "MPI_Comm_split_type", rc);
  MPI_Comm_rank(local, &w->local_rank);
  MPI_Comm_size(local, &w->local_size);
  MPI_Comm_free(&local);
  library_version(w->library, sizeof w->library);
  if (g_bf16_ops[0] == MPI_OP_NULL) {
    MPI_Op_create(&bf16_reduce<0>, 1, &g_bf16_ops[0]);
    MPI_Op_create(&bf16_reduce<2>, 1, &g_bf16_ops[1]);
    MPI_Op_create(&bf16_reduce<3>, 1, &g_bf16_ops[2]);
  }
  return 0;
}

int run(const VwMpiCall* c, char* err, size_t n) {
  const Collective kind = static_cast<Collective>(c->kind);
  const MPI_Datatype type = mpi_type(c->dtype);
  if (type == MPI_DATATYPE_NULL) return fail(err, n, "unknown dtype", MPI_SUCCESS);
  const size_t es = vw::dtype_size(static_cast<DType>(c->dtype));
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  int rc = MPI_SUCCESS;
  switch (kind) {
    case Collective::all_reduce:
    case Collective::broadcast:
      for (unsigned long long at = 0; at < c->count && rc == MPI_SUCCESS; at += kMaxPiece) {
        const int len = static_cast<int>(c->count - at < kMaxPiece ? c->count - at : kMaxPiece);
        char* out = static_cast<char*>(c->out) + at * es;
        if (kind == Collective::broadcast) {
          rc = MPI_Bcast(out, len, type, c->root, MPI_COMM_WORLD);
        } else {
          const void* in = c->in == c->out ? MPI_IN_PLACE : static_cast<const char*>(c->in) + at * es;
          rc = MPI_Allreduce(in, out, len, type, mpi_op(c->dtype, c->op), MPI_COMM_WORLD);
        }
      }
      break;
    case Collective::reduce_scatter:
    case Collective::all_gather:
      if (c->count > static_cast<unsigned long long>(INT_MAX)) return fail(err, n, "a chunk of more than 2^31 - 1 elements exceeds MPI's int count", MPI_SUCCESS);
      rc = kind == Collective::reduce_scatter
               ? MPI_Reduce_scatter_block(c->in, c->out, static_cast<int>(c->count), type, mpi_op(c->dtype, c->op), MPI_COMM_WORLD)
               : MPI_Allgather(c->in, static_cast<int>(c->count), type, c->out, static_cast<int>(c->count), type, MPI_COMM_WORLD);
      break;
    default:
      return fail(err, n, "unknown collective", MPI_SUCCESS);
  }
  if (rc != MPI_SUCCESS) return fail(err, n, vw::dist::collective_name(kind), rc);
  if (vw::dist::reduces(kind) && static_cast<ReduceOp>(c->op) == ReduceOp::avg) divide(c->out, c->count, c->dtype, world);
  return 0;
}

int finalize(char* err, size_t n) {
  int done = 0;
  MPI_Finalized(&done);
  if (done) return 0;
  for (MPI_Op& op : g_bf16_ops)
    if (op != MPI_OP_NULL) MPI_Op_free(&op);
  const int rc = MPI_Finalize();
  return rc == MPI_SUCCESS ? 0 : fail(err, n, "MPI_Finalize", rc);
}

}  // namespace

extern "C" const VwMpiApi* vwlmm_mpi_api(void) {
  static const VwMpiApi api = {VWLMM_MPI_ABI, init, run, finalize, describe};
  return &api;
}
