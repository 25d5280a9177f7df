// The tokenizer cache (tokenizer_cache.h): file layout, a bounds-checked reader, atomic writes.
// A file is a fixed header (magic, versions, the tokenizer.json's size and hash, the payload's
// size and hash) and a payload: the tree without vocab/merges as JSON text, the vocab's keys
// (their end offsets, ids, then the bytes) and the merges as (left, right, rank, merged) ids.
// Integers are little-endian; every count is checked against the bytes left before use.
#include "tokenizer/tokenizer_cache.h"

#include <unistd.h>

#include <atomic>
#include <bit>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "util/env.h"
#include "util/error.h"

namespace ingot::tokenizer {

namespace fs = std::filesystem;

namespace {

static_assert(std::endian::native == std::endian::little, "the cache layout is little-endian");

constexpr char kMagic[8] = {'i', 'n', 'g', 'o', 't', 'T', 'K', 'C'};
/// The file layout's version: bump when the header or payload layout changes.
constexpr uint32_t kFormatVersion = 1;
/// What the payload means to this build: bump when the tables' semantics change (the scanner,
/// Bpe's vocab or merge rules, the tree's handling), so older caches are parsed again.
constexpr uint32_t kSchemaVersion = 1;
constexpr size_t kHeaderBytes = 8 + 4 + 4 + 8 + 16 + 8 + 8;
/// Vocab ids above this are not cached (the id -> key table would be this long); such a file is
/// simply parsed each time. Keeps a crafted cache from asking for gigabytes.
constexpr int32_t kMaxCachedId = 1 << 24;

// ---- hash: four independent 64-bit lanes over 32-byte blocks, then a mixed-down tail ----

constexpr uint64_t kP1 = 0x9E3779B97F4A7C15ull, kP2 = 0xC2B2AE3D27D4EB4Full,
                   kP3 = 0xFF51AFD7ED558CCDull, kP4 = 0x165667B19E3779F9ull;

uint64_t load64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
uint64_t lane(uint64_t acc, uint64_t word) {
  return std::rotl(acc ^ (word * kP2), 31) * kP1;
}
uint64_t avalanche(uint64_t x) {
  x ^= x >> 33;
  x *= kP3;
  x ^= x >> 29;
  x *= kP4;
  x ^= x >> 32;
  return x;
}

// ---- payload writing and reading ----

void put_u32(std::string& out, uint32_t v) {
  out.append(reinterpret_cast<const char*>(&v), 4);
}
void put_u64(std::string& out, uint64_t v) {
  out.append(reinterpret_cast<const char*>(&v), 8);
}

/// Reads a byte range front to back; every read checks what is left and fails softly.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : rest_(bytes), size_(bytes.size()) {}
  bool u32(uint32_t& v) { return raw(&v, 4); }
  bool u64(uint64_t& v) { return raw(&v, 8); }
  bool bytes(size_t n, std::string_view& out) {
    if (n > rest_.size()) return false;
    out = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return true;
  }
  /// A count of items of `item_bytes` each that the bytes left can hold.
  bool count(size_t item_bytes, size_t& n) {
    uint64_t v = 0;
    if (!u64(v) || v > rest_.size() / item_bytes) return false;
    n = static_cast<size_t>(v);
    return true;
  }
  bool done() const { return rest_.empty(); }
  size_t offset() const { return size_ - rest_.size(); }

