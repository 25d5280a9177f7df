// GGUF reading (the llama.cpp/ggml file format, versions 2 and 3, little-endian): a strict
// parser of the header, metadata key/values and tensor infos over an mmapped file, and loading
// of tensors as arrays (F32/F16/BF16 zero-copy, Q8_0/Q4_0/Q4_K/Q6_K dequantized). Errors:
// IoError (file problems) and FormatError "[gguf] <file>: ..." naming the key or tensor at fault.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/array.h"

namespace ingot {

class MappedFile;

/// Value types of GGUF metadata (the format's numbering).
enum class GgufValueType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};

/// "UINT32", "STRING", ... for messages.
std::string_view gguf_value_type_name(GgufValueType t);

/// One metadata value: a scalar (one element) or an array of one element type. Integers and
/// bools are held in `ints` (UINT64 values above INT64_MAX wrap; as_int() rejects them),
/// floats in `floats`, strings in `strings`, nested arrays in `arrays`.
struct GgufValue {
  GgufValueType type = GgufValueType::UINT32;
  /// Element type when type == ARRAY.
  GgufValueType element_type = GgufValueType::UINT32;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
  std::vector<GgufValue> arrays;

  bool is_array() const { return type == GgufValueType::ARRAY; }
  /// The type of the scalar or of the elements.
  GgufValueType scalar_type() const { return is_array() ? element_type : type; }
  /// Number of elements (1 for a scalar).
  size_t size() const;
};

/// ggml tensor types (the format's numbering); the ones ingot can load are F32, F16, BF16,
/// F64, I8, I16, I32, I64, Q8_0, Q4_0, Q4_K and Q6_K.
enum class GgufTensorType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
};

/// "Q4_K", ... (or "type N" for ids outside the enum).
std::string gguf_tensor_type_name(GgufTensorType t);
/// Elements per block (1 for plain types), 0 for ids the reader does not know.
int64_t gguf_block_size(GgufTensorType t);
/// Bytes per block, 0 for ids the reader does not know.
int64_t gguf_block_bytes(GgufTensorType t);
/// True for the block-quantized types load() dequantizes (Q8_0, Q4_0, Q4_K, Q6_K).
bool gguf_is_dequantizable(GgufTensorType t);

/// One tensor info entry.
struct GgufTensorInfo {
  std::string name;
  /// ggml order: dims[0] is the innermost (contiguous) dimension.
  std::vector<uint64_t> dims;
  GgufTensorType type = GgufTensorType::F32;
  /// Offset of the data relative to the data section.
  uint64_t offset = 0;
  uint64_t nbytes = 0;
  /// Row-major shape (dims reversed), as a PyTorch/safetensors tensor of the same data.
  Shape shape() const;
  int64_t numel() const;
};

/// A parsed and validated GGUF header.
struct GgufHeader {
  uint32_t version = 0;
  /// Metadata in file order.
  std::vector<std::pair<std::string, GgufValue>> metadata;
  std::vector<GgufTensorInfo> tensors;
  /// general.alignment, else 32.
  uint64_t alignment = 32;
  /// Offset of the data section in the file.
  uint64_t data_start = 0;

  /// The value of `key`, or nullptr.
  const GgufValue* find(std::string_view key) const;
};

/// Parses and validates a GGUF file held in `bytes` (`size` bytes, the whole file). Checks:
/// magic, version 2 or 3 (1 and big-endian files are named as unsupported), every count,
/// length and offset against the bytes left (no allocation larger than the file allows), value
/// types, nesting depth, unique keys and tensor names, general.alignment (a power of two),
/// dims (1..4, element count without overflow, a whole number of blocks per row), known tensor
/// types, and each tensor's data aligned and inside the file. Throws FormatError "[gguf]
/// <filename>: ..." naming the key or tensor.
GgufHeader parse_gguf_header(const uint8_t* bytes, size_t size, const std::string& filename);

/// Dequantizes `n` elements (a whole number of blocks) of block type `t` from `src` to float.
/// Throws Unsupported for types other than Q8_0, Q4_0, Q4_K and Q6_K.
void gguf_dequantize(GgufTensorType t, const uint8_t* src, float* dst, int64_t n);

/// Bits of the affine form (core/ops/quantized.h: value = scale * q + bias per group of 32
/// elements) that block type `t` rewrites to exactly: 8 for Q8_0, 4 for Q4_0 and Q4_K (one
/// group per Q8_0/Q4_0 block or Q4_K sub-block), 0 for the others.
int gguf_affine_bits(GgufTensorType t);

/// Rewrites `n` elements (a whole number of blocks) of block type `t` as `n * bits / 32` packed
/// words and `n / 32` float32 scales and biases (bits = gguf_affine_bits(t)), such that
/// scale * q + bias in float32 equals gguf_dequantize's value bit for bit. Unsupported for
/// other types.
void gguf_to_affine(GgufTensorType t, const uint8_t* src, int64_t n, uint32_t* words, float* scales,
                    float* biases);

/// A tensor in the affine form: packed uint32 words [..., K * bits / 32] and float32 scales and
/// biases [..., K / 32] (CPU arrays).
struct GgufAffineTensor {
  Array words, scales, biases;
  int bits = 0;
};

/// An open GGUF file: header parsed eagerly, tensors loaded on request.
class GgufFile {
 public:
  /// Maps and validates `path`; throws IoError / FormatError "[gguf] <path>: ...".
  explicit GgufFile(const std::string& path);
  const std::string& path() const { return path_; }
  size_t file_size() const;
  const GgufHeader& header() const { return header_; }
  /// The value of `key`, or nullptr.
  const GgufValue* find(std::string_view key) const { return header_.find(key); }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  /// Tensor info; FormatError naming the file and the tensor if absent.
  const GgufTensorInfo& info(const std::string& name) const;
  /// Stored bytes of a tensor (inside the mapping).
  const uint8_t* data(const GgufTensorInfo& t) const;
  /// The tensor as an evaluated CPU array of shape info().shape(): F32/F16/BF16/F64 and the
  /// integer types as stored (zero-copy views of the mapping where aligned; I16 widens to
  /// int32), quantized types dequantized to `float_dtype` (float32, bfloat16 or float16).
  /// Unsupported types throw Unsupported naming the tensor and the type.
  Array load(const std::string& name, Dtype float_dtype = Dtype::float32) const;
  /// A Q8_0 / Q4_0 / Q4_K tensor of 2 or more dimensions in the affine form
  /// (gguf_to_affine); Unsupported naming the tensor for other types.
  GgufAffineTensor load_affine(const std::string& name) const;
  const MappedFile& mapping() const { return *map_; }

 private:
  std::string path_;
  std::shared_ptr<MappedFile> map_;
  GgufHeader header_;
  std::map<std::string, size_t> index_;
};

// Typed access to metadata, with FormatError "[gguf] <file>: key '<key>' ..." on a wrong type.

/// Integer value of an integer (or bool) scalar.
int64_t gguf_int(const GgufValue& v, const std::string& file, std::string_view key);
/// Float value of a float or integer scalar.
double gguf_float(const GgufValue& v, const std::string& file, std::string_view key);
/// String scalar.
const std::string& gguf_string(const GgufValue& v, const std::string& file, std::string_view key);

}  // namespace ingot
