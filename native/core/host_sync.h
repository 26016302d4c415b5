// Host synchronisations: the points where the host waits for a value a backend computed. Counted per addon
// (each .node has its own counter), read by JS as hostSyncs(): a training step should wait once, for the
// logged numbers (tests/train/host_syncs.test.ts). Counted:
//   - NativeBuffer.read (every backend: on CUDA a device-to-host copy the host waits for; on the CPU the
//     point where it would, so the CPU run checks the orchestration in CI);
//   - on CUDA, every stream synchronisation inside an op (native/cuda/common.cu wait_stream), a wait for a staging
//     chunk (upload_staged) and, in async mode, an upload too large to stage (a synchronous copy).
#pragma once
#include <atomic>
#include <cstdint>

namespace vw {

inline std::atomic<int64_t>& host_sync_counter() {
  static std::atomic<int64_t> n{0};
  return n;
}
inline void count_host_sync() { host_sync_counter().fetch_add(1, std::memory_order_relaxed); }

}  // namespace vw
