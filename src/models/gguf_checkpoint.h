// A GGUF file (llama.cpp's format) opened as a Checkpoint: metadata -> ModelConfig, GGUF tensor
// names -> canonical Hugging Face names, and the converter's layout changes undone on load
// (llama's rotary Q/K row permutation, Gemma's stored 1 + w norms).
#pragma once

#include <string>

#include "models/checkpoint.h"

namespace ingot {
class GgufFile;
}

namespace ingot::models {

/// True when `path` is a regular file named *.gguf or starting with the GGUF magic.
bool is_gguf_file(const std::string& path);

/// The config.json equivalent of a GGUF file's metadata (architectures llama, qwen3, gemma3);
/// throws FormatError "[gguf] <file>: ..." naming the key that is missing or wrong, Unsupported
/// for other architectures. Exposed for tests and `inspect`.
ModelConfig gguf_model_config(const GgufFile& file);

/// The canonical Hugging Face name of a GGUF tensor name ("blk.3.attn_q.weight" ->
/// "model.layers.3.self_attn.q_proj.weight") for an architecture, or "" when it has none.
std::string gguf_canonical_name(const std::string& gguf_name, const std::string& architecture);

/// Opens a GGUF file as a checkpoint (what Checkpoint::open does for a .gguf path). Weights in
/// F32/F16/BF16 are zero-copy views of the mapping (on the CPU). Q8_0/Q4_0/Q4_K matrices of the
/// linear layers and the embedding load as affine quantized modules (`<module>.weight` packed
/// uint32, `.scales`, `.biases`, group size 32, 8 or 4 bits; the config gets the matching
/// quantization section) unless opts.gguf_native / INGOT_GGUF_NATIVE say otherwise or the load
/// is tensor parallel; other block-quantized tensors (and all of them then) are dequantized
/// on load to the compute dtype (opts.dtype, else float32 for an all-F32 file and bfloat16
/// otherwise).
Checkpoint open_gguf_checkpoint(const std::string& path, const CheckpointOptions& opts);

}  // namespace ingot::models
