// `ingot demo`: a short self-demonstration of the array core (lazy graph, matmul in float32 and
// bfloat16, softmax, fast ops, memory figures). `make run` calls it until generation lands.
#include <chrono>
#include <cstdio>

#include "command.h"
#include "core/ingot.h"
#include "llm_common.h"

namespace ingot::cli {
namespace {

int run_demo(const std::string& device) {
  using clock = std::chrono::steady_clock;
  const Device dev = select_device(device);
  std::printf("ingot array core demo (device %s)\n", dev.str().c_str());
  random::seed(0);
  // A small two-layer MLP, built lazily and evaluated once.
  Array x = random::normal({64, 512});
  Array w1 = random::normal({512, 1024}, float32, 0.0, 0.04);
  Array w2 = random::normal({1024, 10}, float32, 0.0, 0.04);
  auto t0 = clock::now();
  Array h = gelu(matmul(x, w1));
  Array p = softmax(matmul(h, w2), -1);
  p.eval();
  double ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  std::vector<float> row = slice(p, {0, 0}, {1, 10}).to_vector<float>();
  std::printf("float32 MLP 64x512 -> 1024 -> 10 in %.2f ms; row 0 probabilities:", ms);
  float total = 0;
  for (float v : row) {
    std::printf(" %.3f", v);
    total += v;
  }
  std::printf(" (sum %.4f)\n", total);
  // The same in bfloat16 weights with float32 softmax.
  Array pb = softmax(astype(matmul(astype(h, bfloat16), astype(w2, bfloat16)), float32), -1);
  float diff = max(abs(pb - p)).item<float>();
  std::printf("bfloat16 head: max |p_bf16 - p_f32| = %.4f\n", diff);
  // Fast ops against their reference compositions.
  Array q = random::normal({1, 4, 16, 64}), k = random::normal({1, 2, 16, 64});
  Array v = random::normal({1, 2, 16, 64});
  fast::SdpaOptions so{.scale = 0.125f, .causal = true};
  Array att = fast::scaled_dot_product_attention(fast::rope(q, 64), fast::rope(k, 64), v, so);
  Array ref = fast::ref::scaled_dot_product_attention(fast::ref::rope(q, 64),
                                                      fast::ref::rope(k, 64), v, so);
  std::printf("causal GQA attention with rope: max |fused - reference| = %.2e\n",
              max(abs(att - ref)).item<float>());
  std::printf("memory (%s): active %zu B, peak %zu B, cache %zu B\n", dev.str().c_str(),
              memory::active(dev), memory::peak(dev), memory::cache(dev));
  return 0;
}

const Registrar reg({"demo", "Run a short self-demo of the array core", [](CLI::App& app) {
                       auto device = std::make_shared<std::string>();
                       add_device_option(app, *device);
                       app.footer("Examples:\n  ingot demo\n  ingot demo --device cuda:0");
                       return std::function<int()>([device] { return run_demo(*device); });
                     }});

}  // namespace
}  // namespace ingot::cli
