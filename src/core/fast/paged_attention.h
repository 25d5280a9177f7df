// fast::paged_attention: attention over a paged KV cache (a pool of fixed-size key/value blocks
// shared by the rows of a batch, each row reading its blocks through a block table), with the
// new keys/values of the call written into the pool first. Used by llm::PagedKvCache.
#pragma once

#include <optional>
#include <vector>

#include "core/array.h"

namespace ingot::fast {

struct PagedAttentionOptions {
  float scale = 1.0f;
  /// Sliding window: the query at position p sees positions (p - window, p]; 0 = all of [0, p].
  int window = 0;
  /// tanh soft cap of the logits: cap * tanh(logits / cap); 0 = none.
  float softcap = 0.0f;
  /// int32 [B]: the first padding[b] queries of row b are padding (not written, zero output),
  /// whatever their positions (left-padded rows that start after a cached prefix).
  std::optional<Array> padding;
};

/// q [B, H, L, D], k and v [B, Hkv, L, D] (H a multiple of Hkv), k_pool and v_pool
/// [N, Hkv, P, D] (N blocks of P positions, q's dtype), block_table [B, M] int32 (row b's
/// position t lives in block block_table[b][t / P] at slot t % P), q_pos [B] int32 (query i of
/// row b is at position q_pos[b] + i; negative positions are padding: not written, zero output;
/// so are the first opt.padding[b] queries).
/// Returns {o [B, H, L, D], k_pool', v_pool'}: the pools with the new keys/values written, and
/// softmax(q k^T * scale) v over each query's positions (causal, window, softcap) read through
/// the table. A position's block must be in [0, N); tables are checked when evaluated.
std::vector<Array> paged_attention(const Array& q, const Array& k, const Array& v,
                                   const Array& k_pool, const Array& v_pool,
                                   const Array& block_table, const Array& q_pos,
                                   const PagedAttentionOptions& opt = {}, StreamOrDevice s = {});

}  // namespace ingot::fast
