// The tokenizer cache (tokenizer/tokenizer_cache.h): loads through it give what parsing the JSON
// gives, for every tokenizer under tests/data and the fetched real ones; bad cache files (cut,
// flipped, another version or key) fall back to the JSON and are rewritten; the environment
// switches it off or points it elsewhere, and an unwritable directory changes nothing.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "scoped_env.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_cache.h"

namespace ingot::tokenizer {
namespace {

namespace fs = std::filesystem;
using testing::data_dir;
using testing::models_dir;
using testing::read_all;

using ingot::test::ScopedEnv;

/// A fresh temporary cache directory in INGOT_CACHE_DIR, caching files of any size.
class CacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("ingot_tokenizer_cache_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
    cache_dir_ = root_ / "cache";
    env_.set("INGOT_CACHE_DIR", cache_dir_.string());
    env_.set("INGOT_TOKENIZER_CACHE", std::nullopt);
    env_.set("INGOT_TOKENIZER_CACHE_MIN_BYTES", "0");
  }
  void TearDown() override { fs::remove_all(root_); }

  /// Cache files now in the cache directory.
  std::vector<fs::path> cache_files() const {
    std::vector<fs::path> out;
    std::error_code ec;
    for (auto& e : fs::recursive_directory_iterator(cache_dir_, ec))
      if (e.is_regular_file()) out.push_back(e.path());
    return out;
  }
  std::string cache_file_of(const fs::path& dir) const {
    return cache_path(cache_settings_from_env(), cache_key(read_all(dir / "tokenizer.json")));
  }
  Tokenizer load_uncached(const fs::path& dir) {
    ScopedEnv off;
    off.set("INGOT_TOKENIZER_CACHE", "0");
    return Tokenizer::from_dir(dir.string());
  }

  fs::path root_, cache_dir_;
  ScopedEnv env_;
};

std::vector<std::string> corpus_texts() {
  std::vector<std::string> out;
  std::istringstream in(read_all(data_dir() + "/corpus.jsonl"));
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("bytes_hex")) {
      std::string hex = j["bytes_hex"], b;
      for (size_t i = 0; i + 1 < hex.size(); i += 2)
        b += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
      out.push_back(b);
    } else {
      out.push_back(j["text"]);
    }
  }
  return out;
}

/// Everything a caller can observe of two tokenizers agrees on the corpus and a few extras.
void expect_same(const Tokenizer& a, const Tokenizer& b, const std::string& what) {
  SCOPED_TRACE(what);
  const int32_t n = a.vocab_size();  // (vocab_size() walks the vocab)
  ASSERT_EQ(n, b.vocab_size());
  for (int32_t id = 0; id < n; ++id) {
    ASSERT_EQ(a.id_to_token(id), b.id_to_token(id)) << "id " << id;
    ASSERT_EQ(a.is_special(id), b.is_special(id)) << "id " << id;
    if (auto t = a.id_to_token(id)) {
      ASSERT_EQ(a.token_to_id(*t), b.token_to_id(*t)) << *t;
    }
  }
  std::vector<std::string> texts = corpus_texts();
  texts.push_back(
      "<s>Hello</s> <unk> <|endoftext|> <start_of_turn>user\nHi<end_of_turn> [SPECIAL]");
  texts.push_back(" lead  and trail \t\n");
  for (const std::string& t : texts) {
    for (bool special : {false, true}) {
      const auto ids = a.encode(t, {.add_special_tokens = special});
      ASSERT_EQ(ids, b.encode(t, {.add_special_tokens = special})) << t;
      for (bool skip : {false, true})
        ASSERT_EQ(a.decode(ids, {.skip_special_tokens = skip}),
                  b.decode(ids, {.skip_special_tokens = skip}))
            << t;
    }
  }
  EXPECT_EQ(a.special_tokens().eos_ids, b.special_tokens().eos_ids);
  EXPECT_EQ(a.special_tokens().bos_id, b.special_tokens().bos_id);
  EXPECT_EQ(a.chat_template(), b.chat_template());
}

