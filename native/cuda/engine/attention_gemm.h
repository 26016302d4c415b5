// The 'gemm' attention kernel (attention_gemm.cu): attention_forward / attention_backward through cuBLAS
// batched GEMMs and row passes, picked per call by the backend's attention settings (ops_cuda.h).
#pragma once
#include "../../core/attention_args.h"
#include "../common.cuh"
#include "../ops_cuda.h"

namespace vw::cuda {

// Whether the settings send this call to the gemm kernel rather than the tiled ones (attention.cu): they ask for
// it, and the dtype and head size keep cuBLAS's pointer alignment (attention_gemm.cu).
bool attention_uses_gemm(const AttentionDims& d, DType t);

// io as read by attention.cu (dtypes checked, key mask values checked on the device); d.q_elems > 0 forward,
// d.B * d.Hkv > 0 backward.
void attention_forward_gemm(const char* op, const Context& ctx, const AttentionDims& d, const AttentionTensors<void>& io);
void attention_backward_gemm(const char* op, const Context& ctx, const AttentionDims& d, const AttentionTensors<void>& io);

}  // namespace vw::cuda