 private:
  bool raw(void* v, size_t n) {
    if (n > rest_.size()) return false;
    std::memcpy(v, rest_.data(), n);
    rest_.remove_prefix(n);
    return true;
  }
  std::string_view rest_;
  size_t size_;
};

struct Payload {
  std::string_view root;
  BpeSnapshot bpe;  // views into the bytes read
};

/// Zero bytes that put the merges at a multiple of 16 bytes from the file's start (the file is
/// read into an aligned buffer, so they can be used where they lie).
size_t merge_padding(size_t payload_offset) {
  return (16 - (kHeaderBytes + payload_offset) % 16) % 16;
}

std::optional<Payload> read_payload(std::string_view bytes) {
  Reader r(bytes);
  Payload p;
  size_t root_len = 0, n_vocab = 0, n_merges = 0, blob_len = 0;
  if (!r.count(1, root_len) || !r.bytes(root_len, p.root)) return std::nullopt;
  std::string_view ends, ids, blob, pad, merges;
  if (!r.count(8, n_vocab) || !r.bytes(4 * n_vocab, ends) || !r.bytes(4 * n_vocab, ids) ||
      !r.count(1, blob_len) || !r.bytes(blob_len, blob))
    return std::nullopt;
  p.bpe.vocab.reserve(n_vocab);
  uint32_t begin = 0;
  for (size_t i = 0; i < n_vocab; ++i) {
    uint32_t end = 0;
    int32_t id = 0;
    std::memcpy(&end, ends.data() + 4 * i, 4);
    std::memcpy(&id, ids.data() + 4 * i, 4);
    if (end < begin || end > blob_len || id < 0 || id > kMaxCachedId) return std::nullopt;
    p.bpe.vocab.emplace_back(blob.substr(begin, end - begin), id);
    begin = end;
  }
  if (begin != blob_len || !r.count(16, n_merges)) return std::nullopt;
  if (!r.bytes(merge_padding(r.offset()), pad) || !r.bytes(16 * n_merges, merges) || !r.done())
    return std::nullopt;
  static_assert(sizeof(BpeSnapshot::Merge) == 16 && alignof(BpeSnapshot::Merge) <= 16);
  if (reinterpret_cast<uintptr_t>(merges.data()) % alignof(BpeSnapshot::Merge) != 0)
    return std::nullopt;  // bytes not read from the start of a mapping or an allocation
  p.bpe.merges = {reinterpret_cast<const BpeSnapshot::Merge*>(merges.data()), n_merges};
  return p;
}

/// Whether a header names `key` and the payload that follows it, and where the payload is.
bool check_header(std::string_view bytes, const CacheKey& key, std::string_view& payload) {
  Reader r(bytes);
  std::string_view magic;
  uint32_t format = 0, schema = 0;
  uint64_t size = 0, lo = 0, hi = 0, payload_len = 0, payload_hash = 0;
  if (!r.bytes(8, magic) || magic != std::string_view(kMagic, 8) || !r.u32(format) ||
      format != kFormatVersion || !r.u32(schema) || schema != kSchemaVersion || !r.u64(size) ||
      !r.u64(lo) || !r.u64(hi) || !r.u64(payload_len) || !r.u64(payload_hash))
    return false;
  if (size != key.size || lo != key.hash.lo || hi != key.hash.hi) return false;
  if (payload_len != bytes.size() - kHeaderBytes) return false;  // truncated or extended
  payload = bytes.substr(kHeaderBytes);
  return content_hash(payload).lo == payload_hash;
}

struct HugeFree {
  size_t bytes;
  void operator()(char* p) const { huge_page_free(p, bytes); }
};

void note(const CacheSettings& s, const std::string& what) {
  if (s.verbose) std::fprintf(stderr, "[tokenizer] cache: %s\n", what.c_str());
}

/// Writes `bytes` to `path` through a temporary file in its directory and a rename, so readers
/// see the old file or the whole new one. Returns "" or why it failed.
std::string write_atomically(const fs::path& path, const std::string& bytes) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) return "cannot create " + path.parent_path().string() + ": " + ec.message();
  static std::atomic<uint64_t> serial{0};
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  const fs::path tmp = path.string() + ".tmp." + std::to_string(getpid()) + "." +
                       std::to_string(static_cast<uint64_t>(now)) + "." +
                       std::to_string(serial.fetch_add(1));
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return "cannot create " + tmp.string();
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    f.close();
    if (!f) {
      fs::remove(tmp, ec);
      return "cannot write " + tmp.string();
    }
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    return "cannot rename to " + path.string() + ": " + ec.message();
  }
  return {};
}

}  // namespace

ContentHash content_hash(std::string_view bytes) {
  uint64_t v[4] = {kP1, kP2, kP3, kP4};
  const char* p = bytes.data();
  size_t n = bytes.size();
  for (; n >= 32; p += 32, n -= 32)
    for (int i = 0; i < 4; ++i) v[i] = lane(v[i], load64(p + 8 * i));
  if (n > 0) {  // the tail, zero-padded (the length below tells "a" from "a\0")
    char tail[32] = {};
    std::memcpy(tail, p, n);
    for (int i = 0; i < 4; ++i) v[i] = lane(v[i], load64(tail + 8 * i));
  }
  const uint64_t len = bytes.size();
  const uint64_t a = avalanche(v[0] ^ std::rotl(v[1], 17) ^ (len * kP4));
  const uint64_t b = avalanche(v[2] ^ std::rotl(v[3], 41) ^ len);
  return {avalanche(a + std::rotl(b, 23) + v[3]), avalanche(b ^ std::rotl(a, 11) ^ v[0])};
}

CacheKey cache_key(std::string_view tokenizer_json) {
  return {content_hash(tokenizer_json), tokenizer_json.size()};
}

CacheSettings cache_settings_from_env() {
  CacheSettings s;
  const auto mode = env::get("INGOT_TOKENIZER_CACHE");
  if (mode && *mode == "0") return s;
  s.verbose = mode && *mode == "verbose";
  if (auto d = env::get("INGOT_CACHE_DIR")) {
    s.dir = *d;
  } else if (auto x = env::get("XDG_CACHE_HOME")) {
    s.dir = (fs::path(*x) / "ingot").string();
  } else if (auto h = env::get("HOME")) {
    s.dir = (fs::path(*h) / ".cache" / "ingot").string();
  } else {
    return s;  // nowhere to keep it
  }
  s.enabled = true;
  s.min_bytes = static_cast<size_t>(
      std::max<long>(0, env::get_int("INGOT_TOKENIZER_CACHE_MIN_BYTES", 1 << 20)));
  return s;
}

