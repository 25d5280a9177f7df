// safetensors header parsing and validation: the 8-byte length prefix, a duplicate-rejecting JSON
// parse, per-tensor entries and the layout of the data section (ordered, no overlaps or gaps).
#include <algorithm>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "core/io/safetensors.h"

namespace ingot {

using json = nlohmann::json;

namespace {

constexpr uint64_t kMaxHeader = 100ull * 1000 * 1000;  // 100 MB, as the reference reader
constexpr int kMaxDepth = 16;

struct StDtypeRow {
  StDtype t;
  const char* name;
  size_t size;
  Dtype ingot;
};
constexpr StDtypeRow kDtypes[] = {
    {StDtype::BOOL, "BOOL", 1, Dtype::bool_},
    {StDtype::U8, "U8", 1, Dtype::uint8},
    {StDtype::I8, "I8", 1, Dtype::int8},
    {StDtype::I16, "I16", 2, Dtype::int32},
    {StDtype::U16, "U16", 2, Dtype::int32},
    {StDtype::I32, "I32", 4, Dtype::int32},
    {StDtype::U32, "U32", 4, Dtype::uint32},
    {StDtype::I64, "I64", 8, Dtype::int64},
    {StDtype::U64, "U64", 8, Dtype::int64},
    {StDtype::F16, "F16", 2, Dtype::float16},
    {StDtype::BF16, "BF16", 2, Dtype::bfloat16},
    {StDtype::F32, "F32", 4, Dtype::float32},
    {StDtype::F64, "F64", 8, Dtype::float64},
    {StDtype::F8_E4M3, "F8_E4M3", 1, Dtype::bfloat16},
    {StDtype::F8_E5M2, "F8_E5M2", 1, Dtype::bfloat16},
    {StDtype::F8_E8M0, "F8_E8M0", 1, Dtype::bfloat16},
};

const StDtypeRow& row(StDtype t) {
  for (auto& r : kDtypes)
    if (r.t == t) return r;
  return kDtypes[0];
}

/// JSON text of a value for messages (invalid UTF-8 replaced, never throws).
std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string type_of(const json& j) {
  if (j.is_number_float()) return "a non-integer number " + dump(j);
  if (j.is_number()) return "the number " + dump(j);
  if (j.is_string()) return "a string";
  if (j.is_boolean()) return "a boolean";
  if (j.is_null()) return "null";
  if (j.is_array()) return "an array";
  return "an object";
}

/// Parses JSON rejecting duplicate keys at any level (nlohmann would keep the last silently) and
/// nesting deeper than kMaxDepth.
json parse_strict(const char* first, const char* last, const std::string& file) {
  struct Level {
    bool object;
    std::set<std::string> keys;
  };
  std::vector<Level> stack;
  std::string entry;  // top-level key being parsed (tensor name)
  auto cb = [&](int depth, json::parse_event_t ev, json& parsed) -> bool {
    switch (ev) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (stack.size() >= kMaxDepth)
          raise<FormatError>("[safetensors] {}: header JSON nests deeper than {} levels", file,
                             kMaxDepth);
        stack.push_back({ev == json::parse_event_t::object_start, {}});
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!stack.empty()) stack.pop_back();
        break;
      case json::parse_event_t::key: {
        std::string k = parsed.get<std::string>();
        if (stack.size() == 1) entry = k;
        if (!stack.empty() && !stack.back().keys.insert(k).second) {
          if (stack.size() == 1)
            raise<FormatError>("[safetensors] {}: duplicate tensor name '{}' in the header", file,
                               k);
          raise<FormatError>("[safetensors] {}: tensor '{}': duplicate key '{}'", file, entry, k);
        }
        break;
      }
      default:
        break;
    }
    (void)depth;
    return true;
  };
  try {
    return json::parse(first, last, cb, /*allow_exceptions=*/true);
  } catch (const json::exception& e) {
    raise<FormatError>("[safetensors] {}: header is not valid JSON: {}", file, e.what());
  }
}

