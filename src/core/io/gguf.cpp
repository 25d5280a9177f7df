// GGUF parsing (a bounds-checked cursor over the file bytes: every count and length is checked
// against what is left before anything is allocated) and tensor loading from the mapping.
#include "core/io/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/half.h"
#include "util/error.h"
#include "util/mmap.h"

namespace ingot {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr int kMaxDepth = 8;             // nested arrays
constexpr uint64_t kMaxAlignment = 1ull << 20;

struct TypeRow {
  GgufTensorType t;
  const char* name;
  int64_t block;
  int64_t bytes;
};
constexpr TypeRow kTypes[] = {
    {GgufTensorType::F32, "F32", 1, 4},       {GgufTensorType::F16, "F16", 1, 2},
    {GgufTensorType::Q4_0, "Q4_0", 32, 18},   {GgufTensorType::Q4_1, "Q4_1", 32, 20},
    {GgufTensorType::Q5_0, "Q5_0", 32, 22},   {GgufTensorType::Q5_1, "Q5_1", 32, 24},
    {GgufTensorType::Q8_0, "Q8_0", 32, 34},   {GgufTensorType::Q8_1, "Q8_1", 32, 36},
    {GgufTensorType::Q2_K, "Q2_K", 256, 84},  {GgufTensorType::Q3_K, "Q3_K", 256, 110},
    {GgufTensorType::Q4_K, "Q4_K", 256, 144}, {GgufTensorType::Q5_K, "Q5_K", 256, 176},
    {GgufTensorType::Q6_K, "Q6_K", 256, 210}, {GgufTensorType::Q8_K, "Q8_K", 256, 292},
    {GgufTensorType::I8, "I8", 1, 1},         {GgufTensorType::I16, "I16", 1, 2},
    {GgufTensorType::I32, "I32", 1, 4},       {GgufTensorType::I64, "I64", 1, 8},
    {GgufTensorType::F64, "F64", 1, 8},       {GgufTensorType::BF16, "BF16", 1, 2},
};

const TypeRow* type_row(GgufTensorType t) {
  for (auto& r : kTypes)
    if (r.t == t) return &r;
  return nullptr;
}

/// Smallest encoded size of one value of a type (to bound counts by the bytes left).
uint64_t min_value_bytes(GgufValueType t) {
  switch (t) {
    case GgufValueType::UINT8:
    case GgufValueType::INT8:
    case GgufValueType::BOOL:
      return 1;
    case GgufValueType::UINT16:
    case GgufValueType::INT16:
      return 2;
    case GgufValueType::UINT32:
    case GgufValueType::INT32:
    case GgufValueType::FLOAT32:
      return 4;
    case GgufValueType::STRING:
    case GgufValueType::UINT64:
    case GgufValueType::INT64:
    case GgufValueType::FLOAT64:
      return 8;
    case GgufValueType::ARRAY:
      return 12;
  }
  return 1;
}

bool valid_value_type(uint32_t t) {
  return t <= static_cast<uint32_t>(GgufValueType::FLOAT64);
}

/// Bounds-checked little-endian reader; errors name the file and what was being read.
class Cursor {
 public:
  Cursor(const uint8_t* p, size_t n, const std::string& file) : p_(p), n_(n), file_(file) {}
  size_t pos() const { return pos_; }
  size_t left() const { return n_ - pos_; }

