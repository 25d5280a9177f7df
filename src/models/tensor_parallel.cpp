// Tensor-parallel sharding rules (see tensor_parallel.h).
#include "models/tensor_parallel.h"

#include "nn/layers.h"
#include "util/error.h"

namespace ingot::models {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

ModelConfig shard_config(const ModelConfig& c, std::shared_ptr<dist::Group> group) {
  if (!group || group->size() == 1) return c;
  const int n = group->size();
  if (c.quantization)
    raise<Unsupported>("[tensor-parallel] {}: quantized checkpoints cannot be sharded yet",
                       c.source);
  auto split = [&](const char* what, int64_t v) {
    if (v % n != 0)
      raise("[tensor-parallel] {}: {} = {} is not divisible by the {} ranks", c.source, what, v, n);
    return v / n;
  };
  ModelConfig s = c;
  s.num_attention_heads = split("num_attention_heads", c.num_attention_heads);
  s.num_key_value_heads = split("num_key_value_heads", c.num_key_value_heads);
  s.intermediate_size = split("intermediate_size", c.intermediate_size);
  s.tp = std::move(group);
  return s;
}

bool is_sharded(const ModelConfig& c) {
  return c.tp && c.tp->size() > 1;
}

bool vocab_parallel(const ModelConfig& c) {
  return is_sharded(c) && !c.tie_word_embeddings && c.vocab_size % c.tp->size() == 0;
}

std::optional<int> shard_axis(const ModelConfig& c, const std::string& name) {
  if (!is_sharded(c)) return std::nullopt;
  for (const char* col : {"q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"})
    for (const char* p : {".weight", ".bias"})
      if (ends_with(name, std::string(col) + p)) return 0;
  for (const char* row : {"o_proj.weight", "down_proj.weight"})
    if (ends_with(name, row)) return 1;
  if (name == "lm_head.weight" && vocab_parallel(c)) return 0;
  return std::nullopt;
}

void set_row_parallel(nn::Module& m, const ModelConfig& c) {
  if (!is_sharded(c)) return;
  for (const auto& [name, child] : m.children()) {
    if (name == "o_proj" || name == "down_proj")
      if (auto* l = dynamic_cast<nn::Linear*>(child.get())) l->set_row_parallel(c.tp);
    set_row_parallel(*child, c);
  }
}

}  // namespace ingot::models
