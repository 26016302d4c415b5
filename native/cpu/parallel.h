// The CPU kernels' one thread pool (the row passes, attention, and the GEMMs' tiles). Between jobs its threads spin
// for up to VWLMM_SPIN_US microseconds (500 by default), then sleep on a condition variable.
#pragma once
#include <cstdint>
#include <functional>

namespace vw::cpu {

// Number of threads used by parallel_for: VWLMM_NUM_THREADS if set, else the CPUs this process may run on (its
// affinity mask: one per core under mpirun's default binding of 2 ranks).
int num_threads();

// Calls fn(begin, end) on disjoint ranges covering [0, n), in parallel, and returns when all are done.
// Ranges hold at least `grain` items. Exceptions thrown by fn are rethrown on the calling thread.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// Like parallel_for, but the split is fixed by (n, grain, num_threads()) and fn also receives the part
// index in [0, parts): per-part partial sums merged in part order give run-to-run identical results.
// Returns the number of parts.
int64_t parallel_parts(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int64_t)>& fn);

}  // namespace vw::cpu
