// The MPI backend of a process group on the host (Communicator, collective.h), in the CPU addon.
#pragma once
#include <string>

#include "collective.h"

namespace vw::dist {

// Loads libvwlmm_mpi.so from `library` (dlopen), starts the communication thread and initialises MPI on it
// (MPI_THREAD_FUNNELED: that thread makes every MPI call). Throws vw::Error naming what is missing.
// Never freed: the thread may still be blocked in MPI when the process exits.
Communicator* open_mpi(const std::string& library, double timeout_s);

}  // namespace vw::dist