/// A non-negative integer JSON value, or nullopt.
std::optional<uint64_t> as_uint(const json& j) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  if (j.is_number_integer()) {
    int64_t v = j.get<int64_t>();
    if (v >= 0) return static_cast<uint64_t>(v);
  }
  return std::nullopt;
}

TensorInfo parse_entry(const std::string& name, const json& e, const std::string& file) {
  auto bad = [&](auto&&... parts) {
    std::string msg = fmt::format("[safetensors] {}: tensor '{}': ", file, name);
    ((msg += parts), ...);
    throw FormatError(msg);
  };
  if (!e.is_object()) bad("entry is ", type_of(e), ", expected an object");
  TensorInfo t;
  t.name = name;
  auto dt = e.find("dtype");
  if (dt == e.end()) bad("missing \"dtype\"");
  if (!dt->is_string()) bad("\"dtype\" is ", type_of(*dt), ", expected a string");
  auto sd = st_dtype_from_name(dt->get<std::string>());
  if (!sd)
    bad("unknown dtype '", dt->get<std::string>(),
        "' (known: BOOL, U8, I8, I16, U16, I32, U32, I64, U64, F16, BF16, F32, F64, F8_E4M3, "
        "F8_E5M2, F8_E8M0)");
  t.stored_dtype = *sd;
  auto sh = e.find("shape");
  if (sh == e.end()) bad("missing \"shape\"");
  if (!sh->is_array()) bad("\"shape\" is ", type_of(*sh), ", expected an array of integers");
  // Element count in 128 bits so that a huge shape cannot overflow before the size check.
  unsigned __int128 count = 1;
  for (const auto& d : *sh) {
    auto v = as_uint(d);
    if (!v) bad("shape ", dump(*sh), " has ", type_of(d), ", expected non-negative integers");
    if (*v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      bad("shape ", dump(*sh), " has a dimension too large");
    t.shape.push_back(static_cast<int64_t>(*v));
    count *= *v;
    if (count > (static_cast<unsigned __int128>(1) << 64))
      count = static_cast<unsigned __int128>(1) << 64;
  }
  auto off = e.find("data_offsets");
  if (off == e.end()) bad("missing \"data_offsets\"");
  if (!off->is_array() || off->size() != 2)
    bad("\"data_offsets\" is ", dump(*off), ", expected [begin, end]");
  auto b = as_uint((*off)[0]), en = as_uint((*off)[1]);
  if (!b || !en) bad("\"data_offsets\" ", dump(*off), " are not non-negative integers");
  if (*en < *b) bad("\"data_offsets\" ", dump(*off), " end before they begin");
  t.begin = *b;
  t.end = *en;
  unsigned __int128 need = count * st_dtype_size(t.stored_dtype);
  if (need != static_cast<unsigned __int128>(t.nbytes())) {
    std::string n = need >= (static_cast<unsigned __int128>(1) << 64)
                        ? std::string("more than 2^64")
                        : std::to_string(static_cast<uint64_t>(need));
    bad("shape ", shape_str(t.shape), " of ", std::string(st_dtype_name(t.stored_dtype)), " needs ",
        n, " bytes but data_offsets ", dump(*off), " hold ", std::to_string(t.nbytes()));
  }
  return t;
}

void parse_metadata(const json& m, const std::string& file,
                    std::map<std::string, std::string>& out) {
  if (!m.is_object())
    raise<FormatError>("[safetensors] {}: \"__metadata__\" is {}, expected an object of strings",
                       file, type_of(m));
  for (auto it = m.begin(); it != m.end(); ++it) {
    if (!it->is_string())
      raise<FormatError>("[safetensors] {}: \"__metadata__\" key '{}' is {}, expected a string",
                         file, it.key(), type_of(*it));
    out[it.key()] = it->get<std::string>();
  }
}

/// Ranges must tile the data section exactly: ascending, no overlap, no gap, nothing after.
void check_layout(std::vector<TensorInfo>& ts, uint64_t data_size, const std::string& file) {
  std::sort(ts.begin(), ts.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin
           : a.end != b.end   ? a.end < b.end
                              : a.name < b.name;
  });
  uint64_t pos = 0;
  const TensorInfo* prev = nullptr;
  for (const auto& t : ts) {
    if (t.end > data_size)
      raise<FormatError>(
          "[safetensors] {}: tensor '{}': data_offsets [{}, {}] run past the end of the data "
          "section ({} bytes; file truncated?)",
          file, t.name, t.begin, t.end, data_size);
    if (t.begin < pos)
      raise<FormatError>("[safetensors] {}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", file,
                         prev->name, prev->begin, prev->end, t.name, t.begin, t.end);
    if (t.begin > pos) {
      if (prev)
        raise<FormatError>(
            "[safetensors] {}: gap of {} bytes between tensor '{}' (ends at {}) and tensor '{}' "
            "(begins at {})",
            file, t.begin - pos, prev->name, pos, t.name, t.begin);
      raise<FormatError>("[safetensors] {}: gap of {} bytes before the first tensor '{}'", file,
                         t.begin, t.name);
    }
    pos = t.end;
    prev = &t;
  }
  if (pos != data_size) {
    if (prev)
      raise<FormatError>(
          "[safetensors] {}: {} unused bytes after the last tensor '{}' (ends at {}, data section "
          "is {} bytes)",
          file, data_size - pos, prev->name, pos, data_size);
    raise<FormatError>("[safetensors] {}: {} unused bytes in a file without tensors", file,
                       data_size);
  }
}

}  // namespace

