// CPU implementations of the fused vocabulary kernels (float32, all cores). Each returns KernelStats and
// throws vw::Error on bad arguments; see native/core/kernels.h for the argument contracts.
#pragma once
#include "../core/kernels.h"

namespace vw::cpu {

KernelStats linear_cross_entropy_cpu(const LinearCrossEntropyArgs& a);
KernelStats visual_word_kl_cpu(const VisualWordKLArgs& a);
KernelStats visual_words_cpu(const VisualWordsArgs& a);
KernelStats pseudo_image_features_cpu(const PseudoImageFeaturesArgs& a);
KernelStats pseudo_image_features_backward_cpu(const PseudoImageFeaturesArgs& a);

}  // namespace vw::cpu
