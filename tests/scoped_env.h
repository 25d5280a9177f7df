// ScopedEnv: sets or unsets environment variables for a scope and restores what was there
// (tests that switch a code path with an INGOT_* variable).
#pragma once

#include <cstdlib>
#include <map>
#include <optional>
#include <string>

namespace ingot::test {

class ScopedEnv {
 public:
  ScopedEnv() = default;
  /// name = value for the scope; a null value unsets it.
  ScopedEnv(const char* name, const char* value) {
    set(name, value ? std::optional<std::string>(value) : std::nullopt);
  }
  /// name = value (nullopt: unset) until the scope ends.
  void set(const char* name, std::optional<std::string> value) {
    if (!saved_.count(name)) {
      const char* old = std::getenv(name);
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
    }
    if (value)
      ::setenv(name, value->c_str(), 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    for (auto& [name, value] : saved_) {
      if (value)
        ::setenv(name.c_str(), value->c_str(), 1);
      else
        ::unsetenv(name.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

}  // namespace ingot::test