  template <typename T>
  T get(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str(const std::string& what) {
    const uint64_t len = get<uint64_t>(what + " (string length)");
    if (len > left())
      raise<FormatError>(
          "[gguf] {}: {}: string of {} bytes at offset {} runs past the end of the "
          "file ({} bytes left)",
          file_, what, len, pos_, left());
    std::string s(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }
  /// A count of items of at least `min_bytes` each; absurd counts are errors.
  uint64_t count(const std::string& what, uint64_t min_bytes) {
    const uint64_t c = get<uint64_t>(what);
    if (min_bytes > 0 && c > left() / min_bytes)
      raise<FormatError>("[gguf] {}: {} is {}, more than the {} bytes left in the file can hold",
                         file_, what, c, left());
    return c;
  }

 private:
  void need(size_t k, const std::string& what) {
    if (k > left())
      raise<FormatError>("[gguf] {}: truncated: {} needs {} bytes at offset {}, the file has {}",
                         file_, what, k, pos_, n_);
  }
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& file_;
};

void read_scalar(Cursor& c, GgufValueType t, GgufValue& v, const std::string& what,
                 const std::string& file) {
  switch (t) {
    case GgufValueType::UINT8:
      v.ints.push_back(c.get<uint8_t>(what));
      return;
    case GgufValueType::INT8:
      v.ints.push_back(c.get<int8_t>(what));
      return;
    case GgufValueType::UINT16:
      v.ints.push_back(c.get<uint16_t>(what));
      return;
    case GgufValueType::INT16:
      v.ints.push_back(c.get<int16_t>(what));
      return;
    case GgufValueType::UINT32:
      v.ints.push_back(c.get<uint32_t>(what));
      return;
    case GgufValueType::INT32:
      v.ints.push_back(c.get<int32_t>(what));
      return;
    case GgufValueType::UINT64:
      v.ints.push_back(static_cast<int64_t>(c.get<uint64_t>(what)));
      return;
    case GgufValueType::INT64:
      v.ints.push_back(c.get<int64_t>(what));
      return;
    case GgufValueType::FLOAT32:
      v.floats.push_back(c.get<float>(what));
      return;
    case GgufValueType::FLOAT64:
      v.floats.push_back(c.get<double>(what));
      return;
    case GgufValueType::BOOL: {
      const uint8_t b = c.get<uint8_t>(what);
      if (b > 1) raise<FormatError>("[gguf] {}: {}: bool byte is {}, not 0 or 1", file, what, b);
      v.ints.push_back(b);
      return;
    }
    case GgufValueType::STRING:
      v.strings.push_back(c.str(what));
      return;
    case GgufValueType::ARRAY:
      break;
  }
  raise<FormatError>("[gguf] {}: {}: internal: not a scalar type", file, what);
}

GgufValue read_value(Cursor& c, GgufValueType t, const std::string& what, const std::string& file,
                     int depth) {
  GgufValue v;
  v.type = t;
  if (t != GgufValueType::ARRAY) {
    read_scalar(c, t, v, what, file);
    return v;
  }
  if (depth >= kMaxDepth)
    raise<FormatError>("[gguf] {}: {}: arrays nested deeper than {}", file, what, kMaxDepth);
  const uint32_t et = c.get<uint32_t>(what + " (array element type)");
  if (!valid_value_type(et))
    raise<FormatError>("[gguf] {}: {}: unknown array element type {}", file, what, et);
  v.element_type = static_cast<GgufValueType>(et);
  const uint64_t n = c.count(what + " (array length)", min_value_bytes(v.element_type));
  if (v.element_type == GgufValueType::ARRAY) {
    v.arrays.reserve(static_cast<size_t>(n));
    // Each element is an array without its own type tag: element type, count, elements.
    for (uint64_t i = 0; i < n; ++i)
      v.arrays.push_back(read_value(c, GgufValueType::ARRAY, what, file, depth + 1));
    return v;
  }
  if (v.element_type == GgufValueType::STRING)
    v.strings.reserve(static_cast<size_t>(n));
  else if (v.element_type == GgufValueType::FLOAT32 || v.element_type == GgufValueType::FLOAT64)
    v.floats.reserve(static_cast<size_t>(n));
  else
    v.ints.reserve(static_cast<size_t>(n));
  for (uint64_t i = 0; i < n; ++i) read_scalar(c, v.element_type, v, what, file);
  return v;
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t& r) {
  return __builtin_mul_overflow(a, b, &r);
}

}  // namespace

std::string_view gguf_value_type_name(GgufValueType t) {
  static constexpr const char* kNames[] = {"UINT8",  "INT8",    "UINT16", "INT16",  "UINT32",
                                           "INT32",  "FLOAT32", "BOOL",   "STRING", "ARRAY",
                                           "UINT64", "INT64",   "FLOAT64"};
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(kNames) ? kNames[i] : "UNKNOWN";
}

size_t GgufValue::size() const {
  if (!is_array()) return 1;
  return ints.size() + floats.size() + strings.size() + arrays.size();
}

std::string gguf_tensor_type_name(GgufTensorType t) {
  if (auto* r = type_row(t)) return r->name;
  return "type " + std::to_string(static_cast<uint32_t>(t));
}
int64_t gguf_block_size(GgufTensorType t) {
  auto* r = type_row(t);
  return r ? r->block : 0;
}
int64_t gguf_block_bytes(GgufTensorType t) {
  auto* r = type_row(t);
  return r ? r->bytes : 0;
}
bool gguf_is_dequantizable(GgufTensorType t) {
  return t == GgufTensorType::Q8_0 || t == GgufTensorType::Q4_0 || t == GgufTensorType::Q4_K ||
         t == GgufTensorType::Q6_K;
}

Shape GgufTensorInfo::shape() const {
  Shape s;
  for (auto it = dims.rbegin(); it != dims.rend(); ++it) s.push_back(static_cast<int64_t>(*it));
  return s;
}

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (uint64_t d : dims) n *= static_cast<int64_t>(d);
  return n;
}

const GgufValue* GgufHeader::find(std::string_view key) const {
  for (auto& [k, v] : metadata)
    if (k == key) return &v;
  return nullptr;
}

GgufHeader parse_gguf_header(const uint8_t* bytes, size_t size, const std::string& filename) {
  const std::string& f = filename;
  Cursor c(bytes, size, f);
  GgufHeader h;
  if (size < 4)
    raise<FormatError>("[gguf] {}: not a GGUF file ({} bytes, too short for the magic)", f, size);
  const uint32_t magic = c.get<uint32_t>("magic");
  if (magic != kMagic)
    raise<FormatError>(
        "[gguf] {}: not a GGUF file (magic {:02x} {:02x} {:02x} {:02x}, expected "
        "'GGUF')",
        f, bytes[0], bytes[1], bytes[2], bytes[3]);
  h.version = c.get<uint32_t>("version");
  if (h.version == 0x02000000u || h.version == 0x03000000u)
    raise<FormatError>("[gguf] {}: big-endian GGUF files are not supported", f);
  if (h.version != 2 && h.version != 3)
    raise<FormatError>("[gguf] {}: unsupported GGUF version {} (ingot reads versions 2 and 3)", f,
                       h.version);
  // A tensor info takes at least 8 (name) + 4 (n_dims) + 8 (one dim) + 4 (type) + 8 (offset)
  // bytes, a key/value at least 8 (key) + 4 (type) + 1.
  const uint64_t n_tensors = c.count("tensor count", 32);
  const uint64_t n_kv = c.count("metadata key/value count", 13);
  h.metadata.reserve(static_cast<size_t>(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.str(fmt::format("metadata key #{}", i));
    const std::string what = fmt::format("key '{}'", key);
    const uint32_t t = c.get<uint32_t>(what + " (value type)");
    if (!valid_value_type(t))
      raise<FormatError>("[gguf] {}: {}: unknown value type {}", f, what, t);
    if (h.find(key)) raise<FormatError>("[gguf] {}: duplicate metadata {}", f, what);
    GgufValue v = read_value(c, static_cast<GgufValueType>(t), what, f, 0);
    h.metadata.emplace_back(std::move(key), std::move(v));
  }
  if (const GgufValue* a = h.find("general.alignment")) {
    if (a->is_array() || a->type != GgufValueType::UINT32)
      raise<FormatError>("[gguf] {}: key 'general.alignment' is {}, expected UINT32", f,
                         a->is_array() ? "an ARRAY" : gguf_value_type_name(a->type));
    const auto al = static_cast<uint64_t>(a->ints[0]);
    if (al == 0 || (al & (al - 1)) != 0 || al > kMaxAlignment)
      raise<FormatError>("[gguf] {}: key 'general.alignment' is {}, not a power of two up to {}", f,
                         al, kMaxAlignment);
    h.alignment = al;
  }
  h.tensors.reserve(static_cast<size_t>(n_tensors));
  std::map<std::string, size_t> seen;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = c.str(fmt::format("name of tensor #{}", i));
    const std::string what = fmt::format("tensor '{}'", t.name);
    if (!seen.emplace(t.name, i).second) raise<FormatError>("[gguf] {}: duplicate {}", f, what);
    const uint32_t nd = c.get<uint32_t>(what + " (n_dims)");
    if (nd < 1 || nd > 4)
      raise<FormatError>("[gguf] {}: {} has {} dimensions (expected 1 to 4)", f, what, nd);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      const uint64_t dim = c.get<uint64_t>(what + " (dims)");
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          mul_overflows(numel, dim, numel) ||
          numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        raise<FormatError>("[gguf] {}: {}: dimension {} = {} overflows the element count", f, what,
                           d, dim);
      t.dims.push_back(dim);
    }
    const uint32_t ty = c.get<uint32_t>(what + " (type)");
    t.type = static_cast<GgufTensorType>(ty);
    const TypeRow* row = type_row(t.type);
    if (!row) raise<FormatError>("[gguf] {}: {} has unknown tensor type id {}", f, what, ty);
    if (t.dims[0] % static_cast<uint64_t>(row->block) != 0)
      raise<FormatError>(
          "[gguf] {}: {}: first dimension {} is not a multiple of the {} block "
          "size {}",
          f, what, t.dims[0], row->name, row->block);
    uint64_t nbytes = 0;
    if (mul_overflows(numel / static_cast<uint64_t>(row->block), static_cast<uint64_t>(row->bytes),
                      nbytes))
      raise<FormatError>("[gguf] {}: {}: byte size overflows", f, what);
    t.nbytes = nbytes;
    t.offset = c.get<uint64_t>(what + " (offset)");
    if (t.offset % h.alignment != 0)
      raise<FormatError>("[gguf] {}: {}: data offset {} is not a multiple of the alignment {}", f,
                         what, t.offset, h.alignment);
    h.tensors.push_back(std::move(t));
  }
  const uint64_t end_infos = c.pos();
  h.data_start = (end_infos + h.alignment - 1) / h.alignment * h.alignment;
  if (!h.tensors.empty() && h.data_start > size)
    raise<FormatError>(
        "[gguf] {}: truncated: the data section would start at {}, the file has {} "
        "bytes",
        f, h.data_start, size);
  const uint64_t data_bytes = h.tensors.empty() ? 0 : size - h.data_start;
  for (auto& t : h.tensors)
    if (t.offset > data_bytes || t.nbytes > data_bytes - t.offset)
      raise<FormatError>(
          "[gguf] {}: tensor '{}' ({} {}, {} bytes at data offset {}) runs past "
          "the end of the file ({} data bytes)",
          f, t.name, gguf_tensor_type_name(t.type), shape_str(t.shape()), t.nbytes, t.offset,
          data_bytes);
  return h;
}

