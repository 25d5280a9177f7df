// Optimizers, schedules and gradient clipping (see optimizers.h). State and arithmetic are in
// float32; parameters keep their dtype.
#include "nn/optimizers.h"

#include <cmath>

#include "core/ops/ops.h"
#include "core/transforms/eval.h"

namespace ingot::nn {

Schedule constant_schedule(float lr) {
  return [lr](int64_t) { return lr; };
}

Schedule linear_schedule(float start, float end, int64_t steps) {
  return [=](int64_t s) {
    if (steps <= 0 || s >= steps) return end;
    return start + (end - start) * static_cast<float>(s) / static_cast<float>(steps);
  };
}

Schedule cosine_decay(float lr, int64_t steps, float end) {
  return [=](int64_t s) {
    if (steps <= 0 || s >= steps) return end;
    double c = 0.5 * (1.0 + std::cos(M_PI * static_cast<double>(s) / static_cast<double>(steps)));
    return static_cast<float>(end + (lr - end) * c);
  };
}

Schedule join_schedules(std::vector<Schedule> schedules, std::vector<int64_t> boundaries) {
  if (schedules.empty() || boundaries.size() + 1 != schedules.size())
    raise("[schedule] join needs one boundary fewer than schedules ({} schedules, {} boundaries)",
          schedules.size(), boundaries.size());
  return [schedules, boundaries](int64_t s) {
    size_t i = 0;
    int64_t start = 0;
    while (i < boundaries.size() && s >= boundaries[i]) start = boundaries[i++];
    return schedules[i](s - start);
  };
}

std::pair<ParamMap, Array> clip_grad_norm(const ParamMap& grads, float max_norm) {
  Array total(0.0f, float32);  // a host constant: follows the gradients' device
  for (auto& [k, g] : grads) total = total + sum(square(astype(g, float32)));
  Array norm = sqrt(total);
  Array scale = minimum(Array(1.0f), Array(max_norm) / (norm + 1e-6f));
  ParamMap out;
  for (auto& [k, g] : grads) out.emplace(k, astype(astype(g, float32) * scale, g.dtype()));
  return {out, norm};
}

Array& Optimizer::slot(const std::string& name, const std::string& s, const Array& like) {
  auto key = name + "." + s;
  // The state lives where the update runs: op_device, since `like` may be a host constant (a
  // gradient made from C++ values), and loaded state (read into host memory) moves there.
  const Device dev = op_device(like);
  auto it = slots_.find(key);
  if (it == slots_.end())
    it = slots_.emplace(key, zeros(like.shape(), float32, dev)).first;
  else if (it->second.device() != dev)
    it->second = to_device(it->second, dev);
  return it->second;
}

ParamMap Optimizer::apply(const ParamMap& params, const ParamMap& grads) {
  ParamMap out;
  const float lr = lr_(step_);
  ++step_;
  for (auto& [name, p] : params) {
    auto g = grads.find(name);
    if (g == grads.end()) {
      out.emplace(name, p);
      continue;
    }
    if (g->second.shape() != p.shape())
      raise("[optimizer] gradient of '{}' has shape {} but the parameter has {}", name,
            shape_str(g->second.shape()), shape_str(p.shape()));
    out.emplace(name, update_one(name, p, astype(g->second, float32), lr));
  }
  // Keep the state graph short: evaluate the new state with the parameters.
  std::vector<Array> to_eval;
  for (auto& [k, v] : out) to_eval.push_back(v);
  for (auto& [k, v] : slots_) to_eval.push_back(v);
  eval(to_eval);
  return out;
}

void Optimizer::update(Module& module, const ParamMap& grads) {
  module.update(apply(module.trainable_parameters(), grads));
}

std::map<std::string, Array> Optimizer::state() const {
  std::map<std::string, Array> s = slots_;
  s.emplace("step", Array(step_, int64));
  return s;
}

void Optimizer::load_state(const std::map<std::string, Array>& state) {
  std::map<std::string, Array> slots;
  int64_t step = 0;
  for (auto& [k, v] : state) {
    if (k == "step") {
      step = v.item<int64_t>();
      continue;
    }
    auto dot = k.rfind('.');
    if (dot == std::string::npos) raise("[optimizer] unknown state entry '{}'", k);
    auto cur = slots_.find(k);
    if (cur != slots_.end() && cur->second.shape() != v.shape())
      raise("[optimizer] state '{}' has shape {} but {} was loaded", k,
            shape_str(cur->second.shape()), shape_str(v.shape()));
    slots.emplace(k, astype(v, float32));
  }
  slots_ = std::move(slots);
  step_ = step;
}

SGD::SGD(Schedule lr, SGDOptions opt) : Optimizer(std::move(lr)), opt_(opt) {
  if (opt.nesterov && (opt.momentum <= 0 || opt.dampening != 0))
    raise("[sgd] nesterov needs momentum > 0 and dampening 0");
}

Array SGD::update_one(const std::string& name, const Array& p, const Array& g, float lr) {
  Array pf = astype(p, float32);
  Array d = opt_.weight_decay != 0 ? g + opt_.weight_decay * pf : g;
  if (opt_.momentum != 0) {
    Array& buf = slot(name, "momentum", p);
    // PyTorch: the first step copies the gradient into the buffer.
    buf = step_ == 1 ? d : opt_.momentum * buf + (1.0f - opt_.dampening) * d;
    d = opt_.nesterov ? d + opt_.momentum * buf : buf;
  }
  return astype(pf - lr * d, p.dtype());
}

Adam::Adam(Schedule lr, AdamOptions opt) : Optimizer(std::move(lr)), opt_(opt) {}

Array Adam::adam_direction(const std::string& name, const Array& g) {
  Array& m = slot(name, "m", g);
  Array& v = slot(name, "v", g);
  m = opt_.beta1 * m + (1.0f - opt_.beta1) * g;
  v = opt_.beta2 * v + (1.0f - opt_.beta2) * square(g);
  float c1 = 1.0f, c2 = 1.0f;
  if (opt_.bias_correction) {
    c1 = 1.0f - std::pow(opt_.beta1, static_cast<float>(step_));
    c2 = 1.0f - std::pow(opt_.beta2, static_cast<float>(step_));
  }
  return (m / c1) / (sqrt(v / c2) + opt_.eps);
}

Array Adam::update_one(const std::string& name, const Array& p, const Array& g, float lr) {
  Array pf = astype(p, float32);
  Array gd = opt_.weight_decay != 0 ? g + opt_.weight_decay * pf : g;
  return astype(pf - lr * adam_direction(name, gd), p.dtype());
}

AdamW::AdamW(Schedule lr, AdamOptions opt) : Adam(std::move(lr), opt) {}

Array AdamW::update_one(const std::string& name, const Array& p, const Array& g, float lr) {
  Array pf = astype(p, float32);
  pf = pf * (1.0f - lr * opt_.weight_decay);
  return astype(pf - lr * adam_direction(name, g), p.dtype());
}

}  // namespace ingot::nn
