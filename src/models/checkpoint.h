// A Hugging Face checkpoint directory opened for loading: config.json, the weights (one
// model.safetensors or shards listed by model.safetensors.index.json), text-model tensor names
// (multimodal prefixes resolved), and checks of the tensors against what an architecture needs.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/io/safetensors.h"
#include "models/config.h"

namespace ingot::models {

/// How a checkpoint is opened.
struct CheckpointOptions {
  /// Cast floating-point weights to this dtype when they are loaded (on the target device).
  std::optional<Dtype> dtype;
  /// Print warnings (unexpected tensors) to stderr.
  bool warn = true;
  /// Device load() places tensors on; absent: default_device() at open().
  std::optional<Device> device;
  /// Shard the model over this group (tensor parallelism, models/tensor_parallel.h): config()
  /// becomes this rank's share, load() gives this rank's slice of split tensors and validate()
  /// checks the stored tensors' full shapes against the shard's.
  std::shared_ptr<dist::Group> tensor_parallel;
  /// GGUF files: load Q8_0 / Q4_0 / Q4_K matrices as affine quantized modules (true) or
  /// dequantize them to the compute dtype (false); absent: INGOT_GGUF_NATIVE (default true).
  /// Tensor-parallel loads always dequantize (quantized checkpoints are not sharded).
  std::optional<bool> gguf_native;
};

/// One weights file of a checkpoint.
struct WeightFile {
  std::string path;
  uint64_t size = 0;
  size_t num_tensors = 0;
};

/// A tensor an architecture expects.
struct ExpectedTensor {
  std::string name;
  Shape shape;
  /// Absent is fine (e.g. lm_head.weight of a tied model, biases).
  bool optional = false;
};

/// What validate() found besides errors.
struct ValidationReport {
  /// Tensors present but not expected (warned about, not loaded).
  std::vector<std::string> extra;
  /// Optional tensors that are absent.
  std::vector<std::string> missing_optional;
};

/// Tensors that come from somewhere other than safetensors files (a GGUF file), by stored name:
/// load() gives the tensor on the CPU, already in canonical layout (see gguf_checkpoint.h).
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual const TensorInfo& info(const std::string& stored) const = 0;
  virtual Array load(const std::string& stored) const = 0;
};

/// An open checkpoint. Tensor names are the text model's canonical Hugging Face names
/// ("model.layers.0.self_attn.q_proj.weight", "lm_head.weight"): a multimodal checkpoint's
/// "language_model.model.*" / "model.language_model.*" names are mapped to them and its other
/// components (vision tower, projector) are listed by ignored().
class Checkpoint {
 public:
  /// Opens DIR. Throws IoError "[checkpoint] ..." / "[config] ..." / "[safetensors] ..." for
  /// missing directory, config or weights files, FormatError for broken contents (naming the
  /// file and the tensor or key), InvalidArgument "[device] cuda:N requested but K CUDA
  /// device(s) are available".
  static Checkpoint open(const std::string& dir, const CheckpointOptions& opts = {});
  /// A checkpoint of a config alone, without weights (config_only()): an architecture's
  /// factory builds the model from it and load_weights leaves the parameters as constructed
  /// (init_model then initialises them). FormatError for an unsupported model_type,
  /// InvalidArgument for a CUDA device that is not there.
  static Checkpoint from_config(ModelConfig config, const CheckpointOptions& opts = {});
  /// True for a checkpoint made by from_config (no tensors).
  bool config_only() const { return config_only_; }

  const std::string& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }
  /// Architecture of the model_type ("llama", "qwen3", "gemma3").
  const std::string& architecture() const { return architecture_; }
  const std::vector<WeightFile>& files() const { return files_; }
  /// The index file when the checkpoint is sharded, else empty.
  const std::string& index_path() const { return index_path_; }
  /// Canonical tensor names, sorted.
  std::vector<std::string> names() const;
  /// Stored names outside the text model (skipped), sorted.
  const std::vector<std::string>& ignored() const { return ignored_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  /// Header entry of a tensor (stored dtype, shape); FormatError naming the tensor if absent.
  const TensorInfo& info(const std::string& name) const;
  /// Name of the tensor in its file.
  const std::string& stored_name(const std::string& name) const;
  /// Path of the file holding the tensor.
  const std::string& file_of(const std::string& name) const;
  /// The tensor on device(), cast to options().dtype when set. On the CPU a zero-copy view of
  /// the mapping where possible (a lazy cast); on a GPU the stored tensor is copied first, cast
  /// there and evaluated, so the result no longer needs the mapping.
  Array load(const std::string& name) const;
  /// Where load() puts tensors (options().device, else the default device when opened).
  Device device() const { return device_; }
  /// Total number of elements of the text-model tensors.
  int64_t parameter_count() const;
  const CheckpointOptions& options() const { return opts_; }

  /// Checks the tensors against an architecture's list: a missing required tensor, a wrong
  /// shape or an integer dtype (integer storage only for the packed uint32 weight of a module
  /// the quantization config quantizes)
  /// is a FormatError naming the tensor and the file; unexpected tensors are warned about on
  /// stderr (when options().warn) and returned.
  ValidationReport validate(const std::vector<ExpectedTensor>& expected) const;
  /// Why tensor `name` cannot be a weight of the model (a stored integer dtype), or nullopt.
  std::optional<std::string> dtype_problem(const std::string& name) const;
  /// FormatError "[checkpoint] FILE: <dtype_problem>" when there is one.
  void check_floating(const std::string& name) const;

 private:
  struct Entry {
    std::string stored;
    size_t file = 0;
  };
  std::string dir_;
  ModelConfig config_;
  std::string architecture_;
  CheckpointOptions opts_;
  Device device_ = cpu_device;
  std::string index_path_;
  std::vector<WeightFile> files_;
  std::vector<std::shared_ptr<SafetensorsFile>> st_;
  std::map<std::string, Entry> tensors_;
  std::vector<std::string> ignored_;
  bool config_only_ = false;

  std::shared_ptr<const TensorSource> source_;  // GGUF: replaces st_

  friend Checkpoint open_gguf_checkpoint(const std::string& path, const CheckpointOptions& opts);
  const TensorInfo& stored_info(const Entry& e) const {
    return source_ ? source_->info(e.stored) : st_[e.file]->info(e.stored);
  }
  void open_weights();
  void apply_tensor_parallel();
  void map_names(const std::map<std::string, size_t>& stored);
};

}  // namespace ingot::models
