// CUDA engine ops (native/core/engine.h, engine_ops.def): one `<name>_cuda(const OpCall&)` per op the CUDA
// backend implements (all of them at present), registered by native/napi/addon_cuda.cc. Buffers are device
// pointers. Parameter checks and their messages are the CPU ops' (native/cpu/*.cpp), done on the host
// before the GPU is touched; data-dependent checks (ids, key masks) run on the device and are read back
// once per call. Every op runs on context().stream and synchronises it before returning.
// Dtypes: float32 for every op; bfloat16 as well (fp32 compute) in matmul, axpby, mul, activation_*,
// swiglu_*, rms_norm_* and attention_* (see the header of each native/cuda/engine/*.cu for which buffers).
#pragma once
#include "../core/engine.h"

namespace vw::cuda {

void matmul_cuda(const OpCall& c);
void sum_rows_cuda(const OpCall& c);
void embedding_forward_cuda(const OpCall& c);
void embedding_backward_cuda(const OpCall& c);
void rms_norm_forward_cuda(const OpCall& c);
void rms_norm_backward_cuda(const OpCall& c);
void layer_norm_forward_cuda(const OpCall& c);
void layer_norm_backward_cuda(const OpCall& c);
void rope_cuda(const OpCall& c);
void softmax_forward_cuda(const OpCall& c);
void softmax_backward_cuda(const OpCall& c);
void activation_forward_cuda(const OpCall& c);
void activation_backward_cuda(const OpCall& c);
void swiglu_forward_cuda(const OpCall& c);
void swiglu_backward_cuda(const OpCall& c);
void axpby_cuda(const OpCall& c);
void mul_cuda(const OpCall& c);
void add_broadcast_cuda(const OpCall& c);
void copy_2d_cuda(const OpCall& c);
void gather_rows_cuda(const OpCall& c);
void scatter_add_rows_cuda(const OpCall& c);
void im2col_cuda(const OpCall& c);
void attention_forward_cuda(const OpCall& c);
void attention_backward_cuda(const OpCall& c);
void adamw_step_cuda(const OpCall& c);
void sum_squares_cuda(const OpCall& c);
void fill_cuda(const OpCall& c);

}  // namespace vw::cuda
