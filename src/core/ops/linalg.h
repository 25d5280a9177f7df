// Linear algebra: matmul with NumPy batch broadcasting.
#pragma once

#include "core/array.h"

namespace ingot {

/// a @ b. 1-d operands are promoted as NumPy does (and the added axis removed); batch
/// dimensions broadcast. float32/float64 through BLAS, bfloat16/float16 through ingot's own
/// kernels (float32 accumulation); integer inputs are rejected.
Array matmul(const Array& a, const Array& b, StreamOrDevice s = {});

/// c * beta + (a @ b) * alpha, with c broadcast to the result (a fused bias add).
Array addmm(const Array& c, const Array& a, const Array& b, float alpha = 1.0f, float beta = 1.0f,
            StreamOrDevice s = {});

/// c + (a @ b) with the product rounded to the result dtype before the add, exactly as
/// add(c, matmul(a, b)) computes it (a residual connection after a projection), in one pass
/// where the backend can (the CUDA GEMV of a few rows adds it in its epilogue).
Array add_matmul(const Array& c, const Array& a, const Array& b, StreamOrDevice s = {});

}  // namespace ingot
