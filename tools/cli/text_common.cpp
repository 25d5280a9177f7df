// Tokenizers for the text commands (see text_common.h).
#include "text_common.h"

#include <filesystem>

#include <fmt/format.h>

#include "core/io/gguf.h"
#include "models/gguf_checkpoint.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/gguf_vocab_file.h"
#include "util/error.h"

namespace ingot::cli {
namespace fs = std::filesystem;

std::shared_ptr<tokenizer::Tokenizer> load_tokenizer(const std::string& path) {
  if (!models::is_gguf_file(path))
    return std::make_shared<tokenizer::Tokenizer>(tokenizer::Tokenizer::from_dir(path));
  const fs::path dir =
      fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path();
  const bool json_beside = fs::is_regular_file(dir / "tokenizer.json");
  std::optional<tokenizer::GgufVocab> v;
  {
    GgufFile f(path);
    v = tokenizer::read_gguf_vocab(f.header(), path);
  }
  if (v) {
    try {
      return std::make_shared<tokenizer::Tokenizer>(tokenizer::tokenizer_from_gguf_vocab(*v, path));
    } catch (const Unsupported& e) {
      if (!json_beside) throw;
      fmt::print(stderr, "note: {}; using {} instead\n", e.what(),
                 (dir / "tokenizer.json").string());
    }
  }
  if (json_beside)
    return std::make_shared<tokenizer::Tokenizer>(tokenizer::Tokenizer::from_dir(dir.string()));
  raise<IoError>(
      "[text] {}: the GGUF file has no tokenizer metadata (tokenizer.ggml.*) and there is no "
      "tokenizer.json beside it (pass token ids instead of text)",
      path);
}

llm::TextModel load_text_model(const std::string& path, const models::LoadModelOptions& opt) {
  if (fs::is_directory(path) && !fs::exists(fs::path(path) / "tokenizer.json"))
    raise<IoError>("[text] {}: no tokenizer.json (pass token ids instead of text)", path);
  llm::TextModel tm;
  tm.tokenizer = load_tokenizer(path);  // first: a missing tokenizer fails before the weights load
  tm.model = models::load_model(path, opt);
  return tm;
}

}  // namespace ingot::cli
