// Optimizers, schedules and gradient clipping (see optimizers.h). State and arithmetic are in
// float32; parameters keep their dtype.
#include "nn/optimizers.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "core/fast/fast.h"
#include "core/ops/ops.h"
#include "core/transforms/eval.h"
#include "util/env.h"

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

namespace {

/// a on device d (host constants follow their consumers anyway).
Array on_device(const Array& a, Device d) {
  return a.is_host_constant() || a.device() == d ? a : to_device(a, d);
}

/// g's float32 value scaled as clip_grad_norm's gradients are: rounded to g's dtype after the
/// product.
Array scaled_float(const Array& g, const std::optional<Array>& scale) {
  Array f = astype(g, float32);
  if (!scale) return f;
  return astype(astype(f * on_device(*scale, op_device(g)), g.dtype()), float32);
}

/// Appends v to its device's group (groups in order of first appearance).
template <typename T>
void add_to_group(std::vector<std::pair<Device, std::vector<T>>>& groups, Device d, T v) {
  auto it = std::find_if(groups.begin(), groups.end(), [&](auto& e) { return e.first == d; });
  if (it == groups.end()) it = groups.insert(groups.end(), {d, {}});
  it->second.push_back(std::move(v));
}

}  // namespace

std::pair<Array, Array> clip_grad_scale(const ParamMap& grads, float max_norm) {
  // One fast::sum_squares per device, in order of first appearance.
  std::vector<std::pair<Device, std::vector<Array>>> groups;
  for (auto& [k, g] : grads) add_to_group(groups, op_device(g), g);
  // On the first group's device (the only one but under tensor or pipeline splits).
  std::optional<Array> total;
  for (auto& [d, gs] : groups) {
    const Array s = fast::sum_squares(gs);
    total = total ? *total + on_device(s, total->device()) : s;
  }
  if (!total) total = Array(0.0f, float32);
  Array norm = sqrt(*total);
  Array scale = minimum(Array(1.0f), Array(max_norm) / (norm + 1e-6f));
  return {scale, norm};
}

std::pair<ParamMap, Array> clip_grad_norm(const ParamMap& grads, float max_norm) {
  auto [scale, norm] = clip_grad_scale(grads, max_norm);
  ParamMap out;
  for (auto& [k, g] : grads) out.emplace(k, astype(scaled_float(g, scale), g.dtype()));
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

ParamMap Optimizer::apply(const ParamMap& params, const ParamMap& grads,
                          const std::optional<Array>& grad_scale) {
  ParamMap out;
  const float lr = lr_(step_);
  ++step_;
  std::vector<std::string> names;
  for (auto& [name, p] : params) {
    auto g = grads.find(name);
    if (g == grads.end()) {
      out.emplace(name, p);
      continue;
    }
    if (g->second.shape() != p.shape())
      raise("[optimizer] gradient of '{}' has shape {} but the parameter has {}", name,
            shape_str(g->second.shape()), shape_str(p.shape()));
    names.push_back(name);
  }
  update_all(names, params, grads, grad_scale, lr, out);
  // Keep the state graph short: evaluate the new state with the parameters.
  std::vector<Array> to_eval;
  for (auto& [k, v] : out) to_eval.push_back(v);
  for (auto& [k, v] : slots_) to_eval.push_back(v);
  eval(to_eval);
  return out;
}

void Optimizer::update_all(const std::vector<std::string>& names, const ParamMap& params,
                           const ParamMap& grads, const std::optional<Array>& grad_scale, float lr,
                           ParamMap& out) {
  for (const auto& name : names)
    out.emplace(name,
                update_one(name, params.at(name), scaled_float(grads.at(name), grad_scale), lr));
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

void Adam::update_all(const std::vector<std::string>& names, const ParamMap& params,
                      const ParamMap& grads, const std::optional<Array>& grad_scale, float lr,
                      ParamMap& out) {
  static const bool fused = env::flag("INGOT_FUSED_OPTIM", true);
  // The scalars of this step, as adam_direction and update_one compute them.
  fast::AdamStepOptions o;
  o.lr = lr;
  o.beta1 = opt_.beta1;
  o.beta2 = opt_.beta2;
  o.one_minus_beta1 = 1.0f - opt_.beta1;
  o.one_minus_beta2 = 1.0f - opt_.beta2;
  o.eps = opt_.eps;
  if (opt_.bias_correction) {
    o.c1 = 1.0f - std::pow(opt_.beta1, static_cast<float>(step_));
    o.c2 = 1.0f - std::pow(opt_.beta2, static_cast<float>(step_));
  }
  o.weight_decay = opt_.weight_decay;
  o.decay = 1.0f - lr * opt_.weight_decay;
  o.decoupled = decoupled();
  auto takes = [](Dtype t) { return t == float32 || t == bfloat16 || t == float16; };
  // Parameters grouped by the device their update runs on (the gradient's, as slot() places
  // the state), in order of first appearance.
  std::vector<std::pair<Device, std::vector<std::string>>> groups;
  for (const auto& name : names) {
    const Array &p = params.at(name), &g = grads.at(name);
    if (!takes(p.dtype()) || !takes(g.dtype())) {
      out.emplace(name, update_one(name, p, scaled_float(g, grad_scale), lr));
      continue;
    }
    add_to_group(groups, op_device(g), name);
  }
  // Chunks of up to 16 parameters a step: one kernel launch each on the GPU, and few enough
  // outputs that every output's hold on the shared inputs stays cheap (48 outputs x 65 inputs).
  constexpr size_t kChunk = 16;
  std::vector<std::pair<Device, std::vector<std::string>>> chunks;
  for (auto& [d, group] : groups)
    for (size_t at = 0; at < group.size(); at += kChunk)
      chunks.emplace_back(
          d, std::vector<std::string>(
                 group.begin() + static_cast<std::ptrdiff_t>(at),
                 group.begin() + static_cast<std::ptrdiff_t>(std::min(group.size(), at + kChunk))));
  for (auto& [d, group] : chunks) {
    std::vector<Array> ps, gs, ms, vs;
    for (const auto& name : group) {
      const Array& g = grads.at(name);
      ps.push_back(params.at(name));
      gs.push_back(g);
      ms.push_back(slot(name, "m", g));
      vs.push_back(slot(name, "v", g));
    }
    std::optional<Array> scale;
    if (grad_scale) scale = on_device(*grad_scale, d);
    const std::vector<Array> r = fused ? fast::adam_step(ps, gs, ms, vs, o, scale, d)
                                       : fast::ref::adam_step(ps, gs, ms, vs, o, scale, d);
    const size_t n = group.size();
    for (size_t i = 0; i < n; ++i) {
      out.emplace(group[i], r[i]);
      slot(group[i], "m", gs[i]) = r[n + i];
      slot(group[i], "v", gs[i]) = r[2 * n + i];
    }
  }
}

AdamW::AdamW(Schedule lr, AdamOptions opt) : Adam(std::move(lr), opt) {}

Array AdamW::update_one(const std::string& name, const Array& p, const Array& g, float lr) {
  Array pf = astype(p, float32);
  pf = pf * (1.0f - lr * opt_.weight_decay);
  return astype(pf - lr * adam_direction(name, g), p.dtype());
}

}  // namespace ingot::nn
