// Jinja engine against Python jinja2 (as transformers configures it): feature templates rendered
// by scripts/tokenizer_chat_refs.py, plus error reporting with line and column.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "tokenizer/chat_template.h"
#include "util/error.h"

namespace ingot::tokenizer {
namespace {

using json = nlohmann::ordered_json;

std::string render(const std::string& tmpl, const std::string& ctx = "{}") {
  return ChatTemplate::parse(tmpl).render(ctx);
}

TEST(Jinja, FeatureTemplatesMatchJinja2) {
  json cases = json::parse(testing::read_all(testing::data_dir() + "/jinja/features.json"));
  int ok = 0, total = 0;
  for (auto& c : cases) {
    if (c.contains("error")) continue;
    ++total;
    std::string got;
    try {
      got = render(c["template"].get<std::string>(), c["context"].dump());
    } catch (const Error& e) {
      ADD_FAILURE() << c["name"] << ": threw " << e.what();
      continue;
    }
    if (got == c["expected"].get<std::string>())
      ++ok;
    else
      ADD_FAILURE() << c["name"] << "\n want " << json(c["expected"]).dump() << "\n  got "
                    << json(got).dump();
  }
  std::printf("[jinja features] %d/%d byte-identical\n", ok, total);
}

TEST(Jinja, ErrorsAreFormatErrorsWithLocation) {
  json cases = json::parse(testing::read_all(testing::data_dir() + "/jinja/features.json"));
  for (auto& c : cases) {
    if (!c.contains("error")) continue;
    try {
      render(c["template"].get<std::string>(), c["context"].dump());
      ADD_FAILURE() << c["name"] << " did not throw";
    } catch (const FormatError& e) {
      std::string m = e.what();
      EXPECT_NE(m.find("line "), std::string::npos) << m;
      EXPECT_NE(m.find("column "), std::string::npos) << m;
      if (c["name"] == "err_raise") {
        EXPECT_NE(m.find("custom failure"), std::string::npos) << m;
        EXPECT_NE(m.find("line 2, column 4"), std::string::npos) << m;
      }
    }
  }
}

TEST(Jinja, UndefinedUsedStrictlyThrows) {
  EXPECT_EQ(render("[{{ missing }}]"), "[]");
  EXPECT_THROW(render("{{ missing.attr }}"), FormatError);
  EXPECT_THROW(render("{{ missing + 1 }}"), FormatError);
  EXPECT_THROW(render("{{ none_fn() }}"), FormatError);
  try {
    render("line one\n  {{ x.y.z }}", R"({"x": {}})");
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("has no attribute 'y'"), std::string::npos) << e.what();
  }
}

TEST(Jinja, SyntaxErrorsNameLineAndColumn) {
  for (const char* t :
       {"{% if x %}", "{{ 1 + }}", "{% for %}", "{{ 'unterminated }}", "{% endif %}", "{{ x | }}",
        "{# no end", "{% raw %}x", "{{ (1, 2 }}", "{% set %}"}) {
    EXPECT_THROW(ChatTemplate::parse(t), FormatError) << t;
  }
  try {
    ChatTemplate::parse("a\nb\n  {% bogus %}");
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("line 3, column 3"), std::string::npos) << e.what();
  }
}

TEST(Jinja, StrftimeNowUsesTheGivenClock) {
  auto t = ChatTemplate::parse("{{ strftime_now('%Y-%m-%d') }}");
  std::string s = t.render("{}", {.now = 86400 * 365});
  EXPECT_EQ(s.size(), 10u);
  EXPECT_EQ(s.substr(0, 4), "1971");
}

TEST(Jinja, TrailingNewlineAndCrlf) {
  EXPECT_EQ(render("a\r\nb\n"), "a\nb");
  EXPECT_EQ(render("x\n\n"), "x\n");
}

TEST(Jinja, IntegersAre64BitAndOverflowIsAnError) {
  EXPECT_EQ(render("{{ 2 ** 62 }} {{ -9223372036854775807 - 1 }}"),
            "4611686018427387904 -9223372036854775808");
  EXPECT_THROW(render("{{ 2 ** 64 }}"), FormatError);
  EXPECT_THROW(render("{{ 9223372036854775807 + 1 }}"), FormatError);
  EXPECT_THROW(render("{{ 'ab' * 100000000000 }}"), FormatError);
  EXPECT_THROW(render("{{ range(100000000) | length }}"), FormatError);
}

TEST(Jinja, HugeNumericLiteralsAndIndicesAreErrorsOrSaturate) {
  // Found by fuzzing: integer literals past int64 (also as `x.123` item access) used to escape as
  // std::out_of_range; float literals past double saturate to inf as in Python.
  EXPECT_THROW(render("{{ 99999999999999999999 }}"), FormatError);
  EXPECT_THROW(render("{% for i in range(2) %}{{ loop.99999999999999999999 }}{% endfor %}"),
               FormatError);
  EXPECT_EQ(render("{{ 1e999 }} {{ -1e999 }}"), "inf -inf");
  EXPECT_EQ(render("{{ '{99999999999999999999}'.format(1) if false else 'ok' }}"), "ok");
  EXPECT_EQ(render("{{ 1e300 | int > 0 }} {{ '1e300' | int > 0 }}"), "True True");
}

TEST(Jinja, RecursionAndHugeInputsAreBounded) {
  EXPECT_THROW(render("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"), FormatError);
  std::string deep(5000, '(');
  EXPECT_THROW(render("{{ " + deep + " }}"), FormatError);
}

}  // namespace
}  // namespace ingot::tokenizer
