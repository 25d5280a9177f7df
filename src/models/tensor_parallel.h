// Tensor parallelism of the decoders (Megatron-style, docs/multi-gpu.md): q/k/v and gate/up
// split by output features (heads, intermediate units), o_proj and down_proj by input features
// with one all_sum each, the untied LM head by vocabulary rows with an all_gather of the
// logits. A sharded model's config holds this rank's share of heads, KV heads and
// intermediate size, so its blocks and KV caches are built at the shard's size unchanged.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "core/dist/group.h"
#include "models/config.h"
#include "nn/module.h"

namespace ingot::models {

/// This rank's config: num_attention_heads, num_key_value_heads and intermediate_size divided
/// by the group's size, `tp` set to the group. InvalidArgument naming the count that does not
/// divide; Unsupported for quantized checkpoints. A single-rank group returns `c` unchanged.
ModelConfig shard_config(const ModelConfig& c, std::shared_ptr<dist::Group> group);

/// True when `c` is sharded over a group of more than one rank.
bool is_sharded(const ModelConfig& c);

/// True when the untied LM head is split by vocabulary rows (sharded and V divisible by the
/// group's size; otherwise every rank holds the whole head).
bool vocab_parallel(const ModelConfig& c);

/// The axis tensor `name` (canonical HF name) is split along on a sharded config: 0 for
/// q/k/v_proj and gate/up_proj weights and biases and a vocabulary-parallel lm_head.weight, 1
/// for o_proj and down_proj weights; nullopt for replicated tensors (norms, embeddings, the
/// o/down biases) and for unsharded configs.
std::optional<int> shard_axis(const ModelConfig& c, const std::string& name);

/// Makes every o_proj and down_proj Linear under `m` row-parallel over c.tp (nn::Linear::
/// set_row_parallel); nothing for an unsharded config.
void set_row_parallel(nn::Module& m, const ModelConfig& c);

}  // namespace ingot::models