// ---- metadata access ----

namespace {
std::string kind(const GgufValue& v) {
  if (v.is_array()) return fmt::format("an ARRAY of {}", gguf_value_type_name(v.element_type));
  return std::string(gguf_value_type_name(v.type));
}
}  // namespace

int64_t gguf_int(const GgufValue& v, const std::string& file, std::string_view key) {
  if (v.is_array() || v.ints.size() != 1)
    raise<FormatError>("[gguf] {}: key '{}' is {}, expected an integer", file, key, kind(v));
  if (v.type == GgufValueType::UINT64 && v.ints[0] < 0)
    raise<FormatError>("[gguf] {}: key '{}': value does not fit int64", file, key);
  return v.ints[0];
}

double gguf_float(const GgufValue& v, const std::string& file, std::string_view key) {
  if (!v.is_array() && v.floats.size() == 1) return v.floats[0];
  if (!v.is_array() && v.type != GgufValueType::BOOL && v.ints.size() == 1)
    return static_cast<double>(gguf_int(v, file, key));
  raise<FormatError>("[gguf] {}: key '{}' is {}, expected a number", file, key, kind(v));
}

const std::string& gguf_string(const GgufValue& v, const std::string& file, std::string_view key) {
  if (v.is_array() || v.strings.size() != 1)
    raise<FormatError>("[gguf] {}: key '{}' is {}, expected a STRING", file, key, kind(v));
  return v.strings[0];
}

