// Chat templates of the real tokenizers rendered byte for byte as transformers/jinja2 does
// (goldens by scripts/tokenizer_chat_refs.py, cross-checked against apply_chat_template).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace ingot::tokenizer {
namespace {

namespace fs = std::filesystem;

class ChatGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(ChatGolden, RenderingsAreByteIdentical) {
  const std::string name = GetParam();
  Tokenizer tok = Tokenizer::from_dir(testing::models_dir() + "/" + name);
  ASSERT_FALSE(tok.chat_template().empty());
  std::vector<fs::path> convs;
  for (auto& e : fs::directory_iterator(testing::data_dir() + "/chat"))
    if (e.path().extension() == ".json" && e.path().filename().string().rfind(name + "_", 0) == 0)
      convs.push_back(e.path());
  std::sort(convs.begin(), convs.end());
  ASSERT_GE(convs.size(), 12u);
  int ok = 0;
  for (auto& p : convs) {
    std::string want = testing::read_all(fs::path(p).replace_extension(".txt"));
    std::string got = apply_chat_template(tok, testing::read_all(p));
    if (got == want)
      ++ok;
    else
      ADD_FAILURE() << p << "\n--- want\n" << want << "\n--- got\n" << got;
  }
  std::printf("[chat %s] %d/%zu byte-identical\n", name.c_str(), ok, convs.size());
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, ChatGolden, ::testing::Values("gemma3", "qwen3", "llama3_1"));

TEST(ChatTemplate, GemmaRaisesOnNonAlternatingRoles) {
  Tokenizer tok = Tokenizer::from_dir(testing::models_dir() + "/gemma3");
  EXPECT_THROW(
      apply_chat_template(tok, R"([{"role":"user","content":"a"},{"role":"user","content":"b"}])"),
      FormatError);
}

TEST(ChatTemplate, SpecialTokensComeFromConfig) {
  Tokenizer g = Tokenizer::from_dir(testing::models_dir() + "/gemma3");
  EXPECT_EQ(g.special_tokens().bos_token, "<bos>");
  EXPECT_EQ(g.special_tokens().bos_id, 2);
  EXPECT_EQ(g.special_tokens().pad_id, 0);
  ASSERT_EQ(g.special_tokens().eos_ids.size(), 1u);
  EXPECT_EQ(g.special_tokens().eos_ids[0], 106);  // <end_of_turn>
  Tokenizer q = Tokenizer::from_dir(testing::models_dir() + "/qwen3");
  EXPECT_FALSE(q.special_tokens().bos_id.has_value());
  EXPECT_EQ(q.special_tokens().eos_ids, std::vector<int32_t>{151645});
  EXPECT_EQ(q.special_tokens().pad_id, 151643);
  Tokenizer l = Tokenizer::from_dir(testing::models_dir() + "/llama3_1");
  EXPECT_EQ(l.special_tokens().bos_id, 128000);
  EXPECT_EQ(l.special_tokens().eos_ids, std::vector<int32_t>{128009});
}

TEST(ChatTemplate, GenerationConfigEosListIsMerged) {
  fs::path dir = fs::temp_directory_path() / "ingot_tok_genconfig";
  fs::create_directories(dir);
  fs::copy_file(testing::models_dir() + "/llama3_1/tokenizer.json", dir / "tokenizer.json",
                fs::copy_options::overwrite_existing);
  fs::copy_file(testing::models_dir() + "/llama3_1/tokenizer_config.json",
                dir / "tokenizer_config.json", fs::copy_options::overwrite_existing);
  {
    std::ofstream(dir / "generation_config.json")
        << R"({"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]})";
  }
  Tokenizer t = Tokenizer::from_dir(dir.string());
  EXPECT_EQ(t.special_tokens().eos_ids, (std::vector<int32_t>{128001, 128008, 128009}));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ingot::tokenizer
