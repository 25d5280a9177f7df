// Tokenizer: loading tokenizer.json (+ configs) and the encode/decode pipeline of `tokenizers`:
// added tokens -> normalizer -> pre-tokenizer -> BPE -> post-processor; decode via the decoder.
#include "tokenizer/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "tokenizer/tokenizer_cache.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/tokenizer_json.h"
#include "util/error.h"
#include "util/mmap.h"
#include "util/utf8.h"

namespace ingot::tokenizer {

namespace fs = std::filesystem;

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary | std::ios::ate);
  if (!f) raise<IoError>("[tokenizer] cannot open {}", p.string());
  const std::streamoff size = f.tellg();
  std::string s;
  if (size > 0) {
    s.resize(static_cast<size_t>(size));
    f.seekg(0);
    f.read(s.data(), size);
    s.resize(static_cast<size_t>(f.gcount()));
  }
  // A file whose size the stream cannot tell (a pipe): read to the end.
  if (size <= 0 || f.peek() != std::char_traits<char>::eof()) {
    f.clear();
    std::ostringstream ss;
    ss << f.rdbuf();
    s += ss.str();
  }
  return s;
}

json parse_json(std::string_view text, const std::string& what) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    raise<FormatError>("[tokenizer] {}: invalid JSON: {}", what, e.what());
  }
}

// A token entry of tokenizer_config.json: "text", {"content": "text", ...} or null.
std::string token_text(const json& cfg, const char* key) {
  if (!cfg.contains(key)) return {};
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return {};
}

}  // namespace

void Tokenizer::Impl::load(const json& j, BpeTables* tables) {
  if (!j.is_object()) raise<FormatError>("[tokenizer] tokenizer.json must be an object");
  if (!j.contains("model")) raise<FormatError>("[tokenizer] tokenizer.json has no 'model'");
  if (!model)
    model = tables ? std::make_unique<Bpe>(j.at("model"), std::move(*tables))
                   : std::make_unique<Bpe>(j.at("model"));
  normalizer = make_normalizer(j.value("normalizer", json()));
  pre_tokenizer = make_pre_tokenizer(j.value("pre_tokenizer", json()));
  decoder = make_decoder(j.value("decoder", json()));
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (auto& a : j["added_tokens"]) {
      AddedToken t;
      t.id = a.at("id").get<int32_t>();
      t.content = a.at("content").get<std::string>();
      t.special = a.value("special", false);
      t.lstrip = a.value("lstrip", false);
      t.rstrip = a.value("rstrip", false);
      t.single_word = a.value("single_word", false);
      t.normalized = a.value("normalized", !t.special);
      if (t.id < 0) raise<FormatError>("[tokenizer] added token '{}' has a negative id", t.content);
      added.push_back(std::move(t));
    }
  }
  std::vector<std::string> raw_p, norm_p;
  std::vector<const AddedToken*> raw_t, norm_t;
  for (size_t i = 0; i < added.size(); ++i) {
    const AddedToken& t = added[i];
    added_by_content.emplace(t.content, t.id);
    added_by_id.emplace(t.id, i);
    if (t.normalized) {
      std::string c = t.content;
      if (normalizer) normalizer->normalize(c);
      norm_p.push_back(std::move(c));
      norm_t.push_back(&t);
    } else {
      raw_p.push_back(t.content);
      raw_t.push_back(&t);
    }
  }
  raw_matcher.build(raw_p, raw_t);
  normalized_matcher.build(norm_p, norm_t);
  std::unordered_map<std::string, int32_t> ids;
  post_processor = make_post_processor(j.value("post_processor", json()), ids);
}

const std::string* Tokenizer::Impl::token_of(int32_t id) const {
  auto it = added_by_id.find(id);
  if (it != added_by_id.end()) return &added[it->second].content;
  return model->id_to_token(id);
}

std::vector<int32_t> Tokenizer::Impl::encode(std::string_view input, bool add_special) const {
  std::string repaired;
  if (!utf8::is_valid(input)) {
    repaired = utf8::to_valid_lossy(input);
    input = repaired;
  }
  std::vector<int32_t> ids;
  ids.reserve(input.size() / 3 + 4);
  std::vector<Piece> pieces;
  auto run_model = [&](std::string&& text, bool at_origin) {
    pieces.clear();
    pieces.push_back({std::move(text), at_origin});
    if (pre_tokenizer) pre_tokenizer->pre_tokenize(pieces);
    for (auto& p : pieces) model->tokenize(p.text, ids);
  };
  auto raw =
      raw_matcher.empty() ? std::vector<Segment>{{0, input.size(), -1}} : raw_matcher.split(input);
  for (auto& seg : raw) {
    if (seg.token >= 0) {
      ids.push_back(seg.token);
      continue;
    }
    if (seg.end == seg.begin) continue;
    std::string text(input.substr(seg.begin, seg.end - seg.begin));
    if (normalizer) normalizer->normalize(text);
    bool origin = seg.begin == 0;
    if (normalized_matcher.empty()) {
      if (!text.empty()) run_model(std::move(text), origin);
      continue;
    }
    for (auto& sub : normalized_matcher.split(text)) {
      if (sub.token >= 0)
        ids.push_back(sub.token);
      else if (sub.end > sub.begin)
        run_model(text.substr(sub.begin, sub.end - sub.begin), origin && sub.begin == 0);
    }
  }
  if (post_processor) post_processor->process(ids, add_special);
  return ids;
}

