// Optimizers (SGD with momentum/nesterov/weight decay, Adam, AdamW) over parameter maps, with
// state that can be saved and loaded; learning-rate schedules; global-norm gradient clipping.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

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
/// The factor clip_grad_norm multiplies every gradient by, min(1, max_norm / (norm + 1e-6)),
/// as a float32 scalar on the gradients' device, and the norm (its square summed by one
/// fast::sum_squares per device). Optimizer::apply takes the factor as its grad_scale.
std::pair<Array, Array> clip_grad_scale(const ParamMap& grads, float max_norm);

/// Base optimizer: keeps per-parameter state (float32) by name and a step counter.
class Optimizer {
 public:
  explicit Optimizer(Schedule lr) : lr_(std::move(lr)) {}
  virtual ~Optimizer() = default;
  /// New parameter values after one step (does not modify `params`). grad_scale (a float32
  /// scalar, e.g. clip_grad_scale's factor) multiplies each gradient first, rounded to the
  /// gradient's dtype: the same step as applying clip_grad_norm's scaled gradients.
  ParamMap apply(const ParamMap& params, const ParamMap& grads,
                 const std::optional<Array>& grad_scale = std::nullopt);
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
  /// The updates of the parameters `names` (each has a gradient) into `out`. Default:
  /// update_one for each, with its float32 gradient scaled as clip_grad_norm scales it.
  virtual void update_all(const std::vector<std::string>& names, const ParamMap& params,
                          const ParamMap& grads, const std::optional<Array>& grad_scale, float lr,
                          ParamMap& out);
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
/// Adam (Kingma & Ba), PyTorch semantics. The parameters of a device (float32, bfloat16 or
/// float16, with gradients of those dtypes) step together, a fast::adam_step per 16 of them,
/// bit for bit the separate ops of fast::ref::adam_step (INGOT_FUSED_OPTIM=0 runs those
/// instead); others update one by one.
class Adam : public Optimizer {
 public:
  Adam(Schedule lr, AdamOptions opt = {});

 protected:
  Array update_one(const std::string& name, const Array& p, const Array& g, float lr) override;
  void update_all(const std::vector<std::string>& names, const ParamMap& params,
                  const ParamMap& grads, const std::optional<Array>& grad_scale, float lr,
                  ParamMap& out) override;
  Array adam_direction(const std::string& name, const Array& g);
  /// AdamW: the weight decay multiplies the parameter (decoupled) instead of joining the
  /// gradient.
  virtual bool decoupled() const { return false; }
  AdamOptions opt_;
};

/// AdamW: Adam with decoupled weight decay (default 0.01 as PyTorch).
class AdamW : public Adam {
 public:
  AdamW(Schedule lr, AdamOptions opt = {.weight_decay = 0.01f});

 protected:
  Array update_one(const std::string& name, const Array& p, const Array& g, float lr) override;
  bool decoupled() const override { return true; }
};

}  // namespace ingot::nn
