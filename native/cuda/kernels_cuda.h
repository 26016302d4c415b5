// CUDA implementations of the fused vocabulary kernels (float32 or bfloat16 inputs, float32 weight
// gradients, cuBLAS GEMMs + row-pass kernels). Each returns KernelStats, throws vw::Error on bad arguments
// or CUDA failures, and synchronises its stream before returning; see native/core/kernels.h for the
// argument contracts. Pointers are device pointers except row_loss (host).
#pragma once
#include "../core/kernels.h"

namespace vw::cuda {

KernelStats linear_cross_entropy_cuda(const LinearCrossEntropyArgs& a);
KernelStats visual_word_kl_cuda(const VisualWordKLArgs& a);
KernelStats visual_words_cuda(const VisualWordsArgs& a);
KernelStats pseudo_image_features_cuda(const PseudoImageFeaturesArgs& a);
KernelStats pseudo_image_features_backward_cuda(const PseudoImageFeaturesArgs& a);

// Row-major C[M,N] = op(A) op(B) (float32 C, A and B float32 or both bfloat16) on the kernels' stream,
// synchronised: the GEMM ceiling the benchmarks compare the fused kernels against.
void gemm_cuda(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const void* A, const void* B, float* C,
               DType ab_type);

}  // namespace vw::cuda
