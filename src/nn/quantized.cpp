// Quantized layers (see quantized.h).
#include "nn/quantized.h"

#include "core/ops/ops.h"
#include "util/error.h"

namespace ingot::nn {
namespace {

std::optional<QuantizeOptions> quantization_of(const Module& m) {
  if (auto* l = dynamic_cast<const Linear*>(&m)) return l->quantization();
  if (auto* e = dynamic_cast<const Embedding*>(&m)) return e->quantization();
  raise("[quantize] expected a Linear or Embedding module");
}

void walk(Module& m, const std::string& path, const QuantizePredicate& pred, int& count) {
  const bool is_linear = dynamic_cast<Linear*>(&m) != nullptr;
  const bool is_embed = dynamic_cast<Embedding*>(&m) != nullptr;
  if ((is_linear || is_embed) && !quantization_of(m)) {
    if (auto opt = pred(path, m)) {
      if (is_linear)
        dynamic_cast<Linear&>(m).quantize(*opt);
      else
        dynamic_cast<Embedding&>(m).quantize(*opt);
      ++count;
    }
  }
  for (const auto& [name, child] : m.children())
    walk(*child, path.empty() ? name : path + "." + name, pred, count);
}

}  // namespace

void Linear::quantize(QuantizeOptions opt) {
  if (quant_) raise("[linear] the layer is already quantized");
  check_quantize_options(opt, "linear");
  const Array w = param("weight");
  if (w.shape(1) % opt.group_size != 0)
    raise("[linear] cannot quantize a layer of {} input features in groups of {}", w.shape(1),
          opt.group_size);
  QuantizedWeight q = ingot::quantize(w, opt);
  register_parameter("weight", q.w);
  register_parameter("scales", q.scales);
  register_parameter("biases", q.biases);
  quant_ = opt;
}

void Embedding::quantize(QuantizeOptions opt) {
  if (quant_) raise("[embedding] the table is already quantized");
  check_quantize_options(opt, "embedding");
  const Array w = param("weight");
  if (w.shape(1) % opt.group_size != 0)
    raise("[embedding] cannot quantize a table of width {} in groups of {}", w.shape(1),
          opt.group_size);
  QuantizedWeight q = ingot::quantize(w, opt);
  register_parameter("weight", q.w);
  register_parameter("scales", q.scales);
  register_parameter("biases", q.biases);
  quant_ = opt;
}

QuantizedLinear::QuantizedLinear(int64_t in, int64_t out, bool bias, QuantizeOptions opt,
                                 Dtype dtype)
    : Linear(in, out, bias, dtype) {
  quantize(opt);
}

QuantizedEmbedding::QuantizedEmbedding(int64_t n, int64_t dims, QuantizeOptions opt, Dtype dtype)
    : Embedding(n, dims, dtype) {
  quantize(opt);
}

int quantize_modules(Module& root, const QuantizePredicate& pred) {
  int count = 0;
  walk(root, "", pred, count);
  return count;
}

Array dense_weight(const Module& m) {
  auto q = quantization_of(m);
  if (!q) return m.param("weight");
  return dequantize(m.param("weight"), m.param("scales"), m.param("biases"), *q);
}

Array weight_rows(const Module& m, const Array& ids) {
  auto q = quantization_of(m);
  if (!q) return take(m.param("weight"), ids, 0);
  return dequantize(take(m.param("weight"), ids, 0), take(m.param("scales"), ids, 0),
                    take(m.param("biases"), ids, 0), *q);
}

}  // namespace ingot::nn
