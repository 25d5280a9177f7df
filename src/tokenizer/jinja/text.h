// Text helpers shared by the Jinja builtins (filters in builtins.cpp, methods in methods.cpp):
// Python string semantics on UTF-8.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace ingot::jinja::detail {

[[noreturn]] void err(const std::string& m);
const std::string& need_str(const Value& v, const char* what);
char32_t upper_cp(char32_t c);
char32_t lower_cp(char32_t c);
bool is_cased_letter(char32_t c);
std::string map_case(const std::string& s, bool upper);
std::string capitalize(const std::string& s);
std::string py_title(const std::string& s);
std::vector<std::string> py_split(const std::string& s, const Value& sep, int64_t maxsplit);
std::string replace_str(const std::string& s, const std::string& a, const std::string& b,
                        int64_t count);
Value list_of_strings(const std::vector<std::string>& v);
std::vector<Value> items_of(const Value& v);
std::vector<std::string> splitlines(const std::string& s);

}  // namespace ingot::jinja::detail
