// The C interface of libvwlmm_mpi.so (native/distributed/mpi_library.cpp), the one file linked against MPI. The CPU
// addon loads it with dlopen when a process group asks for MPI, so the addon itself (and its prebuilt binary)
// needs no MPI library to load, and a machine without OpenMPI gets a clear error instead of a failed require.
// Only the thread that called init may call the others (MPI_THREAD_FUNNELED: the communicator's own thread).
#pragma once
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VWLMM_MPI_ABI 2

typedef struct {
  int rank, size, local_rank, local_size;
  char library[256];  // MPI_Get_library_version, first line
} VwMpiWorld;

typedef struct {
  int kind;  // vw::dist::Collective
  const void* in;
  void* out;
  unsigned long long count;  // elements of one rank's chunk
  int dtype;                 // vw::DType
  int op;                    // vw::dist::ReduceOp
  int root;
} VwMpiCall;

typedef struct {
  int abi;  // VWLMM_MPI_ABI
  // Each returns 0, or non-zero with a message in err (size errlen).
  int (*init)(VwMpiWorld* world, char* err, size_t errlen);
  int (*run)(const VwMpiCall* call, char* err, size_t errlen);
  int (*finalize)(char* err, size_t errlen);
  // Any time before init (MPI_Get_library_version may precede MPI_Init): the MPI library's version (first line)
  // and the file it was loaded from, for backendInfo().cpu.mpi.
  void (*describe)(char* version, size_t versionlen, char* path, size_t pathlen);
} VwMpiApi;

// The symbol the addon looks up.
const VwMpiApi* vwlmm_mpi_api(void);

#ifdef __cplusplus
}
#endif
