// safetensors read/write (https://github.com/huggingface/safetensors): an mmapped, lazy reader
// whose arrays point into the mapping (zero-copy where possible), a strict header validator
// and a deterministic writer. Errors: IoError (file problems) and FormatError (content), both
// starting "[safetensors] <file>" and naming the tensor or key at fault.
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

/// Element types a safetensors file can declare.
enum class StDtype : uint8_t {
  BOOL,
  U8,
  I8,
  I16,
  U16,
  I32,
  U32,
  I64,
  U64,
  F16,
  BF16,
  F32,
  F64,
  F8_E4M3,
  F8_E5M2,
  F8_E8M0,
};

/// "F32", "BF16", ... as the format spells them.
std::string_view st_dtype_name(StDtype t);
/// Parses a format dtype name; nullopt if unknown.
std::optional<StDtype> st_dtype_from_name(std::string_view s);
/// Bytes per element of a stored dtype.
size_t st_dtype_size(StDtype t);
/// The ingot dtype a stored dtype loads as: the same type where ingot has it; I16/U16 widen to
/// int32, U64 to int64 (values >= 2^63 are a FormatError), the fp8 types to bfloat16 (exact).
Dtype st_dtype_to_ingot(StDtype t);
/// The stored dtype the writer uses for an ingot dtype.
StDtype st_dtype_from_ingot(Dtype t);

/// One tensor entry of a header.
struct TensorInfo {
  std::string name;
  StDtype stored_dtype = StDtype::F32;
  Shape shape;
  /// Byte range relative to the start of the data section (after the header).
  uint64_t begin = 0;
  uint64_t end = 0;
  /// The dtype `load` returns without a cast.
  Dtype dtype() const { return st_dtype_to_ingot(stored_dtype); }
  uint64_t nbytes() const { return end - begin; }
};

/// A parsed and validated header.
struct SafetensorsHeader {
  /// Tensors in data order (ascending offsets).
  std::vector<TensorInfo> tensors;
  /// The "__metadata__" string map (empty when absent).
  std::map<std::string, std::string> metadata;
  /// Length of the JSON header in bytes (the 8-byte prefix's value).
  uint64_t header_size = 0;
  /// Offset of the data section in the file: 8 + header_size.
  uint64_t data_start = 0;
};

/// Parses and validates the header of a safetensors file held in `bytes` (the whole file, or at
/// least its header when `file_size` says how long the whole file is). Checks: header length
/// within the file and <= 100 MB, JSON object without duplicate keys, known dtypes, non-negative
/// integer shapes, shape x dtype size == byte range, ranges inside the data section, in order,
/// without overlaps, gaps or trailing bytes. `filename` names the file in error messages.
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t available, size_t file_size,
                                           const std::string& filename);

/// Options for turning stored tensors into arrays.
struct LoadOptions {
  /// Cast every floating-point tensor to this dtype (integer and bool tensors keep theirs).
  std::optional<Dtype> dtype;
  /// Always copy into allocator memory instead of pointing into the mapping.
  bool copy = false;
};

/// An open safetensors file: the header is parsed eagerly, tensors become arrays on request.
/// Arrays share the mapping, which is unmapped when the file object and the last array using
/// it are gone.
class SafetensorsFile {
 public:
  /// Maps and validates `path`; throws IoError / FormatError "[safetensors] <path>: ...".
  explicit SafetensorsFile(const std::string& path);
  const std::string& path() const { return path_; }
  /// Size of the file in bytes.
  size_t file_size() const;
  const SafetensorsHeader& header() const { return header_; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  /// Tensor names, sorted.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  /// Header entry of a tensor; throws FormatError naming the file and the tensor if absent.
  const TensorInfo& info(const std::string& name) const;
  /// The tensor as an evaluated array: a zero-copy view of the mapping when no conversion is
  /// needed and the data is aligned for its type, else a converted copy; with opts.dtype, a lazy
  /// astype of it.
  Array load(const std::string& name, const LoadOptions& opts = {}) const;
  /// Every tensor, by name.
  std::map<std::string, Array> load_all(const LoadOptions& opts = {}) const;
  /// The mapping (for prefetch hints and benchmarks).
  const MappedFile& mapping() const { return *map_; }

 private:
  std::string path_;
  std::shared_ptr<MappedFile> map_;
  SafetensorsHeader header_;
  std::map<std::string, size_t> index_;  // name -> position in header_.tensors
};

/// Loads every tensor of a file (see SafetensorsFile::load); metadata goes to `metadata` if given.
std::map<std::string, Array> load_safetensors(
    const std::string& path, const LoadOptions& opts = {},
    std::map<std::string, std::string>* metadata = nullptr);

/// Writes arrays to `path` as safetensors: names sorted, data in name order, header padded with
/// spaces to a multiple of 8 bytes, optional "__metadata__". The same inputs give the same bytes.
/// Throws InvalidArgument for an empty or "__metadata__" name, IoError when writing fails.
void save_safetensors(const std::string& path, const std::map<std::string, Array>& arrays,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace ingot