// ---- file ----

namespace {

Array leaf(Shape shape, Dtype dt, std::shared_ptr<Data> data) {
  Array a(std::move(shape), dt, nullptr, {});
  a.set_data(std::move(data));
  a.set_evaluated();
  return a;
}

/// Dtype of a plain (non-block) stored type.
std::optional<Dtype> plain_dtype(GgufTensorType t) {
  switch (t) {
    case GgufTensorType::F32:
      return float32;
    case GgufTensorType::F16:
      return float16;
    case GgufTensorType::BF16:
      return bfloat16;
    case GgufTensorType::F64:
      return float64;
    case GgufTensorType::I8:
      return int8;
    case GgufTensorType::I32:
      return int32;
    case GgufTensorType::I64:
      return int64;
    default:
      return std::nullopt;
  }
}

}  // namespace

GgufFile::GgufFile(const std::string& path) : path_(path) {
  map_ = MappedFile::open(path);
  header_ = parse_gguf_header(map_->data(), map_->size(), path);
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_[header_.tensors[i].name] = i;
}

size_t GgufFile::file_size() const {
  return map_->size();
}

const GgufTensorInfo& GgufFile::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) raise<FormatError>("[gguf] {}: no tensor '{}'", path_, name);
  return header_.tensors[it->second];
}

