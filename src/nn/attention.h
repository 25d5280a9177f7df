// Multi-head attention block with grouped-query heads, optional q/k RMSNorm (Qwen3, Gemma3),
// rotary embeddings, sliding window and logit softcap, on fast:: ops. Parameter names follow
// Hugging Face: q_proj, k_proj, v_proj, o_proj, q_norm, k_norm.
#pragma once

#include <optional>
#include <vector>

#include "core/fast/fast.h"
#include "nn/layers.h"

namespace ingot::nn {

/// Shape and behaviour of an attention block.
struct AttentionConfig {
  int64_t dims = 0;    // E
  int n_heads = 0;     // H
  int n_kv_heads = 0;  // Hkv
  int head_dim = 0;    // D
  bool qkv_bias = false;
  bool o_bias = false;
  /// RMSNorm over D applied to q and k before rotary (Qwen3, Gemma3).
  std::optional<RMSNormOptions> qk_norm;
  /// Rotary: features rotated (default D), base, layout, position scale, custom inverse
  /// frequencies (e.g. Llama 3 scaled).
  int rope_dims = 0;
  float rope_base = 10000.0f;
  bool rope_traditional = false;
  float rope_scale = 1.0f;
  std::optional<Array> rope_freqs;
  /// Softmax scale (default D^-0.5).
  float scale = 0.0f;
  /// Sliding window (0 = global) and logit softcap (0 = none).
  int window = 0;
  float softcap = 0.0f;
  Dtype dtype = float32;
};

/// Key/value storage an attention block appends to (implemented by llm's KV caches).
class KVCache {
 public:
  virtual ~KVCache() = default;
  /// Appends k, v [B, Hkv, L, D] and returns all keys/values to attend over [B, Hkv, S, D].
  virtual std::pair<Array, Array> update_and_fetch(const Array& k, const Array& v) = 0;
  /// Position of the next token (before update_and_fetch).
  virtual int64_t offset() const = 0;
  /// Mask for the keys returned by the last update, or nothing to use causal masking.
  virtual std::optional<Array> mask(int64_t query_len) const { return std::nullopt; }
  /// Caches of fixed-size buffers written at a column held in a device array return true with
  /// their key and value buffers [B, Hkv, C, D] and that column: the attention block then
  /// writes the new keys and values itself (fast::rope_kv_update, one kernel with the q/k
  /// norms and rotary) and hands the updated buffers back through set_fixed() instead of
  /// calling update_and_fetch(). false (the default): use update_and_fetch().
  virtual bool fixed(Array* keys, Array* values, Array* column) const { return false; }
  /// The buffers after a fused update (see fixed()).
  virtual void set_fixed(Array keys, Array values) {}
  /// Growing caches that can take the next columns written in place by the attention block
  /// (fast::rope_kv_update, as for fixed()): makes room for kv_shape[2] new columns of keys and
  /// values of shape kv_shape [B, Hkv, L, D] and gives the buffers [B, Hkv, C, D] and the first
  /// new column (an int32 array of one element); the block then hands the written buffers to
  /// finish_append(). false (the default): use update_and_fetch().
  virtual bool prepare_append(const Shape& kv_shape, Dtype dtype, Device device, Array* keys,
                              Array* values, Array* column) {
    return false;
  }
  /// After prepare_append() and the write of `l` columns: keeps the buffers and returns the
  /// keys and values to attend over, as update_and_fetch() would.
  virtual std::pair<Array, Array> finish_append(Array keys, Array values, int64_t l) {
    raise("[attention] internal: finish_append without prepare_append");
  }
  /// Caches that compute the attention themselves (a paged cache: keys/values in blocks of a
  /// pool, read through per-row block tables) return true: the block then projects q, k, v
  /// [B, H(kv), L, D] (norms, rotary at AttentionInputs::offsets) without update_and_fetch()
  /// and calls attend() instead of scaled_dot_product_attention. false (the default): no.
  virtual bool attends() const { return false; }
  /// Stores k, v and returns softmax(q k^T * scale) v [B, H, L, D] over each row's cached
  /// positions and the new ones (causal; `window` and `softcap` as in fast::SdpaOptions).
  virtual Array attend(const Array& q, const Array& k, const Array& v, float scale, int window,
                       float softcap) {
    raise("[attention] internal: attend on a cache that does not attend");
  }
};

/// Per-call inputs of an attention block.
struct AttentionInputs {
  /// Position of the first query row (ignored when a cache is given: its offset is used).
  int64_t offset = 0;
  /// Per-row positions [B] (left-padded batches); overrides offset.
  std::optional<Array> offsets;
  /// Additive or boolean mask broadcastable to [B, H, L, S]; absent = causal.
  std::optional<Array> mask;
  KVCache* cache = nullptr;
  /// Only the last `queries` query rows are computed (0 = all): keys and values (and the cache)
  /// still take every row of x, the output is [B, queries, E] and a residual passed to
  /// operator()/normed() must have that shape (query_rows(x, in)). With `starts`: 0 or 1, and
  /// 1 keeps the last row of each sequence (rows starts[s + 1] - 1): the output is [1, N, E].
  int64_t queries = 0;
  /// A packed batch when set: x is [1, T, E], N sequences back to back without padding, and
  /// sequence s is rows [starts[s], starts[s + 1]) (starts[0] = 0, the last entry T, every
  /// sequence at least one row). Row i of a sequence is at position P + i and attends to the
  /// prefix's P columns and its own earlier rows only (fast::packed_attention). No cache, mask
  /// or offsets; offset is ignored. Needs Attention::packs().
  const std::vector<int64_t>* starts = nullptr;
  /// Packed batches: keys and values [1, Hkv, P, D] of a shared prefix every sequence
  /// continues, as a cache holds them (normalised and rotated at positions 0..P-1); both or
  /// neither.
  std::optional<Array> prefix_keys, prefix_values;
};

/// Most rows x may have for Attention::decode_block (the fused decoder block of a decode step).
constexpr int64_t kDecodeBlockMaxRows = 1;
/// Overrides INGOT_DECODE_BLOCK ("1": on; off by default) for Attention::decode_block; nullopt
/// restores the environment's setting (for tests).
void set_decode_block(std::optional<bool> on);
/// How many times Attention::decode_block has built the fused block (tests check it is taken).
int64_t decode_blocks_built();

class GatedMLP;

/// The last n positions of x [B, L, ...] (all of x when n is 0 or L).
Array last_rows(const Array& x, int64_t n);
/// The rows of x [B, L, ...] an attention block with inputs `in` outputs: last_rows(x,
/// in.queries), or for a packed batch with in.queries == 1 the last row of each sequence
/// ([1, N, ...]).
Array query_rows(const Array& x, const AttentionInputs& in);

/// The attention block.
class Attention : public Module {
 public:
  explicit Attention(AttentionConfig cfg);
  /// x [B, L, E] -> [B, L, E].
  Array operator()(const Array& x, const AttentionInputs& in = {}) const;
  /// residual + (*this)(x, in), the add fused into the output projection (Linear::add_to).
  Array operator()(const Array& x, const AttentionInputs& in, const Array& residual) const;
  /// residual + (*this)(norm(x), in) (no add without a residual), with the norm fused into
  /// the q/k/v product where the stack allows (StackedLinear::normed_product).
  Array normed(const Array& x, const RMSNorm& norm, const AttentionInputs& in,
               const Array* residual) const;
  /// {x, (*this)(norm(x), in)} for x = post.add_to(residual, delta) (the previous Gemma3
  /// block's last post-norm and residual add), with that add, the norm and the q/k/v product as
  /// one primitive (fast::rms_norm_add_linear: one GEMV for a few rows on the GPU), or nullopt
  /// unless: INGOT_NORM_ADD_QKV=1 (opt-in), on a CUDA device outside gradient transforms, not a
  /// packed batch, a dense q/k/v stack (no quantization, no branches).
  std::optional<std::pair<Array, Array>> add_normed(const Array& residual, const Array& delta,
                                                    const RMSNorm& post, const RMSNorm& norm,
                                                    const AttentionInputs& in) const;
  /// A whole pre-norm decoder block of a decode step, h = x + attn(input_norm(x)), out = h +
  /// mlp(post_norm(h)), as one primitive (fast::decode_block: one persistent kernel on a GPU),
  /// writing the cache's fixed buffers. nullopt (run the block op by op) unless: on a CUDA
  /// device outside gradient transforms, INGOT_DECODE_BLOCK=1 (or set_decode_block(true)), x
  /// bfloat16/float16 [B, 1, E] with B <= kDecodeBlockMaxRows, a fixed cache with a bool mask,
  /// per-row offsets, no explicit mask, dense unquantized weights without bias or branches,
  /// full rotary, no softcap, head_dim in {64, 128, 256}, both norms with the same options.
  std::optional<Array> decode_block(const Array& x, const RMSNorm& input_norm,
                                    const AttentionInputs& in, const GatedMLP& mlp,
                                    const RMSNorm& post_norm) const;
  const AttentionConfig& config() const { return cfg_; }
  /// Runs the q, k and v projections as one stacked matmul from now on (see StackedLinear);
  /// false if the layers do not qualify.
  bool fuse_projections();
  /// Whether the block takes packed batches (AttentionInputs::starts): q, k and v stacked by
  /// fuse_projections() and still as it left them (dense or quantized), no low-rank branch or
  /// row-parallel group on them, full rotary, an even head_dim, a float compute dtype.
  bool packs() const;

