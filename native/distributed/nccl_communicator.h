// The NCCL backend of a process group on the GPU (Communicator, collective.h), in the CUDA addon. NCCL itself is
// loaded with dlopen on first use (libnccl.so.2: VWLMM_NCCL_LIBRARY, the loader's path, or the build's
// VWLMM_NCCL_ROOT), so the addon loads and runs single-GPU work on a machine without NCCL; compiled against the
// nvidia-nccl wheel's nccl.h where the build found it (VWLMM_HAVE_NCCL), else every call says it was not.
#pragma once
#include <cstdint>
#include <string>

#include "collective.h"

namespace vw::dist {

// What backendInfo().cuda.nccl reports: compiled in, the library found (its path and version), or why not.
struct NcclStatus {
  bool compiled = false;
  bool available = false;
  std::string library, version, reason;
};
NcclStatus nccl_status();

// ncclGetUniqueId: rank 0's id of a new communicator (128 bytes), for the rendezvous to hand out.
std::string nccl_unique_id();

// ncclCommInitRank (non-blocking, polled until timeout_s; aborted past it) on the current device, collectives on a
// stream of their own ordered after the ops' stream with events. Never freed (see dist_napi.h).
Communicator* open_nccl(const std::string& unique_id, int rank, int size, int local_rank, int local_size, double timeout_s);

}  // namespace vw::dist