const uint8_t* GgufFile::data(const GgufTensorInfo& t) const {
  return map_->data() + header_.data_start + t.offset;
}

Array GgufFile::load(const std::string& name, Dtype float_dtype) const {
  const GgufTensorInfo& t = info(name);
  const uint8_t* src = data(t);
  const int64_t n = t.numel();
  if (auto dt = plain_dtype(t.type)) {
    if (n == 0 || reinterpret_cast<uintptr_t>(src) % size_of(*dt) == 0) {
      std::shared_ptr<MappedFile> keep = map_;
      auto d = std::make_shared<Data>(Buffer{const_cast<uint8_t*>(src), t.nbytes}, cpu_device,
                                      [keep](Buffer) {});
      return leaf(t.shape(), *dt, std::move(d));
    }
    Buffer b = allocator(cpu_device).malloc(t.nbytes);
    auto d = std::make_shared<Data>(b, cpu_device);
    std::memcpy(b.ptr, src, t.nbytes);
    return leaf(t.shape(), *dt, std::move(d));
  }
  if (t.type == GgufTensorType::I16) {
    Buffer b = allocator(cpu_device).malloc(static_cast<size_t>(n) * 4);
    auto d = std::make_shared<Data>(b, cpu_device);
    auto* out = static_cast<int32_t*>(b.ptr);
    for (int64_t i = 0; i < n; ++i) {
      int16_t v;
      std::memcpy(&v, src + 2 * i, 2);
      out[i] = v;
    }
    return leaf(t.shape(), int32, std::move(d));
  }
  if (!gguf_is_dequantizable(t.type))
    raise<Unsupported>(
        "[gguf] {}: tensor '{}' has type {}, which ingot cannot load (supported: "
        "F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K)",
        path_, name, gguf_tensor_type_name(t.type));
  if (float_dtype != float32 && float_dtype != bfloat16 && float_dtype != float16)
    raise("[gguf] {}: tensor '{}': cannot dequantize to {}", path_, name, dtype_name(float_dtype));
  if (n == 0) {  // no elements (a zero dimension): no row buffer, whatever dims[0] says
    auto d = std::make_shared<Data>(Buffer{nullptr, 0}, cpu_device, [](Buffer) {});
    return leaf(t.shape(), float_dtype, std::move(d));
  }
  // Row by row (one row = dims[0] <= n elements, a whole number of blocks) through a float
  // buffer.
  const int64_t row = static_cast<int64_t>(t.dims[0]);
  const int64_t rows = row == 0 ? 0 : n / row;
  const int64_t row_bytes = row / gguf_block_size(t.type) * gguf_block_bytes(t.type);
  Buffer b = allocator(cpu_device).malloc(static_cast<size_t>(n) * size_of(float_dtype));
  auto d = std::make_shared<Data>(b, cpu_device);
  std::vector<float> tmp(float_dtype == float32 ? 0 : static_cast<size_t>(row));
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* s = src + r * row_bytes;
    if (float_dtype == float32) {
      gguf_dequantize(t.type, s, static_cast<float*>(b.ptr) + r * row, row);
      continue;
    }
    gguf_dequantize(t.type, s, tmp.data(), row);
    if (float_dtype == bfloat16) {
      auto* o = static_cast<bfloat16_t*>(b.ptr) + r * row;
      for (int64_t i = 0; i < row; ++i) o[i] = bfloat16_t(tmp[static_cast<size_t>(i)]);
    } else {
      auto* o = static_cast<float16_t*>(b.ptr) + r * row;
      for (int64_t i = 0; i < row; ++i) o[i] = float16_t(tmp[static_cast<size_t>(i)]);
    }
  }
  return leaf(t.shape(), float_dtype, std::move(d));
}

