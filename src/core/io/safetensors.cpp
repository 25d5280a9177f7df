// safetensors reading (mmapped, zero-copy where the stored bytes are usable as they are) and
// deterministic writing. The header parser lives in safetensors_header.cpp.
#include "core/io/safetensors.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/ops/elementwise.h"
#include "util/mmap.h"

namespace ingot {

namespace {

/// An evaluated leaf array over `data`.
Array leaf(Shape shape, Dtype dt, std::shared_ptr<Data> data) {
  Array a(std::move(shape), dt, nullptr, {});
  a.set_data(std::move(data));
  a.set_evaluated();
  return a;
}

/// bfloat16 bits of a finite float, NaN or infinity (exact for every fp8 value).
uint16_t bf16_bits(float v) {
  return bfloat16_t(v).bits;
}

/// Lookup tables fp8 byte -> bfloat16 bits.
struct Fp8Tables {
  uint16_t e4m3[256], e5m2[256], e8m0[256];
  Fp8Tables() {
    for (int b = 0; b < 256; ++b) {
      float sign = (b & 0x80) ? -1.f : 1.f;
      // E4M3 "fn": bias 7, no infinities, S.1111.111 is NaN.
      int e = (b >> 3) & 0xF, m = b & 7;
      float v = (e == 0xF && m == 7) ? NAN
                : e == 0             ? std::ldexp(static_cast<float>(m), -9)
                                     : std::ldexp(1.f + m / 8.f, e - 7);
      e4m3[b] = bf16_bits(std::isnan(v) ? v : sign * v);
      // E5M2: IEEE-like, bias 15, the top byte of a float16.
      e5m2[b] = bf16_bits(static_cast<float>(float16_t::from_bits(static_cast<uint16_t>(b << 8))));
      // E8M0: an unsigned power of two 2^(b-127); 0xFF is NaN.
      e8m0[b] = bf16_bits(b == 0xFF ? NAN : std::ldexp(1.f, b - 127));
    }
  }
};
const Fp8Tables& fp8() {
  static const Fp8Tables t;
  return t;
}

/// Converts n stored elements at `src` into the loaded dtype at `dst`; false if a U64 value
/// does not fit int64.
bool convert(StDtype sd, const uint8_t* src, void* dst, int64_t n) {
  auto each = [&](auto out_tag, auto fn) {
    using O = decltype(out_tag);
    O* o = static_cast<O*>(dst);
    for (int64_t i = 0; i < n; ++i) o[i] = fn(i);
  };
  auto load = [&](auto tag, int64_t i) {
    decltype(tag) v;
    std::memcpy(&v, src + i * sizeof(v), sizeof(v));
    return v;
  };
  switch (sd) {
    case StDtype::I16:
      each(int32_t{}, [&](int64_t i) { return static_cast<int32_t>(load(int16_t{}, i)); });
      return true;
    case StDtype::U16:
      each(int32_t{}, [&](int64_t i) { return static_cast<int32_t>(load(uint16_t{}, i)); });
      return true;
    case StDtype::U64: {
      bool ok = true;
      each(int64_t{}, [&](int64_t i) {
        uint64_t v = load(uint64_t{}, i);
        ok &= v <= static_cast<uint64_t>(INT64_MAX);
        return static_cast<int64_t>(v);
      });
      return ok;
    }
    case StDtype::BOOL:
      each(uint8_t{}, [&](int64_t i) { return static_cast<uint8_t>(src[i] != 0); });
      return true;
    case StDtype::F8_E4M3:
    case StDtype::F8_E5M2:
    case StDtype::F8_E8M0: {
      const uint16_t* lut = sd == StDtype::F8_E4M3   ? fp8().e4m3
                            : sd == StDtype::F8_E5M2 ? fp8().e5m2
                                                     : fp8().e8m0;
      each(uint16_t{}, [&](int64_t i) { return lut[src[i]]; });
      return true;
    }
    default:  // same representation: a plain copy
      std::memcpy(dst, src, static_cast<size_t>(n) * st_dtype_size(sd));
      return true;
  }
}

/// True when the stored bytes can serve as the loaded dtype unchanged.
bool same_representation(StDtype sd) {
  switch (sd) {
    case StDtype::I16:
    case StDtype::U16:
    case StDtype::U64:
    case StDtype::F8_E4M3:
    case StDtype::F8_E5M2:
    case StDtype::F8_E8M0:
      return false;
    default:
      return true;
  }
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  try {
    map_ = MappedFile::open(path);
  } catch (const IoError& e) {
    raise<IoError>("[safetensors] {}", e.what());
  }
  header_ = parse_safetensors_header(map_->data(), map_->size(), map_->size(), path);
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_[header_.tensors[i].name] = i;
}

size_t SafetensorsFile::file_size() const {
  return map_->size();
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> r;
  r.reserve(index_.size());
  for (auto& [k, v] : index_) r.push_back(k);
  return r;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end())
    raise<FormatError>("[safetensors] {}: no tensor named '{}' ({} tensors in the file)", path_,
                       name, index_.size());
  return header_.tensors[it->second];
}

Array SafetensorsFile::load(const std::string& name, const LoadOptions& opts) const {
  const TensorInfo& t = info(name);
  const Dtype dt = t.dtype();
  const uint8_t* src = map_->data() + header_.data_start + t.begin;
  const int64_t n = shape_size(t.shape);
  bool zero_copy = !opts.copy && same_representation(t.stored_dtype) &&
                   reinterpret_cast<uintptr_t>(src) % size_of(dt) == 0;
  if (zero_copy && t.stored_dtype == StDtype::BOOL)  // bool bytes other than 0/1 get normalised
    zero_copy = std::all_of(src, src + n, [](uint8_t b) { return b <= 1; });
  Array a;
  if (zero_copy || n == 0) {
    std::shared_ptr<MappedFile> keep = map_;
    auto data = std::make_shared<Data>(Buffer{const_cast<uint8_t*>(src), t.nbytes()}, cpu_device,
                                       [keep](Buffer) {});
    a = leaf(t.shape, dt, std::move(data));
  } else {
    size_t bytes = static_cast<size_t>(n) * size_of(dt);
    Buffer b = allocator(cpu_device).malloc(bytes);
    auto data = std::make_shared<Data>(b, cpu_device);  // frees b if convert throws
    if (!convert(t.stored_dtype, src, b.ptr, n))
      raise<FormatError>("[safetensors] {}: tensor '{}': U64 value does not fit int64", path_,
                         name);
    a = leaf(t.shape, dt, std::move(data));
  }
  if (opts.dtype && is_floating(dt) && *opts.dtype != dt) a = astype(a, *opts.dtype);
  return a;
}

std::map<std::string, Array> SafetensorsFile::load_all(const LoadOptions& opts) const {
  std::map<std::string, Array> r;
  for (const auto& t : header_.tensors) r.emplace(t.name, load(t.name, opts));
  return r;
}

std::map<std::string, Array> load_safetensors(const std::string& path, const LoadOptions& opts,
                                              std::map<std::string, std::string>* metadata) {
  SafetensorsFile f(path);
  if (metadata) *metadata = f.metadata();
  return f.load_all(opts);
}

namespace {

/// Row-major host bytes of an evaluated array (a view into it when already row contiguous on
/// the CPU).
const uint8_t* host_bytes(const Array& a, std::vector<uint8_t>& tmp) {
  if (a.size() == 0) return nullptr;
  if (a.device().type == Device::Type::cpu && a.flags().row_contiguous && a.data_size() == a.size())
    return static_cast<const uint8_t*>(a.raw_ptr());
  tmp.resize(a.nbytes());
  read_row_major(a, tmp.data());  // GPU arrays: waits for the device and copies
  return tmp.data();
}

std::string json_string(const std::string& s, const char* what) {
  try {
    return nlohmann::json(s).dump();
  } catch (const nlohmann::json::exception&) {
    raise("[safetensors] {} '{}' is not valid UTF-8", what, s);
  }
}

}  // namespace

void save_safetensors(const std::string& path, const std::map<std::string, Array>& arrays,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<const std::pair<const std::string, Array>*> order;
  std::vector<Array> to_eval;
  for (auto& kv : arrays) {
    if (kv.first.empty() || kv.first == "__metadata__")
      raise("[safetensors] cannot save a tensor named '{}' to {}", kv.first, path);
    if (!kv.second.valid()) raise("[safetensors] tensor '{}' is an empty array handle", kv.first);
    order.push_back(&kv);
    to_eval.push_back(kv.second);
  }
  eval(to_eval);
  // Data order: widest element type first, then by name, so that every tensor stays aligned
  // for its type when the header length is a multiple of 8 (as the reference writer does).
  std::stable_sort(order.begin(), order.end(),
                   [](auto* a, auto* b) { return a->second.itemsize() > b->second.itemsize(); });
  std::map<std::string, std::pair<uint64_t, uint64_t>> offsets;
  uint64_t pos = 0;
  for (auto* kv : order) {
    offsets[kv->first] = {pos, pos + kv->second.nbytes()};
    pos += kv->second.nbytes();
  }
  // Header: "__metadata__" first, then tensors by name (std::map order).
  std::string h = "{";
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    bool first = true;
    for (auto& [k, v] : metadata) {
      if (!first) h += ',';
      h += fmt::format("{}:{}", json_string(k, "metadata key"), json_string(v, "metadata value"));
      first = false;
    }
    h += "}";
  }
  for (auto& [name, a] : arrays) {
    if (h.size() > 1) h += ",";
    auto [b, e] = offsets[name];
    std::string shape = fmt::format("{}", fmt::join(a.shape(), ","));
    h += fmt::format("{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
                     json_string(name, "tensor name"),
                     st_dtype_name(st_dtype_from_ingot(a.dtype())), shape, b, e);
  }
  h += "}";
  while (h.size() % 8 != 0) h += ' ';
  // Write to a temporary file next to the target, then rename: readers never see half a file.
  std::string tmp = fmt::format("{}.tmp{}", path, static_cast<long>(::getpid()));
  std::FILE* fp = std::fopen(tmp.c_str(), "wb");
  if (!fp) raise<IoError>("[safetensors] cannot create {}: {}", tmp, std::strerror(errno));
  bool ok = true;
  uint8_t len[8];
  for (int i = 0; i < 8; ++i)
    len[i] = static_cast<uint8_t>(static_cast<uint64_t>(h.size()) >> (8 * i));
  ok &= std::fwrite(len, 1, 8, fp) == 8;
  ok &= std::fwrite(h.data(), 1, h.size(), fp) == h.size();
  std::vector<uint8_t> scratch;
  for (auto* kv : order) {
    const Array& a = kv->second;
    const uint8_t* p = host_bytes(a, scratch);
    if (p) ok &= std::fwrite(p, 1, a.nbytes(), fp) == a.nbytes();
  }
  int err = errno;
  ok &= std::fclose(fp) == 0;
  if (!ok) {
    std::remove(tmp.c_str());
    raise<IoError>("[safetensors] writing {} failed: {}", path, std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    std::remove(tmp.c_str());
    raise<IoError>("[safetensors] cannot rename {} to {}: {}", tmp, path, std::strerror(err));
  }
}

}  // namespace ingot