 private:
  /// qkv: the stacked q/k/v product of x, computed by the caller (no norm then).
  Array run(const Array& x, const AttentionInputs& in, const Array* residual, const RMSNorm* norm,
            const Array* qkv = nullptr) const;
  /// run() of a packed batch (in.starts): the stacked product, then fast::packed_attention.
  Array run_packed(const Array& x, const AttentionInputs& in, const Array* residual,
                   const RMSNorm* norm) const;
  /// {q, keys, values} from the stacked product through fast::rope_kv_update when the block
  /// qualifies (no branches, full rotary, D % 16 == 0, D <= 256) and the cache takes it: fixed
  /// buffers or a growing cache's prepare_append (outside gradient transforms). With
  /// `attended` set and INGOT_DECODE_ROPE_KV_ATTENTION=1, one new token over fixed buffers with
  /// a mask and no softcap takes fast::rope_kv_attention instead: then the first array is the
  /// attention's output [B, H, 1, D] and *attended is set true.
  std::optional<std::vector<Array>> fused_cache_update(const std::optional<Array>& qkv,
                                                       const AttentionInputs& in,
                                                       const fast::RopeOptions& ro,
                                                       bool* attended = nullptr) const;
  /// q, k, v [B, H(kv), S, D] one op at a time: projections (or the stacked product's
  /// columns), q/k norms, rotary, the cache update; mask set from the cache if unset.
  void project_heads(const std::optional<Array>& qkv, const Array& x, const AttentionInputs& in,
                     const fast::RopeOptions& ro, std::optional<Array>& mask, Array& q, Array& k,
                     Array& v) const;

  AttentionConfig cfg_;
  std::shared_ptr<Linear> q_, k_, v_, o_;
  StackedLinear qkv_;
  /// The q, k, v parameters fuse_projections() installed (weights, then scales and biases
  /// when quantized): packs() checks they are still the layers'.
  std::vector<Array> stacked_;
  std::shared_ptr<RMSNorm> q_norm_, k_norm_;
};

}  // namespace ingot::nn
