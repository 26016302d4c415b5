// The CUDA backend of the op table (native/core/ops.def): one `<name>_cuda(const OpCall&)` per row, in
// native/cuda/<op>.cu (fused vocabulary ops) and native/cuda/engine/*.cu; a missing one fails to link.
// Buffers are device pointers. Parameters are read with the backend-neutral readers of native/core, on the
// host, before the GPU is touched; data-dependent checks (ids, key masks) run on the device.
// Ops only enqueue work on context().stream: run_op() (below, in this file) is the one place that
// decides when the host waits for it and how asynchronous faults are reported.
#pragma once
#include <cstdint>
#include <string>
#include "../core/error_flags.h"
#include "../core/fused_args.h"
#include "../core/op.h"

namespace vw::cuda {

#define VW_OP(name, ...) void name##_cuda(const OpCall& c);
#include "../core/ops.def"
#undef VW_OP

// Row-major C[M,N] = op(A) op(B) (float32 C, A and B float32 or both bfloat16) on the ops' stream,
// synchronised: the GEMM ceiling the benchmarks compare the fused ops against.
void gemm_cuda(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const void* A, const void* B, float* C,
               DType ab_type);

// Which attention kernels run attention_forward / attention_backward (as torch.backends.cuda picks an SDPA
// backend): Tiled, the flash-style CUDA-core kernels of engine/attention.cu; Gemm, cuBLAS batched GEMMs on tensor
// cores with a softmax row pass between them, in query chunks that fit workspace_bytes (engine/attention_gemm.cu);
// Auto, Tiled until Gemm has run on a GPU. VWLMM_CUDA_ATTENTION (tiled | gemm) sets the starting kernel.
enum class AttentionKernel { Auto, Tiled, Gemm };
struct AttentionSettings {
  AttentionKernel kernel = AttentionKernel::Auto;
  int64_t workspace_bytes = int64_t{64} << 20;  // the gemm kernel's score blocks (it takes at least 16 query rows)
};
AttentionSettings attention_settings();
AttentionSettings set_attention_settings(const AttentionSettings& s);  // returns the previous settings
int64_t attention_gemm_calls();  // attention calls (forward or backward) the gemm kernel has run in this process
const char* attention_kernel_name(AttentionKernel k);
// 'auto' | 'tiled' | 'gemm' to the kernel; false for any other name.
bool attention_kernel_from_name(const char* name, AttentionKernel& k);

// The error flags (native/core/error_flags.h) at a NativeBuffer read: the copy of the device's flags
// enqueued before the read (whose wait covers it), the first failure raised after it. synchronize(): waits
// for the ops' stream and raises.
void flags_before_read();
void flags_after_read();
void synchronize();

// Async mode's host -> device copy (NativeBuffer.write): the data is copied into a pinned staging chunk and sent on
// the ops' stream, so the host does not wait for the transfer. False when it is not staged (larger than a chunk):
// the caller copies synchronously.
bool upload_staged(void* dst, const void* src, size_t bytes);

// CUDA graphs of op programs (GraphHooks of native/napi/buffer.h; native/cuda/common.cu says how).
bool graph_begin(std::string* why);
void* graph_end(std::string* why);
void graph_launch(void* graph);
void graph_wait(void* graph);
void graph_destroy(void* graph);
size_t graph_nodes(void* graph);
void graph_upload(void* dst, const void* pinned_src, size_t n);
void graph_zero(void* dst, size_t n);
void* pinned_alloc(size_t n);
void pinned_free(void* p);

// Runs op `fn` and then waits for the stream, so that a fault is reported by the op that caused it (the
// launch path of every op; the binding registers run_op<name##_cuda>).
void finish_op(const char* op);
template <OpFn F>
void run_op(const OpCall& c) {
  try {
    F(c);
  } catch (...) {
    // In sync mode nothing else is pending: the op's own checks give way to the error it raised.
    if (!error_flags().async()) error_flags().clear();
    throw;
  }
  finish_op(c.op);
}

}  // namespace vw::cuda
