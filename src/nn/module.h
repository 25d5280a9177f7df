// Module: a node of a named parameter tree whose dotted names match Hugging Face checkpoints
// ("model.layers.3.self_attn.q_proj.weight"). Layers derive from it and register their
// parameters and children in the constructor.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/array.h"
#include "core/transforms/autodiff.h"

namespace ingot::nn {

/// Base class of layers and models.
class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  /// All parameters, recursively, by dotted name.
  ParamMap parameters() const;
  /// Parameters that are not frozen.
  ParamMap trainable_parameters() const;
  /// Freezes parameters whose dotted name matches a glob pattern (`*` any run, `?` one
  /// character); returns how many matched.
  int freeze(const std::string& pattern = "*");
  int unfreeze(const std::string& pattern = "*");
  bool is_frozen(const std::string& name) const;
  /// Replaces parameters by name. Unknown names throw InvalidArgument (strict) or are
  /// returned; shapes must match.
  std::vector<std::string> update(const ParamMap& values, bool strict = true);
  /// Number of parameter elements.
  int64_t num_parameters() const;
  /// Training mode (dropout active) for this module and its children.
  void train(bool on = true);
  bool training() const { return training_; }

  /// Direct children by name, in registration order.
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const {
    return children_;
  }
  /// A parameter of this module (not recursive); throws InvalidArgument if absent.
  const Array& param(const std::string& name) const;
  bool has_param(const std::string& name) const;

 protected:
  /// Registers (or replaces) a parameter of this module.
  void register_parameter(const std::string& name, Array value);
  /// Registers a child module under a name; returns it.
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    children_.emplace_back(name, m);
    return m;
  }

 private:
  void collect(const std::string& prefix, ParamMap& out, bool trainable_only) const;
  Array* find(const std::string& dotted);

  std::vector<std::pair<std::string, Array>> params_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  std::vector<std::string> frozen_;  // local names of frozen parameters
  bool training_ = false;
};

/// A list of modules named "0", "1", ... (e.g. "layers").
template <typename M>
class ModuleList : public Module {
 public:
  /// Appends a module.
  void push_back(std::shared_ptr<M> m) {
    items_.push_back(register_module(std::to_string(items_.size()), std::move(m)));
  }
  size_t size() const { return items_.size(); }
  M& operator[](size_t i) const { return *items_.at(i); }

 private:
  std::vector<std::shared_ptr<M>> items_;
};

/// Glob match of a dotted name (`*` matches any run of characters, `?` one).
bool glob_match(const std::string& pattern, const std::string& name);

/// Value and gradients of a loss of the module w.r.t. its trainable parameters. The module's
/// parameters are restored afterwards.
std::pair<Array, ParamMap> value_and_grad(Module& module, const std::function<Array()>& loss);

}  // namespace ingot::nn
