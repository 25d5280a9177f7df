// A binary cache of loaded tokenizer.json files: the BPE model's built tables (BpeSnapshot) and
// the rest of the tree as compact JSON, keyed by the file's content, in a per-user directory. It
// only saves time: any problem with a cache file means parsing the JSON as if it were absent.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "tokenizer/tokenizer_impl.h"

namespace ingot::tokenizer {

/// A 128-bit hash of bytes, not cryptographic (a few GB/s): tells tokenizer.json files apart.
struct ContentHash {
  uint64_t lo = 0, hi = 0;
  bool operator==(const ContentHash&) const = default;
};
/// The hash of `bytes`.
ContentHash content_hash(std::string_view bytes);

/// What names a tokenizer.json's cache entry: its bytes' hash and size.
struct CacheKey {
  ContentHash hash;
  uint64_t size = 0;
};
/// The key of a tokenizer.json text.
CacheKey cache_key(std::string_view tokenizer_json);

/// Whether and where to cache, as the environment says (cache_settings_from_env).
struct CacheSettings {
  bool enabled = false;        ///< false: neither read nor write
  bool verbose = false;        ///< one line on stderr per load (hit, miss, why not written)
  std::string dir;             ///< entries go to `dir`/tokenizer/
  size_t min_bytes = 1 << 20;  ///< smaller tokenizer.json files parse fast enough
};
/// INGOT_TOKENIZER_CACHE (0: off, verbose: on with a line per load; default on), the directory
/// $INGOT_CACHE_DIR, else $XDG_CACHE_HOME/ingot, else $HOME/.cache/ingot (none: off), and
/// INGOT_TOKENIZER_CACHE_MIN_BYTES (default 1 MiB).
CacheSettings cache_settings_from_env();

/// The cache file of `key` under `s.dir`.
std::string cache_path(const CacheSettings& s, const CacheKey& key);

/// The bytes of a cache file for a loaded tokenizer: `root` is tokenizer.json's tree without the
/// model's "vocab" and "merges", `model` the BPE model built from it.
std::string encode_cache(const CacheKey& key, const json& root, const Bpe& model);

/// A cache file's bytes from its payload (the header with `key`, sizes and checksum; for the
/// fuzz target, whose inputs would otherwise never pass the checksum).
std::string wrap_cache_payload(const CacheKey& key, std::string_view payload);

/// The pipeline a cache file's bytes describe, or nullptr when they are not a valid cache of
/// `key` (wrong magic, version, key or checksum, truncated, inconsistent). Never throws.
std::unique_ptr<Tokenizer::Impl> impl_from_cache(std::string_view bytes, const CacheKey& key);

/// Loads tokenizer.json's text through the cache: from the cache file of its key when that is
/// valid, else by parsing the text (errors as Impl::load_text) and then writing the cache file
/// (atomically; failures to write are ignored).
std::unique_ptr<Tokenizer::Impl> load_with_cache(std::string_view text, const std::string& source,
                                                 const CacheSettings& s);

}  // namespace ingot::tokenizer
