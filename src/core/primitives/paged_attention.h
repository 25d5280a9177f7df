// Primitive of fast::paged_attention: attention of a batch of rows whose keys and values live in
// fixed-size blocks of a shared pool, each row reading its own blocks through a block table
// (paged KV cache, continuous batching). Kernels in backend/{cpu,cuda}/paged_attention*.
#pragma once

#include <tuple>
#include <vector>

#include "core/primitive.h"

namespace ingot {

/// Inputs {q [B, H, L, D], k [B, Hkv, L, D], v [B, Hkv, L, D], k_pool [N, Hkv, P, D], v_pool
/// [N, Hkv, P, D], block_table [B, M] int32, q_pos [B] int32[, padding [B] int32]}; outputs
/// {o [B, H, L, D],
/// k_pool', v_pool'}. Query i of row b is at position p = q_pos[b] + i; p < 0 or
/// i < padding[b] marks a padding query (its key/value are not written, its output is zeros). First
/// the new keys/values are written (position p of row b: block block_table[b][p / P], slot p % P),
/// then each query attends to its row's positions (p - window, p] (window 0: [0, p]) with softmax
/// in float32 (float64 for float64 inputs). The pools are donated to the outputs when nothing else
/// holds them. No VJP (a cache write).
class PagedAttention : public Primitive {
 public:
  PagedAttention(Stream s, float scale, int window, float softcap, bool has_padding)
      : Primitive(s),
        scale_(scale),
        window_(window),
        softcap_(softcap),
        has_padding_(has_padding) {}
  INGOT_MULTI_PRIMITIVE(PagedAttention)
  INGOT_EQUIVALENT(PagedAttention,
                   std::make_tuple(p->scale_, p->window_, p->softcap_, p->has_padding_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  void print(std::ostream& os) const override;

  const float scale_;
  const int window_;
  const float softcap_;
  const bool has_padding_;
};

}  // namespace ingot
