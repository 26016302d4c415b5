// Parameters and buffers of matmul and sum_rows (native/core/ops.def), read and checked once for both
// backends, so the CPU and CUDA ops validate in the same order with the same messages.
#pragma once
#include <climits>
#include <cstdint>

#include "op_args.h"

namespace vw {

// C[b] (=|+=) alpha op(A[b]) op(B[b]) + bias[N], op(A[b]) [M, K], op(B[b]) [K, N]; batch b of a buffer starts
// at element b * stride. Dtypes: float32 throughout, or, where the backend takes bfloat16 (`bf16`), A and B
// bfloat16 with C bfloat16 or float32 and the bias float32 or bfloat16.
struct MatmulArgs {
  int64_t batch = 0, M = 0, N = 0, K = 0;
  bool trans_a = false, trans_b = false, has_bias = false, acc = false;
  int64_t sA = 0, sB = 0, sC = 0;  // batch strides in elements
  float alpha = 1.f;
  int64_t MN = 0;                  // M N
  DType t = DType::F32, t_bias = DType::F32, t_c = DType::F32;  // A and B, bias, C
  const void* A = nullptr;
  const void* B = nullptr;
  const void* bias = nullptr;      // null without hasBias
  void* C = nullptr;
  bool empty() const { return batch == 0 || MN == 0; }
};

// Elements a batched operand spans: batch blocks of `block` elements, `stride` apart.
inline int64_t batched_extent(const OpCall& c, int64_t batch, int64_t stride, int64_t block) {
  if (batch == 0 || block == 0) return 0;
  return add_elems(c, numel(c, {batch - 1, stride}), block);
}

// in [A, B, bias?] out [C], i [batch, M, N, K, transA, transB, hasBias, accumulate, strideA, strideB,
// strideC] f [alpha].
inline MatmulArgs read_matmul(const OpCall& c, bool bf16) {
  MatmulArgs a;
  a.batch = size_arg(c, 0, "batch"), a.M = size_arg(c, 1, "M"), a.N = size_arg(c, 2, "N"), a.K = size_arg(c, 3, "K");
  a.trans_a = flag_arg(c, 4, "transA"), a.trans_b = flag_arg(c, 5, "transB");
  a.has_bias = flag_arg(c, 6, "hasBias"), a.acc = flag_arg(c, 7, "accumulate");
  a.sA = size_arg(c, 8, "strideA"), a.sB = size_arg(c, 9, "strideB"), a.sC = size_arg(c, 10, "strideC");
  a.alpha = static_cast<float>(c.fp(0, "alpha"));
  for (int64_t d : {a.M, a.N, a.K})
    if (d > INT_MAX) throw_range_error("[", c.op, "] M, N and K must be <= ", INT_MAX, " (BLAS int), got ", d);
  a.MN = numel(c, {a.M, a.N});
  if (bf16) {
    a.t = float_type_of(c.in, 0);
    // bf16 products take a float32 or bf16 bias and write a bf16 or float32 C.
    if (a.t == DType::BF16) {
      a.t_bias = float_type_of(c.in, 2);
      a.t_c = !c.out.empty() && c.out[0].dtype == DType::F32 ? DType::F32 : DType::BF16;
    }
  }
  a.A = c.in_any(0, batched_extent(c, a.batch, a.sA, numel(c, {a.M, a.K})), a.t, "A");
  a.B = c.in_any(1, batched_extent(c, a.batch, a.sB, numel(c, {a.K, a.N})), a.t, "B");
  // a bias the flag says is absent would be dropped without a word (as attention refuses a keyMask without hasMask)
  if (!a.has_bias && c.has_in(2)) throw_type_error("[", c.op, "] bias is given but hasBias = 0");
  a.bias = a.has_bias ? c.in_any(2, a.N, a.t_bias, "bias") : nullptr;
  a.C = c.out_any(0, batched_extent(c, a.batch, a.sC, a.MN), a.t_c, "C");
  // With all three strides 0 no buffer bounds the batch count: every batch repeats one product into one C,
  // so batch = 2^32 would loop for minutes (or queue billions of launches). Such a call is never meaningful
  // (src/functional.ts skips empty products).
  if (!a.empty() && a.batch > 1 && a.sA == 0 && a.sB == 0 && a.sC == 0)
    throw_range_error("[", c.op, "] batch = ", a.batch, " with strideA = strideB = strideC = 0 repeats one product; pass batch = 1");
  return a;
}

// sum_rows: y[C] (=|+=) sum_r X[r, :]; in [X[R,C]] out [y[C]], i [R, C, accumulate].
struct SumRowsArgs {
  int64_t R = 0, C = 0;
  bool acc = false;
  const float* x = nullptr;
  float* y = nullptr;
};

inline SumRowsArgs read_sum_rows(const OpCall& c) {
  SumRowsArgs a;
  a.R = size_arg(c, 0, "R"), a.C = size_arg(c, 1, "C");
  a.acc = flag_arg(c, 2, "accumulate");
  a.x = c.in_f32(0, numel(c, {a.R, a.C}), "X");
  a.y = c.out_f32(0, a.C, "y");
  return a;
}

}  // namespace vw