std::string_view st_dtype_name(StDtype t) {
  return row(t).name;
}
std::optional<StDtype> st_dtype_from_name(std::string_view s) {
  for (auto& r : kDtypes)
    if (s == r.name) return r.t;
  return std::nullopt;
}
size_t st_dtype_size(StDtype t) {
  return row(t).size;
}
Dtype st_dtype_to_ingot(StDtype t) {
  return row(t).ingot;
}
StDtype st_dtype_from_ingot(Dtype t) {
  switch (t) {
    case Dtype::bool_:
      return StDtype::BOOL;
    case Dtype::uint8:
      return StDtype::U8;
    case Dtype::int8:
      return StDtype::I8;
    case Dtype::int32:
      return StDtype::I32;
    case Dtype::uint32:
      return StDtype::U32;
    case Dtype::int64:
      return StDtype::I64;
    case Dtype::float16:
      return StDtype::F16;
    case Dtype::bfloat16:
      return StDtype::BF16;
    case Dtype::float32:
      return StDtype::F32;
    case Dtype::float64:
      return StDtype::F64;
  }
  return StDtype::F32;
}

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t available, size_t file_size,
                                           const std::string& filename) {
  const std::string& f = filename;
  if (file_size < 8 || available < 8)
    raise<FormatError>(
        "[safetensors] {}: file is {} bytes, too short for the 8-byte header length (truncated?)",
        f, file_size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];  // little-endian
  if (n > kMaxHeader)
    raise<FormatError>("[safetensors] {}: header length {} bytes exceeds the 100 MB limit", f, n);
  if (n > file_size - 8)
    raise<FormatError>(
        "[safetensors] {}: header length {} bytes is larger than the file ({} bytes; truncated?)",
        f, n, file_size);
  if (n > available - 8)
    raise<FormatError>("[safetensors] {}: header of {} bytes not fully available", f, n);
  const char* first = reinterpret_cast<const char*>(bytes + 8);
  if (n == 0 || first[0] != '{')
    raise<FormatError>("[safetensors] {}: header is not a JSON object (it must start with '{{')",
                       f);
  json j = parse_strict(first, first + n, f);
  if (!j.is_object())
    raise<FormatError>("[safetensors] {}: header is {}, expected a JSON object", f, type_of(j));
  SafetensorsHeader h;
  h.header_size = n;
  h.data_start = 8 + n;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__")
      parse_metadata(*it, f, h.metadata);
    else
      h.tensors.push_back(parse_entry(it.key(), *it, f));
  }
  check_layout(h.tensors, file_size - h.data_start, f);
  return h;
}

}  // namespace ingot