/// A small tokenizer with every kind of added token, byte fallback, unk and a template.
std::string synthetic_json(bool repeated_merges_key) {
  using json = nlohmann::json;
  json vocab = json::object();
  int32_t id = 0;
  for (const char* t : {"<unk>", "<s>", "</s>", "a", "b", "c", "ab", "abc", "\xE2\x96\x81", "h",
                        "e", "l", "o", "he", "ll", "hell", "hello", "\xE2\x96\x81hello"})
    vocab[t] = id++;
  for (int byte = 0; byte < 256; ++byte) vocab[fmt::format("<0x{:02X}>", byte)] = id++;
  json merges = json::array({"a b", "ab c", "h e", "l l", "he ll", "hell o", "\xE2\x96\x81 hello"});
  json model = {{"type", "BPE"},        {"vocab", vocab},        {"merges", merges},
                {"unk_token", "<unk>"}, {"byte_fallback", true}, {"fuse_unk", true},
                {"dropout", nullptr},   {"ignore_merges", false}};
  json added = json::array();
  const auto add = [&](int32_t tid, const char* content, bool special, bool lstrip, bool rstrip,
                       bool normalized) {
    added.push_back({{"id", tid},
                     {"content", content},
                     {"special", special},
                     {"lstrip", lstrip},
                     {"rstrip", rstrip},
                     {"single_word", false},
                     {"normalized", normalized}});
  };
  add(0, "<unk>", true, false, false, false);
  add(1, "<s>", true, false, false, false);
  add(2, "</s>", true, false, false, false);
  add(id, "[SPECIAL]", true, true, true, false);
  add(id + 1, "hello world", false, false, false, true);
  json j = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers", json::array({{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
                                     {{"type", "Replace"},
                                      {"pattern", {{"String", " "}}},
                                      {"content", "\xE2\x96\x81"}}})}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"pair", json::array()},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         json::array(
             {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}},
              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}}},
      {"model", model}};
  std::string text = j.dump(1);
  if (repeated_merges_key) {  // the scanner gives up on a repeated key: the tree path is taken
    const size_t at = text.find("\"merges\"");
    text.insert(at, "\"merges\": [\"x y\"],\n");
  }
  return text;
}

/// Every tokenizer the tests have: tests/data/models/*, the fetched real ones, two synthetic.
std::vector<fs::path> tokenizer_dirs(const fs::path& scratch) {
  std::vector<fs::path> dirs;
  for (auto& e : fs::directory_iterator(fs::path(data_dir()).parent_path() / "models"))
    if (fs::exists(e.path() / "tokenizer.json")) dirs.push_back(e.path());
  for (const char* name : {"gemma3", "qwen3", "llama3_1"})
    if (fs::exists(fs::path(models_dir()) / name / "tokenizer.json"))
      dirs.push_back(fs::path(models_dir()) / name);
  for (bool tree : {false, true}) {
    const fs::path d = scratch / (tree ? "synthetic_tree" : "synthetic");
    fs::create_directories(d);
    std::ofstream(d / "tokenizer.json", std::ios::binary) << synthetic_json(tree);
    std::ofstream(d / "tokenizer_config.json")
        << R"({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true})";
    dirs.push_back(d);
  }
  return dirs;
}

TEST_F(CacheTest, CachedLoadsMatchTheJson) {
  const auto dirs = tokenizer_dirs(root_ / "models");
  EXPECT_GE(dirs.size(), 4u);
  if (dirs.size() < 7) std::cerr << "(the fetched tokenizers are missing: not compared)\n";
  for (const fs::path& dir : dirs) {
    const Tokenizer want = load_uncached(dir);
    const std::string file = cache_file_of(dir);
    fs::remove(file);  // two directories of tests/data hold the same tokenizer.json
    const Tokenizer cold = Tokenizer::from_dir(dir.string());  // parses and writes the cache
    ASSERT_TRUE(fs::exists(file)) << dir;
    const std::string json_text = read_all(dir / "tokenizer.json");
    ASSERT_NE(impl_from_cache(read_all(file), cache_key(json_text)), nullptr) << dir;
    const Tokenizer warm = Tokenizer::from_dir(dir.string());  // reads the cache
    expect_same(want, cold, dir.string() + " (written)");
    expect_same(want, warm, dir.string() + " (read)");
  }
}

TEST_F(CacheTest, BadCacheFilesFallBackAndAreRewritten) {
  const fs::path dir = tokenizer_dirs(root_ / "models").back();  // synthetic, tree path
  const Tokenizer want = load_uncached(dir);
  (void)Tokenizer::from_dir(dir.string());
  const std::string file = cache_file_of(dir);
  const std::string good = read_all(file);
  const CacheKey key = cache_key(read_all(dir / "tokenizer.json"));
  ASSERT_NE(impl_from_cache(good, key), nullptr);

  std::vector<std::pair<std::string, std::string>> bad = {{"empty", ""},
                                                          {"garbage", std::string(300, 'x')}};
  for (size_t n :
       {size_t{1}, size_t{8}, size_t{55}, size_t{56}, size_t{57}, good.size() / 2, good.size() - 1})
    bad.emplace_back("truncated to " + std::to_string(n), good.substr(0, n));
  bad.emplace_back("one byte more", good + '\0');
  for (size_t at :
       {size_t{0}, size_t{8}, size_t{12}, size_t{16}, size_t{24}, size_t{32}, size_t{40},
        size_t{48}, size_t{60}, good.size() / 3, good.size() / 2, good.size() - 1}) {
    std::string b = good;
    b[at] = static_cast<char>(b[at] ^ 0x20);
    bad.emplace_back("byte " + std::to_string(at) + " flipped", b);
  }
  {
    std::string v = good;  // format version 2, schema 999
    v[8] = 2;
    bad.emplace_back("format version", v);
    v = good;
    v[12] = static_cast<char>(0xE7);
    v[13] = 3;
    bad.emplace_back("schema version", v);
  }
  // A valid file of another tokenizer.json under this one's name (another hash and size).
  bad.emplace_back("another key", wrap_cache_payload({{1, 2}, 3}, good.substr(56)));
  bad.emplace_back("another size", wrap_cache_payload({key.hash, key.size + 1}, good.substr(56)));
  for (const auto& [what, bytes] : bad) {
    SCOPED_TRACE(what);
    EXPECT_EQ(impl_from_cache(bytes, key), nullptr);
    std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
    const Tokenizer got = Tokenizer::from_dir(dir.string());
    expect_same(want, got, what);
    EXPECT_EQ(read_all(file), good) << "the cache file is rewritten";
  }
}