std::string Tokenizer::Impl::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    auto it = added_by_id.find(id);
    if (it != added_by_id.end()) {
      if (skip_special && added[it->second].special) continue;
      tokens.push_back(added[it->second].content);
      continue;
    }
    const std::string* t = model->id_to_token(id);
    if (!t) continue;
    if (skip_special) {
      auto a = added_by_content.find(*t);
      if (a != added_by_content.end() && added[added_by_id.at(a->second)].special) continue;
    }
    tokens.push_back(*t);
  }
  if (!decoder) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i) out += ' ';
      out += tokens[i];
    }
    return out;
  }
  decoder->decode_chain(tokens);
  std::string out;
  for (auto& t : tokens) out += t;
  return out;
}

// ---- Tokenizer ----

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_json(std::string_view text) {
  auto impl = std::make_unique<Impl>();
  impl->load_text(text, "tokenizer.json");
  return Tokenizer(std::move(impl));
}

void Tokenizer::Impl::load_text(std::string_view text, const std::string& source, json* root) {
  try {
    if (std::optional<TokenizerJsonParts> f = scan_tokenizer_json(text)) {
      load(f->root, &f->tables);
      if (root) *root = std::move(f->root);
    } else {
      json j = parse_json(text, source);
      load(j);
      if (root) {
        j["model"].erase("vocab");
        j["model"].erase("merges");
        *root = std::move(j);
      }
    }
  } catch (const json::exception& e) {
    raise<FormatError>("[tokenizer] {}: {}", source, e.what());
  }
}

Tokenizer Tokenizer::from_dir(const std::string& path) {
  fs::path p(path);
  fs::path dir = p;
  fs::path tok_file = p / "tokenizer.json";
  if (fs::is_regular_file(p)) {
    dir = p.parent_path();
    tok_file = p;
  } else if (!fs::is_directory(p)) {
    raise<IoError>("[tokenizer] {} is neither a directory nor a file", path);
  } else if (!fs::exists(tok_file)) {
    raise<IoError>("[tokenizer] {} has no tokenizer.json", path);
  }
  ConfigTexts c;
  const fs::path cfg_path = dir / "tokenizer_config.json";
  const fs::path jinja_path = dir / "chat_template.jinja";
  const fs::path gen_path = dir / "generation_config.json";
  if (fs::exists(cfg_path)) c.tokenizer_config = read_file(cfg_path);
  if (fs::exists(jinja_path)) c.chat_template = read_file(jinja_path);
  if (fs::exists(gen_path)) c.generation_config = read_file(gen_path);
  c.tokenizer_config_source = cfg_path.string();
  c.generation_config_source = gen_path.string();
  // Mapped rather than read: a 33 MB tokenizer.json read into a string costs its zero-fill and
  // copy, a third of a load from the cache. A file that cannot be mapped (a pipe, an empty
  // file) is read, which also raises the usual error for one that cannot be opened.
  std::shared_ptr<MappedFile> map;
  try {
    if (fs::is_regular_file(tok_file) && fs::file_size(tok_file) > 0)
      map = MappedFile::open(tok_file.string(), {.huge_pages = false, .sequential = true});
  } catch (const IoError&) {
  }
  if (map)
    return from_texts(std::string_view(reinterpret_cast<const char*>(map->data()), map->size()),
                      tok_file.string(), c);
  return from_texts(read_file(tok_file), tok_file.string(), c);
}

Tokenizer Tokenizer::from_texts(std::string_view tokenizer_json, const std::string& source,
                                const ConfigTexts& c) {
  return from_impl(load_with_cache(tokenizer_json, source, cache_settings_from_env()), c);
}

