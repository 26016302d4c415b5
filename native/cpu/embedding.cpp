// Token embedding: a row gather and its scatter-add adjoint (the shared row kernels are in rows.cpp).
//   forward:  Y[i, :] = W[ids[i], :]          ids i32 [n] in [0, V), W [V, D], Y [n, D]
//   backward: dW[ids[i], :] += dY[i, :]       (dY/dW is a 0/1 selection, so the vector-Jacobian product
//             adds each dY row to the row it came from; repeated ids sum, deterministically, see rows.cpp)
#include "work_split.h"
#include "ops_cpu.h"

namespace vw::cpu {

void embedding_forward_cpu(const OpCall& c) {
  const int64_t n = size_arg(c, 0, "n"), V = size_arg(c, 1, "V"), D = size_arg(c, 2, "D");
  const int32_t* ids = c.in_i32(0, n, "ids");
  const float* w = c.in_f32(1, numel(c, {V, D}), "W");
  float* y = c.out_f32(0, numel(c, {n, D}), "Y");
  check_row_ids(c, ids, n, V, "ids");
  gather_rows_f32(w, ids, y, n, D);
}

void embedding_backward_cpu(const OpCall& c) {
  const int64_t n = size_arg(c, 0, "n"), V = size_arg(c, 1, "V"), D = size_arg(c, 2, "D");
  const int32_t* ids = c.in_i32(0, n, "ids");
  const float* dy = c.in_f32(1, numel(c, {n, D}), "dY");
  float* dw = c.out_f32(0, numel(c, {V, D}), "dW");
  check_row_ids(c, ids, n, V, "ids");
  scatter_add_rows_f32(dy, ids, dw, V, n, D);
}

}  // namespace vw::cpu