GgufAffineTensor GgufFile::load_affine(const std::string& name) const {
  const GgufTensorInfo& t = info(name);
  const int bits = gguf_affine_bits(t.type);
  if (bits == 0 || t.dims.size() < 2)
    raise<Unsupported>("[gguf] {}: tensor '{}' ({}, {} dimensions) has no affine form", path_, name,
                       gguf_tensor_type_name(t.type), t.dims.size());
  const int64_t n = t.numel(), k = static_cast<int64_t>(t.dims[0]);
  Shape ws = t.shape(), ss = t.shape();
  // k * bits / 32 without the product (dims[0] may be huge when another dimension is zero).
  ws.back() = k / 32 * bits + k % 32 * bits / 32;
  ss.back() = k / 32;
  auto buffer = [n](int64_t count) {
    if (n == 0)  // no elements (a zero dimension): no buffer, whatever dims[0] says
      return std::make_pair(Buffer{nullptr, 0},
                            std::make_shared<Data>(Buffer{nullptr, 0}, cpu_device, [](Buffer) {}));
    Buffer b = allocator(cpu_device).malloc(static_cast<size_t>(count) * 4);
    return std::make_pair(b, std::make_shared<Data>(b, cpu_device));
  };
  auto [wb, wd] = buffer(n * bits / 32);
  auto [sb, sd] = buffer(n / 32);
  auto [bb, bd] = buffer(n / 32);
  if (n > 0)
    gguf_to_affine(t.type, data(t), n, static_cast<uint32_t*>(wb.ptr), static_cast<float*>(sb.ptr),
                   static_cast<float*>(bb.ptr));
  return {leaf(ws, uint32, std::move(wd)), leaf(ss, float32, std::move(sd)),
          leaf(ss, float32, std::move(bd)), bits};
}

}  // namespace ingot
