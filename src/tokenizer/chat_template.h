// Chat templates: a Jinja engine rendering the templates of tokenizer_config.json byte for byte
// as Python jinja2 configured by transformers (trim_blocks, lstrip_blocks, loopcontrols, tojson
// with ensure_ascii=False, raise_exception, strftime_now).
#pragma once

#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace ingot::tokenizer {

class Tokenizer;

/// Options of ChatTemplate::render.
struct RenderOptions {
  std::optional<std::time_t> now;  ///< fixed time for strftime_now (default: the clock)
};

/// A parsed Jinja template. Errors (syntax, undefined names used strictly, raise_exception)
/// are FormatErrors whose message names the template line and column.
class ChatTemplate {
 public:
  /// Parses template source.
  static ChatTemplate parse(std::string_view source);
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;
  ~ChatTemplate();

  /// Renders with the variables of a JSON object (key order is kept, as in Python dicts).
  std::string render(std::string_view context_json, const RenderOptions& opts = {}) const;

  struct Impl;

 private:
  explicit ChatTemplate(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Options of apply_chat_template.
struct ChatOptions {
  std::optional<bool> add_generation_prompt;  ///< overrides the conversation's own flag
  RenderOptions render;
};

/// Renders a conversation with the tokenizer's chat template, as transformers'
/// apply_chat_template(tokenize=False) does. `conversation_json` is either an array of messages
/// or an object {"messages": [...], "tools": [...], "documents": [...],
/// "add_generation_prompt": bool, ...}; other keys become template variables. bos_token,
/// eos_token, unk_token, pad_token and additional_special_tokens come from tokenizer_config.json.
std::string apply_chat_template(const Tokenizer& tok, std::string_view conversation_json,
                                const ChatOptions& opts = {});

}  // namespace ingot::tokenizer
