// Tokenization of fine-tuning records with the model's tokenizer (see data.h); built only with
// the tokenizer (ingot_train_text).
#include <algorithm>

#include <nlohmann/json.hpp>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"
#include "util/error.h"

namespace ingot::train {
using json = nlohmann::json;

namespace {

std::vector<int32_t> render_chat(const tokenizer::Tokenizer& tok, const json& messages,
                                 bool generation_prompt) {
  tokenizer::ChatOptions co;
  co.add_generation_prompt = generation_prompt;
  std::string s = tokenizer::apply_chat_template(tok, messages.dump(), co);
  return tok.encode(s, {.add_special_tokens = false});
}

}  // namespace

std::vector<Example> tokenize(const std::vector<Record>& records, const tokenizer::Tokenizer& tok,
                              const TokenizeOptions& opt, const std::string& source) {
  const auto& eos_ids = tok.special_tokens().eos_ids;
  std::vector<Example> out;
  out.reserve(records.size());
  for (const Record& r : records) {
    Example ex;
    try {
      switch (r.kind) {
        case Record::Kind::text:
          ex.ids = tok.encode(r.text);
          ex.loss_mask.assign(ex.ids.size(), 1);
          break;
        case Record::Kind::prompt_completion: {
          // The completion's tokens are those of the joined text after as many tokens as the
          // prompt alone has (so a merge across the boundary is not split).
          const size_t n = tok.encode(r.prompt).size();
          ex.ids = tok.encode(r.prompt + r.completion);
          ex.loss_mask.assign(ex.ids.size(), opt.mask_prompt ? 0 : 1);
          for (size_t i = std::min(n, ex.ids.size()); i < ex.ids.size(); ++i) ex.loss_mask[i] = 1;
          break;
        }
        case Record::Kind::chat: {
          const json m = json::parse(r.messages);
          ex.ids = render_chat(tok, m, false);
          ex.loss_mask.assign(ex.ids.size(), opt.mask_prompt ? 0 : 1);
          if (opt.mask_prompt) {
            // Assistant turn i: the tokens between the conversation up to i with the generation
            // prompt and the conversation including message i.
            for (size_t i = 0; i < m.size(); ++i) {
              if (m[i]["role"] != "assistant") continue;
              json before(json::array()), upto(json::array());
              for (size_t k = 0; k < i; ++k) before.push_back(m[k]);
              upto = before;
              upto.push_back(m[i]);
              const size_t a = render_chat(tok, before, true).size();
              const size_t b = std::min(render_chat(tok, upto, false).size(), ex.ids.size());
              for (size_t t = a; t < b; ++t) ex.loss_mask[t] = 1;
            }
          }
          break;
        }
      }
    } catch (const Error& e) {
      raise<FormatError>("[data] {}:{}: {}", source, r.line, e.what());
    }
    if (opt.add_eos && r.kind != Record::Kind::chat && !eos_ids.empty()) {
      ex.ids.push_back(eos_ids.front());
      ex.loss_mask.push_back(1);
    }
    if (opt.max_seq_len > 0 && static_cast<int64_t>(ex.ids.size()) > opt.max_seq_len) {
      ex.ids.resize(static_cast<size_t>(opt.max_seq_len));
      ex.loss_mask.resize(static_cast<size_t>(opt.max_seq_len));
    }
    if (ex.ids.size() < 2)
      raise<FormatError>("[data] {}:{}: fewer than two tokens after tokenization", source, r.line);
    if (std::count(ex.loss_mask.begin() + 1, ex.loss_mask.end(), 1) == 0)
      raise<FormatError>("[data] {}:{}: no token left in the loss (prompt too long for --seq-len?)",
                         source, r.line);
    out.push_back(std::move(ex));
  }
  return out;
}

}  // namespace ingot::train
