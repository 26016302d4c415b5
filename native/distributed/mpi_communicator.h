// The MPI backend of a process group on the host (Communicator, collective.h), in the CPU addon.
#pragma once
#include <string>

#include "collective.h"

namespace vw::dist {

// Loads libvwlmm_mpi.so from `library` (dlopen), starts the communication thread and initialises MPI on it
// (MPI_THREAD_FUNNELED: that thread makes every MPI call). Throws vw::Error naming what is missing.
// Never freed: the thread may still be blocked in MPI when the process exits.
Communicator* open_mpi(const std::string& library, double timeout_s);

// What backendInfo().cpu.mpi reports of `library` (a libvwlmm_mpi.so path): whether the file is there, whether it
// loads with the MPI it was linked against (the load stays, as open_mpi would make it), and which MPI that is; or
// why not, in the words open_mpi would throw.
struct MpiStatus {
  bool built = false;      // the file is there
  bool available = false;  // it loaded
  std::string version;     // MPI_Get_library_version, first line ("Open MPI v4.1.4")
  std::string mpi_path;    // the libmpi the dynamic loader picked
  std::string reason;      // why not available
};
MpiStatus mpi_status(const std::string& library);

}  // namespace vw::dist