TEST_F(CacheTest, AChangedTokenizerJsonIsNotServedTheOldCache) {
  const fs::path dir = tokenizer_dirs(root_ / "models")[0];
  const Tokenizer before = Tokenizer::from_dir(dir.string());
  std::string text = read_all(dir / "tokenizer.json");
  const fs::path copy = root_ / "changed";
  fs::create_directories(copy);
  auto j = nlohmann::json::parse(text);
  const int32_t id = 1 << 20;  // above every id of the file
  j["model"]["vocab"]["zzz_new_token"] = id;
  std::ofstream(copy / "tokenizer.json", std::ios::binary) << j.dump();
  const Tokenizer after = Tokenizer::from_dir(copy.string());
  EXPECT_EQ(after.token_to_id("zzz_new_token"), id);
  EXPECT_EQ(after.id_to_token(id), "zzz_new_token");
  EXPECT_EQ(before.token_to_id("zzz_new_token"), std::nullopt);
  EXPECT_EQ(cache_files().size(), 2u);
}

TEST_F(CacheTest, DisabledByTheEnvironment) {
  env_.set("INGOT_TOKENIZER_CACHE", "0");
  const fs::path dir = tokenizer_dirs(root_ / "models")[0];
  (void)Tokenizer::from_dir(dir.string());
  (void)Tokenizer::from_dir(dir.string());
  EXPECT_FALSE(cache_settings_from_env().enabled);
  EXPECT_TRUE(cache_files().empty());
}

TEST_F(CacheTest, SmallFilesAreNotCachedByDefault) {
  env_.set("INGOT_TOKENIZER_CACHE_MIN_BYTES", std::nullopt);
  EXPECT_EQ(cache_settings_from_env().min_bytes, size_t{1} << 20);
  (void)Tokenizer::from_dir(tokenizer_dirs(root_ / "models")[0].string());  // 15 KB
  EXPECT_TRUE(cache_files().empty());
}

TEST_F(CacheTest, UnwritableCacheDirectoryIsIgnored) {
  const fs::path dir = tokenizer_dirs(root_ / "models").back();
  const Tokenizer want = load_uncached(dir);
  // A regular file where the directory should be: nothing can be created below it (whoever
  // runs the test, root included).
  const fs::path blocker = root_ / "not_a_dir";
  std::ofstream(blocker) << "x";
  env_.set("INGOT_CACHE_DIR", (blocker / "cache").string());
  expect_same(want, Tokenizer::from_dir(dir.string()), "unwritable");
  expect_same(want, Tokenizer::from_dir(dir.string()), "unwritable, again");
  // No HOME, XDG_CACHE_HOME or INGOT_CACHE_DIR: no cache at all.
  env_.set("INGOT_CACHE_DIR", std::nullopt);
  env_.set("XDG_CACHE_HOME", std::nullopt);
  env_.set("HOME", std::nullopt);
  EXPECT_FALSE(cache_settings_from_env().enabled);
  expect_same(want, Tokenizer::from_dir(dir.string()), "no home");
}

TEST_F(CacheTest, DirectoryFromTheEnvironment) {
  env_.set("INGOT_CACHE_DIR", std::nullopt);
  env_.set("XDG_CACHE_HOME", "/x/cache");
  env_.set("HOME", "/home/u");
  EXPECT_EQ(cache_settings_from_env().dir, "/x/cache/ingot");
  env_.set("XDG_CACHE_HOME", std::nullopt);
  EXPECT_EQ(cache_settings_from_env().dir, "/home/u/.cache/ingot");
  env_.set("INGOT_CACHE_DIR", "/c");
  EXPECT_EQ(cache_settings_from_env().dir, "/c");
  const CacheSettings s = cache_settings_from_env();
  EXPECT_TRUE(s.enabled);
  EXPECT_EQ(cache_path(s, {{0x1234, 0xABCD}, 7}),
            "/c/tokenizer/000000000000abcd0000000000001234.bin");
}

TEST(ContentHash, TellsBytesApart) {
  EXPECT_EQ(content_hash("abc"), content_hash("abc"));
  EXPECT_FALSE(content_hash("abc") == content_hash(std::string_view("abc\0", 4)));
  EXPECT_FALSE(content_hash("") == content_hash(std::string_view("\0", 1)));
  std::string big(100000, 'a');
  const ContentHash h = content_hash(big);
  for (size_t at : {size_t{0}, size_t{31}, size_t{32}, size_t{99990}, size_t{99999}}) {
    std::string b = big;
    b[at] = 'b';
    EXPECT_FALSE(content_hash(b) == h) << at;
  }
}

}  // namespace
}  // namespace ingot::tokenizer