Tokenizer Tokenizer::from_impl(std::unique_ptr<Impl> impl, const ConfigTexts& c) {
  Tokenizer tok(std::move(impl));
  Impl& im = *tok.impl_;
  SpecialTokens& st = im.specials;
  if (c.tokenizer_config) {
    const std::string& cfg_source = c.tokenizer_config_source;
    im.config_json = *c.tokenizer_config;
    json cfg = parse_json(im.config_json, cfg_source);
    if (!cfg.is_object()) raise<FormatError>("[tokenizer] {} must be an object", cfg_source);
    st.bos_token = token_text(cfg, "bos_token");
    st.eos_token = token_text(cfg, "eos_token");
    st.pad_token = token_text(cfg, "pad_token");
    st.unk_token = token_text(cfg, "unk_token");
    st.add_bos_token = cfg.value("add_bos_token", false);
    st.add_eos_token = cfg.value("add_eos_token", false);
    if (cfg.contains("chat_template")) {
      const json& ct = cfg["chat_template"];
      if (ct.is_string()) {
        im.chat_template = ct.get<std::string>();
      } else if (ct.is_array()) {
        for (auto& e : ct)
          if (e.is_object() && e.value("name", "") == "default")
            im.chat_template = e.value("template", "");
        if (im.chat_template.empty() && !ct.empty() && ct[0].is_object())
          im.chat_template = ct[0].value("template", "");
      }
    }
  }
  if (c.chat_template) im.chat_template = *c.chat_template;
  auto id_of = [&](const std::string& t) -> std::optional<int32_t> {
    if (t.empty()) return std::nullopt;
    return tok.token_to_id(t);
  };
  st.bos_id = id_of(st.bos_token);
  st.pad_id = id_of(st.pad_token);
  st.unk_id = id_of(st.unk_token);
  if (c.generation_config) {
    json g = parse_json(*c.generation_config, c.generation_config_source);
    auto ints = [&](const char* key) {
      std::vector<int32_t> v;
      if (!g.contains(key)) return v;
      const json& x = g[key];
      if (x.is_number_integer()) v.push_back(x.get<int32_t>());
      if (x.is_array())
        for (auto& e : x)
          if (e.is_number_integer()) v.push_back(e.get<int32_t>());
      return v;
    };
    st.eos_ids = ints("eos_token_id");
    if (auto b = ints("bos_token_id"); !b.empty() && !st.bos_id) st.bos_id = b[0];
    if (auto p = ints("pad_token_id"); !p.empty() && !st.pad_id) st.pad_id = p[0];
  }
  if (auto e = id_of(st.eos_token))
    if (std::find(st.eos_ids.begin(), st.eos_ids.end(), *e) == st.eos_ids.end())
      st.eos_ids.push_back(*e);
  return tok;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, EncodeOptions opts) const {
  return impl_->encode(text, opts.add_special_tokens);
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, DecodeOptions opts) const {
  return impl_->decode(ids, opts.skip_special_tokens);
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  if (auto* t = impl_->token_of(id)) return *t;
  return std::nullopt;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  auto a = impl_->added_by_content.find(token);
  if (a != impl_->added_by_content.end()) return a->second;
  const int32_t id = impl_->model->vocab().find(token);
  if (id >= 0) return id;
  return std::nullopt;
}

int32_t Tokenizer::vocab_size() const {
  int32_t n = 0;
  for (int32_t id : impl_->model->vocab().ids()) n = std::max(n, id + 1);
  for (auto& a : impl_->added) n = std::max(n, a.id + 1);
  return n;
}

bool Tokenizer::is_special(int32_t id) const {
  auto it = impl_->added_by_id.find(id);
  return it != impl_->added_by_id.end() && impl_->added[it->second].special;
}

const SpecialTokens& Tokenizer::special_tokens() const {
  return impl_->specials;
}
const std::string& Tokenizer::chat_template() const {
  return impl_->chat_template;
}
const std::string& Tokenizer::config_json() const {
  return impl_->config_json;
}

// ---- StreamDecoder ----
// Mirrors `tokenizers`' DecodeStream: decode a window that starts a few ids back (so decoders
// that treat the first token specially see context), emit only the new suffix, and hold output
// while it ends in U+FFFD (an incomplete UTF-8 character).

StreamDecoder::StreamDecoder(const Tokenizer& tok, DecodeOptions opts) : tok_(&tok), opts_(opts) {}

std::string StreamDecoder::step(int32_t id) {
  ids_.push_back(id);
  std::string s = tok_->decode(ids_, opts_);
  static const std::string kRepl = "\xEF\xBF\xBD";
  bool incomplete = s.size() >= 3 && s.compare(s.size() - 3, 3, kRepl) == 0;
  if (s.size() > prefix_.size() && !incomplete && s.compare(0, prefix_.size(), prefix_) == 0) {
    std::string piece = s.substr(prefix_.size());
    // Keep the last ids as context for the next step.
    size_t keep_from = prefix_index_;
    size_t new_prefix_index = ids_.size() - keep_from;
    ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(keep_from));
    prefix_ = tok_->decode(ids_, opts_);
    prefix_index_ = new_prefix_index;
    return piece;
  }
  return {};
}

std::string StreamDecoder::finish() {
  std::string s = tok_->decode(ids_, opts_);
  std::string rest = s.size() > prefix_.size() && s.compare(0, prefix_.size(), prefix_) == 0
                         ? s.substr(prefix_.size())
                         : std::string();
  ids_.clear();
  prefix_.clear();
  prefix_index_ = 0;
  return rest;
}

}  // namespace ingot::tokenizer