std::string cache_path(const CacheSettings& s, const CacheKey& key) {
  char name[48];
  std::snprintf(name, sizeof name, "%016llx%016llx.bin",
                static_cast<unsigned long long>(key.hash.hi),
                static_cast<unsigned long long>(key.hash.lo));
  return (fs::path(s.dir) / "tokenizer" / name).string();
}

std::string encode_cache(const CacheKey& key, const json& root, const Bpe& model) {
  const std::vector<std::string>& keys = model.vocab().keys();
  const std::vector<int32_t>& ids = model.vocab().ids();
  const std::vector<BpeSnapshot::Merge> merges = model.merges_by_rank();
  const std::string root_text = root.dump();
  size_t blob_len = 0;
  for (const std::string& k : keys) blob_len += k.size();
  if (blob_len > UINT32_MAX) raise<Unsupported>("[tokenizer] vocab too large to cache");
  std::string payload;
  payload.reserve(root_text.size() + 8 * keys.size() + blob_len + 16 * merges.size() + 64);
  put_u64(payload, root_text.size());
  payload += root_text;
  put_u64(payload, keys.size());
  uint32_t end = 0;
  for (const std::string& k : keys) put_u32(payload, end += static_cast<uint32_t>(k.size()));
  for (int32_t id : ids) put_u32(payload, static_cast<uint32_t>(id));
  put_u64(payload, blob_len);
  for (const std::string& k : keys) payload += k;
  put_u64(payload, merges.size());
  payload.append(merge_padding(payload.size()), '\0');
  payload.append(reinterpret_cast<const char*>(merges.data()), 16 * merges.size());
  return wrap_cache_payload(key, payload);
}

std::string wrap_cache_payload(const CacheKey& key, std::string_view payload) {
  std::string out;
  out.reserve(kHeaderBytes + payload.size());
  out.append(kMagic, 8);
  put_u32(out, kFormatVersion);
  put_u32(out, kSchemaVersion);
  put_u64(out, key.size);
  put_u64(out, key.hash.lo);
  put_u64(out, key.hash.hi);
  put_u64(out, payload.size());
  put_u64(out, content_hash(payload).lo);
  out += payload;
  return out;
}

std::unique_ptr<Tokenizer::Impl> impl_from_cache(std::string_view bytes, const CacheKey& key) {
  std::string_view payload_bytes;
  if (!check_header(bytes, key, payload_bytes)) return nullptr;
  try {
    std::optional<Payload> p = read_payload(payload_bytes);
    if (!p) return nullptr;
    json root = json::parse(p->root);
    if (!root.is_object() || !root.contains("model") || !root["model"].is_object()) return nullptr;
    auto impl = std::make_unique<Tokenizer::Impl>();
    impl->model = std::make_unique<Bpe>(root["model"], p->bpe);
    impl->load(root);
    return impl;
  } catch (...) {  // outside data: anything wrong with it means "no cache", never an error
    return nullptr;
  }
}

std::unique_ptr<Tokenizer::Impl> load_with_cache(std::string_view text, const std::string& source,
                                                 const CacheSettings& s) {
  auto impl = std::make_unique<Tokenizer::Impl>();
  if (!s.enabled || text.size() < s.min_bytes) {
    impl->load_text(text, source);
    return impl;
  }
  const CacheKey key = cache_key(text);
  const std::string path = cache_path(s, key);
  try {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    if (f) {
      // Read, not mapped: a file cut short under a mapping would be a SIGBUS, not a miss. The
      // buffer is not zero-filled and sits on huge pages (few page faults).
      const auto size = static_cast<size_t>(std::max<std::streamoff>(0, f.tellg()));
      const std::unique_ptr<char, HugeFree> buf(static_cast<char*>(huge_page_alloc(size + 1)),
                                                HugeFree{size + 1});
      f.seekg(0);
      f.read(buf.get(), static_cast<std::streamsize>(size));
      const std::string_view bytes(buf.get(), f ? size : 0);
      if (auto cached = impl_from_cache(bytes, key)) {
        note(s, "read " + path);
        return cached;
      }
      note(s, path + " is not a valid cache of " + source + "; parsing the JSON");
    }
  } catch (const std::exception& e) {
    note(s, std::string("cannot read ") + path + ": " + e.what());
  }
  json root;
  impl->load_text(text, source, &root);  // a bad tokenizer.json throws here: nothing is written
  try {
    int32_t max_id = -1;
    for (int32_t id : impl->model->vocab().ids()) max_id = std::max(max_id, id);
    if (max_id > kMaxCachedId) {
      note(s, "vocab ids too large to cache");
      return impl;
    }
    const std::string why = write_atomically(path, encode_cache(key, root, *impl->model));
    note(s, why.empty() ? "wrote " + path : why);
  } catch (const std::exception& e) {
    note(s, std::string("not written: ") + e.what());
  }
  return impl;
}

}  // namespace ingot::tokenizer
