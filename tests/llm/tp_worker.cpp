// Worker process of test_tensor_parallel: loads a model fixture sharded over the group of
// INGOT_* variables and writes its logits (a full forward pass, then a prefill + two decode
// steps through a KV cache) to <out>/rank<R>_<name>.txt.
// Usage: tp_worker MODEL_DIR OUT_DIR DTYPE
#include <fstream>
#include <string>

#include "core/dist/ops.h"
#include "core/ops/ops.h"
#include "llm/kv_cache.h"
#include "models/model.h"
#include "tp_ids.h"
#include "util/error.h"

using namespace ingot;

int main(int argc, char** argv) {
  if (argc < 4) return 2;
  const std::string model_dir = argv[1], out = argv[2];
  try {
    auto g = std::make_shared<dist::Group>(dist::Group::options_from_env());
    auto write = [&](const std::string& name, const Array& a) {
      std::ofstream f(out + "/rank" + std::to_string(g->rank()) + "_" + name + ".txt");
      f.precision(17);
      for (double v : a.to_vector<double>()) f << v << "\n";
    };
    auto model = models::load_model(model_dir, {.dtype = dtype_from_name(argv[3]),
                                                .warn = false,
                                                .device = cpu_device,
                                                .tensor_parallel = g});
    const Array ids = test::tp_ids(model->vocab_size());  // [2, 7]
    write("logits", model->forward(ids));
    // Prefill 5 positions, then one token at a time: logits of positions 4, 5, 6.
    llm::PromptCache cache(*model);
    models::ForwardOptions fo{.caches = cache.layers()};
    Array l0 = model->forward(slice_axis(ids, 1, 0, 5), fo);
    Array l1 = model->forward(slice_axis(ids, 1, 5, 6), fo);
    Array l2 = model->forward(slice_axis(ids, 1, 6, 7), fo);
    write("decode", concatenate({slice_axis(l0, 1, 4, 5), l1, l2}, 1));
    write("rows", model->lm_head_rows(model->hidden(ids), Array({3, 1, 200}, int32)));
  } catch (const Error& e) {
    std::ofstream f(out + "/rank" + std::getenv("INGOT_RANK") + "_error.txt");
    f << e.what();
    return 1;
  }
  return 0;
}
