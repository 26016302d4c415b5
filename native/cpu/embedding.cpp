// Token embedding: a row gather and its scatter-add adjoint (the shared row kernels are in rows.cpp).
//   forward:  Y[i, :] = W[ids[i], :]          ids i32 [n] in [0, V), W [V, D], Y [n, D]
//   backward: dW[ids[i], :] += dY[i, :]       (dY/dW is a 0/1 selection, so the vector-Jacobian product
//             adds each dY row to the row it came from; repeated ids sum, deterministically, see rows.cpp)
#include "work_split.h"
#include "ops_cpu.h"

namespace vw::cpu {

void embedding_forward_cpu(const OpCall& c) { move_rows(c, read_embedding(c, false)); }
void embedding_backward_cpu(const OpCall& c) { move_rows(c, read_embedding(c, true)); }

}  // namespace vw::cpu
