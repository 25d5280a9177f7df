// Module parameter tree: registration, dotted-name collection, freezing and updates.
#include "nn/module.h"

#include <algorithm>

#include "util/error.h"

namespace ingot::nn {

bool glob_match(const std::string& p, const std::string& s) {
  // Iterative wildcard matching with backtracking to the last '*'.
  size_t i = 0, j = 0, star = std::string::npos, mark = 0;
  while (j < s.size()) {
    if (i < p.size() && (p[i] == '?' || p[i] == s[j])) {
      ++i;
      ++j;
    } else if (i < p.size() && p[i] == '*') {
      star = i++;
      mark = j;
    } else if (star != std::string::npos) {
      i = star + 1;
      j = ++mark;
    } else {
      return false;
    }
  }
  while (i < p.size() && p[i] == '*') ++i;
  return i == p.size();
}

void Module::register_parameter(const std::string& name, Array value) {
  for (auto& [n, v] : params_)
    if (n == name) {
      v = std::move(value);
      return;
    }
  params_.emplace_back(name, std::move(value));
}

bool Module::has_param(const std::string& name) const {
  for (auto& [n, v] : params_)
    if (n == name) return true;
  return false;
}

const Array& Module::param(const std::string& name) const {
  for (auto& [n, v] : params_)
    if (n == name) return v;
  raise("[module] no parameter named '{}'", name);
}

void Module::collect(const std::string& prefix, ParamMap& out, bool trainable_only) const {
  for (auto& [n, v] : params_) {
    if (trainable_only &&
        std::find(frozen_.begin(), frozen_.end(), n) != frozen_.end())
      continue;
    out.emplace(prefix + n, v);
  }
  for (auto& [n, c] : children_) c->collect(prefix + n + ".", out, trainable_only);
}

ParamMap Module::parameters() const {
  ParamMap m;
  collect("", m, false);
  return m;
}

ParamMap Module::trainable_parameters() const {
  ParamMap m;
  collect("", m, true);
  return m;
}

int Module::freeze(const std::string& pattern) {
  int count = 0;
  std::vector<std::pair<std::string, Module*>> stack{{"", this}};
  while (!stack.empty()) {
    auto [prefix, m] = stack.back();
    stack.pop_back();
    for (auto& [n, v] : m->params_) {
      (void)v;
      if (!glob_match(pattern, prefix + n)) continue;
      ++count;
      if (std::find(m->frozen_.begin(), m->frozen_.end(), n) == m->frozen_.end())
        m->frozen_.push_back(n);
    }
    for (auto& [n, c] : m->children_) stack.push_back({prefix + n + ".", c.get()});
  }
  return count;
}

int Module::unfreeze(const std::string& pattern) {
  int count = 0;
  std::vector<std::pair<std::string, Module*>> stack{{"", this}};
  while (!stack.empty()) {
    auto [prefix, m] = stack.back();
    stack.pop_back();
    for (auto& [n, v] : m->params_) {
      (void)v;
      if (!glob_match(pattern, prefix + n)) continue;
      ++count;
      auto it = std::find(m->frozen_.begin(), m->frozen_.end(), n);
      if (it != m->frozen_.end()) m->frozen_.erase(it);
    }
    for (auto& [n, c] : m->children_) stack.push_back({prefix + n + ".", c.get()});
  }
  return count;
}

bool Module::is_frozen(const std::string& name) const {
  auto dot = name.find('.');
  if (dot == std::string::npos)
    return std::find(frozen_.begin(), frozen_.end(), name) != frozen_.end();
  std::string head = name.substr(0, dot);
  for (auto& [n, c] : children_)
    if (n == head) return c->is_frozen(name.substr(dot + 1));
  raise("[module] no parameter named '{}'", name);
}

Array* Module::find(const std::string& dotted) {
  auto dot = dotted.find('.');
  if (dot == std::string::npos) {
    for (auto& [n, v] : params_)
      if (n == dotted) return &v;
    return nullptr;
  }
  std::string head = dotted.substr(0, dot);
  for (auto& [n, c] : children_)
    if (n == head) {
      Array* r = c->find(dotted.substr(dot + 1));
      if (r) return r;
    }
  // A parameter name may itself contain dots only through children; nothing else matches.
  return nullptr;
}

std::vector<std::string> Module::update(const ParamMap& values, bool strict) {
  std::vector<std::string> unknown;
  for (auto& [name, v] : values) {
    Array* p = find(name);
    if (!p) {
      if (strict) raise("[module] update: no parameter named '{}'", name);
      unknown.push_back(name);
      continue;
    }
    if (p->shape() != v.shape())
      raise("[module] update: '{}' has shape {} but the new value has shape {}", name,
            shape_str(p->shape()), shape_str(v.shape()));
    *p = v;
  }
  return unknown;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [k, v] : parameters()) n += v.size();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, c] : children_) c->train(on);
}

std::pair<Array, ParamMap> value_and_grad(Module& module, const std::function<Array()>& loss) {
  ParamMap original = module.trainable_parameters();
  auto fn = [&](const ParamMap& p) {
    module.update(p);
    return loss();
  };
  try {
    auto r = ingot::value_and_grad(fn, original);
    module.update(original);
    return r;
  } catch (...) {
    module.update(original);
    throw;
  }
}

}  // namespace ingot::nn
