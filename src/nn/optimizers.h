// Optimizers (SGD with momentum/nesterov/weight decay, Adam, AdamW) over parameter maps, with
// state that can be saved and loaded; learning-rate schedules; global-norm gradient clipping.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "core/transforms/autodiff.h"
#include "nn/module.h"

namespace ingot::nn {

/// Learning rate as a function of the step (0-based).
using Schedule = std::function<float(int64_t step)>;
Schedule constant_schedule(float lr);
/// Linear from `start` to `end` over `steps` steps, then `end`.
Schedule linear_schedule(float start, float end, int64_t steps);
/// Cosine decay from `lr` to `end` over `steps` steps, then `end`.
Schedule cosine_decay(float lr, int64_t steps, float end = 0.0f);
/// Runs schedules[i] from boundaries[i-1] on (boundaries has one entry fewer), with the step
/// counted from the start of each piece (e.g. join({warmup, cosine}, {100})).
Schedule join_schedules(std::vector<Schedule> schedules, std::vector<int64_t> boundaries);

/// Scales gradients so their global L2 norm is at most max_norm; returns the scaled gradients
/// and the norm before clipping.
std::pair<ParamMap, Array> clip_grad_norm(const ParamMap& grads, float max_norm);

/// Base optimizer: keeps per-parameter state (float32) by name and a step counter.
class Optimizer {
 public:
  explicit Optimizer(Schedule lr) : lr_(std::move(lr)) {}
  virtual ~Optimizer() = default;
  /// New parameter values after one step (does not modify `params`).
  ParamMap apply(const ParamMap& params, const ParamMap& grads);
  /// Updates the module's parameters in place from gradients of its trainable parameters.
  void update(Module& module, const ParamMap& grads);
  int64_t step() const { return step_; }
  float learning_rate() const { return lr_(step_); }
  /// Optimizer state as named arrays ("<param>.<slot>" plus "step"), for checkpoints.
  std::map<std::string, Array> state() const;
  /// Restores state() output; throws InvalidArgument on unknown slots or shape mismatches.
  void load_state(const std::map<std::string, Array>& state);

 protected:
  /// One parameter's update: returns the new value, reading/writing its slots.
  virtual Array update_one(const std::string& name, const Array& param, const Array& grad,
                           float lr) = 0;
  Array& slot(const std::string& name, const std::string& slot, const Array& like);
  std::map<std::string, Array> slots_;
  int64_t step_ = 0;

 private:
  Schedule lr_;
};

/// Options of SGD.
struct SGDOptions {
  float momentum = 0.0f;
  float weight_decay = 0.0f;
  float dampening = 0.0f;
  bool nesterov = false;
};
/// Stochastic gradient descent (PyTorch semantics for momentum, nesterov and weight decay).
class SGD : public Optimizer {
 public:
  SGD(Schedule lr, SGDOptions opt = {});

 protected:
  Array update_one(const std::string& name, const Array& p, const Array& g, float lr) override;

 private:
  SGDOptions opt_;
};

/// Options of Adam/AdamW.
struct AdamOptions {
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  /// Adam: L2 added to the gradient; AdamW: decoupled decay of the weights.
  float weight_decay = 0.0f;
  bool bias_correction = true;
};
/// Adam (Kingma & Ba), PyTorch semantics.
class Adam : public Optimizer {
 public:
  Adam(Schedule lr, AdamOptions opt = {});

 protected:
  Array update_one(const std::string& name, const Array& p, const Array& g, float lr) override;
  Array adam_direction(const std::string& name, const Array& g);
  AdamOptions opt_;
};

/// AdamW: Adam with decoupled weight decay (default 0.01 as PyTorch).
class AdamW : public Adam {
 public:
  AdamW(Schedule lr, AdamOptions opt = {.weight_decay = 0.01f});

 protected:
  Array update_one(const std::string& name, const Array& p, const Array& g, float lr) override;
};

}  // namespace ingot::nn
