// libFuzzer: parse and render arbitrary chat templates; the input is split at the first NUL into
// template and JSON context. Only ingot::Error may escape (FormatError / InvalidArgument).
#include <cstddef>
#include <cstdint>
#include <string>

#include "tokenizer/chat_template.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  size_t nul = in.find('\0');
  std::string tmpl = in.substr(0, nul);
  std::string ctx =
      nul == std::string::npos
          ? R"({"messages":[{"role":"user","content":"hi"}],"add_generation_prompt":true,"x":[1,2.5,"s",null,{"k":true}]})"
          : in.substr(nul + 1);
  try {
    auto t = ingot::tokenizer::ChatTemplate::parse(tmpl);
    (void)t.render(ctx, {.now = 0});
  } catch (const ingot::Error&) {
  }
  return 0;
}
