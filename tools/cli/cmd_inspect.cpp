// `ingot inspect --model DIR`: what a checkpoint holds — architecture, dimensions, attention
// layout, rope, parameter count, dtypes, files and tensors — as text or JSON (--json); with
// --load, also loads the weights onto --device and reports the load time.
#include <algorithm>
#include <cstdio>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "command.h"
#include "core/allocator.h"
#include "llm_common.h"
#include "models/checkpoint.h"
#include "models/model.h"
#include "models/registry.h"
#include "util/error.h"

namespace ingot::cli {
namespace {

using ojson = nlohmann::ordered_json;
using models::Checkpoint;

struct InspectArgs {
  std::string model;
  bool all_tensors = false;
  bool json = false;
  bool load = false;
  std::string dtype;
  std::string device;
};

std::string human_bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  return u == 0 ? fmt::format("{} B", b) : fmt::format("{:.1f} {}", v, units[u]);
}

std::string human_count(int64_t n) {
  if (n >= 1'000'000'000) return fmt::format("{:.2f}B", n / 1e9);
  if (n >= 1'000'000) return fmt::format("{:.2f}M", n / 1e6);
  if (n >= 1'000) return fmt::format("{:.1f}K", n / 1e3);
  return std::to_string(n);
}

ojson rope_json(const models::RopeParams& r) {
  ojson j = {{"rope_type", r.type}, {"rope_theta", r.theta}};
  if (r.type != "default") j["factor"] = r.factor;
  if (r.type == "llama3") {
    j["low_freq_factor"] = r.low_freq_factor;
    j["high_freq_factor"] = r.high_freq_factor;
    j["original_max_position_embeddings"] = r.original_max_position_embeddings;
  }
  if (r.partial_rotary_factor != 1.0) j["partial_rotary_factor"] = r.partial_rotary_factor;
  j["supported"] = r.supported();
  return j;
}

/// Everything inspect reports, as JSON (the text form is printed from it).
ojson describe(const Checkpoint& c) {
  const models::ModelConfig& m = c.config();
  ojson j;
  j["model"] = c.dir();
  j["model_type"] = m.model_type;
  if (m.outer_model_type != m.model_type) j["outer_model_type"] = m.outer_model_type;
  j["architecture"] = c.architecture();
  j["architectures"] = m.architectures;
  j["layers"] = m.num_hidden_layers;
  j["hidden_size"] = m.hidden_size;
  j["intermediate_size"] = m.intermediate_size;
  j["num_attention_heads"] = m.num_attention_heads;
  j["num_key_value_heads"] = m.num_key_value_heads;
  j["head_dim"] = m.head_dim;
  j["vocab_size"] = m.vocab_size;
  j["max_position_embeddings"] = m.max_position_embeddings;
  j["tie_word_embeddings"] = m.tie_word_embeddings;
  j["hidden_act"] = m.hidden_act;
  j["config_dtype"] = m.dtype ? ojson(std::string(dtype_name(*m.dtype))) : ojson();
  j["attention"] = m.attention_summary();
  j["layer_types"] = m.layer_types;
  ojson rope = ojson::object();
  for (auto& [k, r] : m.rope)  // only the kinds some layer uses
    if (std::find(m.layer_types.begin(), m.layer_types.end(), k) != m.layer_types.end())
      rope[k] = rope_json(r);
  j["rope"] = rope;
  if (m.sliding_window) j["sliding_window"] = *m.sliding_window;
  if (m.query_pre_attn_scalar) j["query_pre_attn_scalar"] = *m.query_pre_attn_scalar;
  if (m.final_logit_softcapping) j["final_logit_softcapping"] = *m.final_logit_softcapping;
  if (m.attn_logit_softcapping) j["attn_logit_softcapping"] = *m.attn_logit_softcapping;
  if (m.quantization) {  // mlx-community affine quantization
    ojson q = {{"group_size", m.quantization->defaults.group_size},
               {"bits", m.quantization->defaults.bits}};
    ojson mods = ojson::object();
    for (const auto& [path, spec] : m.quantization->modules)
      mods[path] =
          spec ? ojson{{"group_size", spec->group_size}, {"bits", spec->bits}} : ojson(false);
    q["modules"] = mods;
    int quantized = 0;
    for (const auto& name : c.names())
      if (name.size() > 7 && name.ends_with(".scales")) ++quantized;
    q["quantized_modules"] = quantized;
    j["quantization"] = q;
  }
  j["parameters"] = c.parameter_count();
  std::map<std::string, std::pair<int64_t, int64_t>> by_dtype;  // tensors, elements
  ojson tensors = ojson::array();
  for (const auto& name : c.names()) {
    const TensorInfo& t = c.info(name);
    auto& d = by_dtype[std::string(st_dtype_name(t.stored_dtype))];
    d.first += 1;
    d.second += shape_size(t.shape);
    tensors.push_back({{"name", name},
                       {"dtype", std::string(st_dtype_name(t.stored_dtype))},
                       {"shape", t.shape}});
  }
  ojson dts = ojson::object();
  for (auto& [k, v] : by_dtype) dts[k] = {{"tensors", v.first}, {"parameters", v.second}};
  j["dtypes"] = dts;
  ojson files = ojson::array();
  uint64_t total = 0;
  for (auto& f : c.files()) {
    files.push_back({{"path", f.path}, {"bytes", f.size}, {"tensors", f.num_tensors}});
    total += f.size;
  }
  j["files"] = files;
  j["total_bytes"] = total;
  if (!c.index_path().empty()) j["index"] = c.index_path();
  j["ignored_tensors"] = c.ignored();
  ojson problems = ojson::array();  // tensors the model cannot use (shapes are checked by --load)
  for (const auto& name : c.names())
    if (auto p = c.dtype_problem(name)) problems.push_back(*p);
  j["problems"] = problems;
  j["tensors"] = tensors;
  return j;
}

void print_text(const ojson& j, bool all_tensors) {
  auto line = [](const char* k, const std::string& v) { std::printf("%-14s %s\n", k, v.c_str()); };
  std::string arch =
      j["architecture"].get<std::string>() + " (model_type " + j["model_type"].get<std::string>();
  if (!j["architectures"].empty()) arch += ", " + j["architectures"][0].get<std::string>();
  line("model", j["model"].get<std::string>());
  line("architecture", arch + ")");
  line("layers", fmt::format("{}", j["layers"].get<int64_t>()));
  line("dimensions",
       fmt::format("hidden {}, intermediate {}, heads {}, kv heads {}, head_dim {}, vocab {}",
                   j["hidden_size"].get<int64_t>(), j["intermediate_size"].get<int64_t>(),
                   j["num_attention_heads"].get<int64_t>(), j["num_key_value_heads"].get<int64_t>(),
                   j["head_dim"].get<int64_t>(), j["vocab_size"].get<int64_t>()));
  line("attention", j["attention"].get<std::string>());
  for (auto it = j["rope"].begin(); it != j["rope"].end(); ++it) {
    std::string r;
    for (auto f = it->begin(); f != it->end(); ++f)
      if (f.key() != "supported") r += (r.empty() ? "" : " ") + f.key() + "=" + f->dump();
    if (!(*it)["supported"].get<bool>()) r += "  (not supported)";
    line(("rope " + std::string(it.key() == "full_attention" ? "global" : "sliding")).c_str(), r);
  }
  line("tied head", j["tie_word_embeddings"].get<bool>() ? "yes" : "no");
  if (j.contains("quantization")) {
    const ojson& q = j["quantization"];
    line("quantization",
         fmt::format("affine {}-bit, group size {}, {} modules quantized{}", q["bits"].get<int>(),
                     q["group_size"].get<int>(), q["quantized_modules"].get<int>(),
                     q["modules"].empty() ? "" : ", overrides " + q["modules"].dump()));
  }
  line("parameters", fmt::format("{} ({})", j["parameters"].get<int64_t>(),
                                 human_count(j["parameters"].get<int64_t>())));
  std::string d;
  for (auto it = j["dtypes"].begin(); it != j["dtypes"].end(); ++it)
    d += fmt::format("{}{}: {} tensors, {} params", d.empty() ? "" : "; ", it.key(),
                     (*it)["tensors"].get<int64_t>(),
                     human_count((*it)["parameters"].get<int64_t>()));
  if (!j["config_dtype"].is_null()) d += " (config: " + j["config_dtype"].get<std::string>() + ")";
  line("dtypes", d);
  for (auto& f : j["files"])
    line("file", fmt::format("{}  {}  ({} tensors)", f["path"].get<std::string>(),
                             human_bytes(f["bytes"].get<uint64_t>()), f["tensors"].get<size_t>()));
  if (j["files"].size() > 1) line("total size", human_bytes(j["total_bytes"].get<uint64_t>()));
  if (!j["ignored_tensors"].empty())
    line("ignored",
         fmt::format("{} tensors outside the text model (e.g. {})", j["ignored_tensors"].size(),
                     j["ignored_tensors"][0].get<std::string>()));
  for (const auto& p : j["problems"]) line("PROBLEM", p.get<std::string>());
  if (j.contains("load")) {
    const ojson& l = j["load"];
    line("loaded", fmt::format("{} in {:.3f} s ({}, {} allocated)", l["device"].get<std::string>(),
                               l["seconds"].get<double>(), l["dtype"].get<std::string>(),
                               human_bytes(l["allocated_bytes"].get<uint64_t>())));
  }
  const ojson& ts = j["tensors"];
  std::printf("tensors (%zu):\n", ts.size());
  const size_t head = 12, tail = 4;
  for (size_t i = 0; i < ts.size(); ++i) {
    if (!all_tensors && ts.size() > head + tail && i == head) {
      std::printf("  ... %zu more (--tensors lists all)\n", ts.size() - head - tail);
      i = ts.size() - tail;
    }
    const ojson& t = ts[i];
    std::string shape = "[";
    for (size_t k = 0; k < t["shape"].size(); ++k)
      shape += (k ? ", " : "") + std::to_string(t["shape"][k].get<int64_t>());
    std::printf("  %-56s %-8s %s\n", t["name"].get<std::string>().c_str(),
                t["dtype"].get<std::string>().c_str(), (shape + "]").c_str());
  }
}

/// Loads the weights as `generate` would and reports where, how long and how much memory the
/// device allocator gained (weights mmapped on the CPU without a cast count nothing).
ojson load_report(const InspectArgs& a) {
  models::LoadModelOptions lo =
      load_options({.dir = a.model, .dtype = a.dtype, .device = a.device});
  lo.warn = false;  // the checkpoint's own warnings were printed when it was opened above
  const size_t before = memory::active(*lo.device);
  auto model = models::load_model(a.model, lo);
  return {{"device", model->device().str()},
          {"seconds", model->load_seconds()},
          {"dtype", std::string(dtype_name(model->dtype()))},
          {"allocated_bytes", memory::active(model->device()) - before}};
}

int run_inspect(const InspectArgs& a) {
  // Describing reads headers only: no device is needed (or checked) for that.
  Checkpoint c = Checkpoint::open(a.model, {.warn = true, .device = cpu_device});
  ojson j = describe(c);
  std::string load_error;  // reported after the description, which stays useful
  if (a.load || !a.device.empty() || !a.dtype.empty()) {
    try {
      j["load"] = load_report(a);
    } catch (const Error& e) {
      load_error = e.what();
      j["load_error"] = load_error;
    }
  }
  if (a.json)
    std::printf("%s\n", j.dump(2).c_str());
  else
    print_text(j, a.all_tensors);
  if (!load_error.empty()) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", load_error.c_str());
    return 1;
  }
  return j["problems"].empty() ? 0 : 1;
}

const Registrar reg(
    {"inspect", "Describe a checkpoint: architecture, sizes, dtypes, tensors", [](CLI::App& app) {
       auto args = std::make_shared<InspectArgs>();
       app.add_option("--model,-m", args->model, "Checkpoint directory")->required();
       app.add_flag("--tensors", args->all_tensors,
                    "List every tensor (default: the first 12 and last 4)");
       app.add_flag("--json", args->json, "Machine-readable JSON (always lists every tensor)");
       app.add_flag("--load", args->load,
                    "Also load the weights and report the device, load time and memory");
       app.add_option("--dtype", args->dtype, "Compute dtype of --load (default: the checkpoint's)")
           ->check(CLI::IsMember({"float32", "bfloat16", "float16"}));
       add_device_option(app, args->device);
       app.footer(
           "Examples:\n"
           "  ingot inspect --model ~/models/Llama-3.2-1B --tensors\n"
           "  ingot inspect --model ~/models/Llama-3.2-1B --load --device cuda   (--device or "
           "--dtype imply --load)");
       return std::function<int()>([args] { return run_inspect(*args); });
     }});

}  // namespace
}  // namespace ingot::cli
