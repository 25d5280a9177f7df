// Host helper shared by the attention primitives' CUDA evaluations (fast_sdpa.cpp,
// fast_sdpa_bwd.cpp, fast_rope.cpp): the mask input's part of SdpaArgs.
#pragma once

#include "backend/cuda/fast_sdpa_kernels.h"
#include "core/array.h"
#include "core/primitives/fast.h"

namespace ingot::cu {

/// Mask m of kind `kind` (boolean or additive) into a (SdpaArgs or SdpaBwdArgs), right-aligned
/// against [B, H, L, S]: missing and size-1 axes broadcast (stride 0).
template <typename Args>
void set_sdpa_mask(Args& a, const Array& m, SdpaMask kind) {
  a.mask = m.raw_ptr();
  a.mask_dtype = m.dtype();
  a.mask_kind = kind == SdpaMask::boolean ? SdpaMaskKind::boolean : SdpaMaskKind::additive;
  const int nd = m.ndim();
  for (int i = 0; i < nd; ++i) a.m_st[4 - nd + i] = m.shape(i) == 1 ? 0 : m.strides()[i];
}

}  // namespace ingot::cu
