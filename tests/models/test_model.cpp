// Model API on the tiny fixtures: hidden + lm_head on chosen rows, batches, incremental decoding
// through a KV cache (sliding windows included), left-padded batches with a mask and per-row
// offsets, eager vs fast attention, float16 compute, and load errors surfacing from the
// checkpoint validation.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/ingot.h"
#include "core/io/safetensors.h"
#include "models/model.h"
#include "models/parity_util.h"
#include "util/error.h"

namespace ingot::models {
namespace {

/// A plain growing cache: concatenates keys/values along S.
class ConcatCache : public nn::KVCache {
 public:
  std::pair<Array, Array> update_and_fetch(const Array& k, const Array& v) override {
    k_ = k_.valid() ? concatenate({k_, k}, 2) : k;
    v_ = v_.valid() ? concatenate({v_, v}, 2) : v;
    offset_ += k.shape(2);
    return {k_, v_};
  }
  int64_t offset() const override { return offset_; }
  const Array& keys() const { return k_; }
  const Array& values() const { return v_; }

 private:
  Array k_, v_;
  int64_t offset_ = 0;
};

double max_rel(const Array& a, const Array& b) {
  Array d = max(abs(astype(a, float32) - astype(b, float32)));
  return d.item<float>() / max(abs(astype(b, float32))).item<float>();
}

std::vector<int32_t> seq_ids(const std::string& fx, int i) {
  return load_reference(fx)["sequences"][i]["ids"].get<std::vector<int32_t>>();
}

TEST(Model, HiddenAndLmHeadOnChosenRowsEqualForward) {
  auto m = load_model(fixture_dir("qwen3_f32_tied"), {.warn = false});
  Array ids = ids_array(seq_ids("qwen3_f32_tied", 1));
  Array full = m->forward(ids);  // [1, L, V]
  Array h = m->hidden(ids);
  EXPECT_EQ(h.shape(), (Shape{1, ids.shape(1), m->config().hidden_size}));
  const int64_t l = ids.shape(1);
  Array last = m->lm_head(slice(h, {0, l - 1, 0}, {1, l, h.shape(2)}));
  // One row runs as a GEMV, L rows as a GEMM: same values up to float32 summation order.
  EXPECT_LT(max_rel(last, slice(full, {0, l - 1, 0}, {1, l, full.shape(2)})), 1e-6);
  // Only a few vocabulary rows: h @ W[rows]^T.
  Array rows = Array({3, 17, 200}, int32);
  Array sub = matmul(h, transpose(take(m->lm_head_weight(), rows, 0)));
  EXPECT_LT(max_rel(sub, take(full, rows, 2)), 1e-6);
  EXPECT_EQ(m->lm_head_weight().shape(), (Shape{256, 60}));  // tied: the embedding
}

TEST(Model, LastQueriesOnlyEqualTheLastRowsOfTheFullPass) {
  // ForwardOptions::queries: the last layer runs only the wanted rows; the keys and values
  // written to the caches still cover every position.
  for (const char* fx : {"llama_f32", "qwen3_f32_tied", "gemma3_f32"}) {
    for (AttentionImpl impl : {AttentionImpl::fast, AttentionImpl::eager}) {
      auto m = load_model(fixture_dir(fx), {.dtype = float32, .warn = false, .attention = impl});
      Array ids = ids_array(seq_ids(fx, 1));
      const int64_t l = ids.shape(1), e = m->config().hidden_size;
      std::vector<ConcatCache> full_c(static_cast<size_t>(m->num_layers()));
      ForwardOptions fo;
      for (auto& c : full_c) fo.caches.push_back(&c);
      Array full = m->hidden(ids, fo);
      for (int64_t n : {int64_t{1}, int64_t{3}}) {
        ForwardOptions o;
        o.queries = n;
        std::vector<ConcatCache> cs(static_cast<size_t>(m->num_layers()));
        for (auto& c : cs) o.caches.push_back(&c);
        Array part = m->hidden(ids, o);
        ASSERT_EQ(part.shape(), (Shape{1, n, e})) << fx;
        // n rows against L rows through the projections: float32 summation order only.
        EXPECT_LT(max_rel(part, slice(full, {0, l - n, 0}, {1, l, e})), 1e-6)
            << fx << " n " << n << " impl " << static_cast<int>(impl);
        // The last layer's keys and values still cover every position, computed as in the
        // full pass (the same products over the same rows).
        EXPECT_EQ(cs.back().offset(), l) << fx;
        EXPECT_EQ(max_rel(cs.back().keys(), full_c.back().keys()), 0.0) << fx;
        EXPECT_EQ(max_rel(cs.back().values(), full_c.back().values()), 0.0) << fx;
      }
      // queries >= L (or 0) is the full pass.
      ForwardOptions all;
      all.queries = l + 5;
      EXPECT_EQ(m->hidden(ids, all).shape(), (Shape{1, l, e}));
    }
  }
}

TEST(Model, BatchRowsEqualSingleRows) {
  auto m = load_model(fixture_dir("gemma3_f32"), {.warn = false});
  auto a = seq_ids("gemma3_f32", 1);  // L = 7
  std::vector<int32_t> b(a.rbegin(), a.rend());
  std::vector<int32_t> both = a;
  both.insert(both.end(), b.begin(), b.end());
  Array batch = m->forward(Array(both, {2, 7}, int32));
  EXPECT_LT(max_rel(slice(batch, {0, 0, 0}, {1, 7, 256}), m->forward(ids_array(a))), 1e-5);
  EXPECT_LT(max_rel(slice(batch, {1, 0, 0}, {2, 7, 256}), m->forward(ids_array(b))), 1e-5);
}

class Decode : public testing::TestWithParam<std::tuple<std::string, AttentionImpl>> {};

TEST_P(Decode, CachedDecodingEqualsFullForward) {
  const auto& [fx, impl] = GetParam();
  auto m = load_model(fixture_dir(fx), {.dtype = float32, .warn = false, .attention = impl});
  auto ids = seq_ids(fx, 2);  // L = 37 > every sliding window
  ids.resize(12);
  Array full = m->forward(ids_array(ids));
  std::vector<ConcatCache> caches(static_cast<size_t>(m->num_layers()));
  ForwardOptions opt;
  for (auto& c : caches) opt.caches.push_back(&c);
  const int prefill = 5;
  std::vector<int32_t> head(ids.begin(), ids.begin() + prefill);
  Array got = m->forward(ids_array(head), opt);
  EXPECT_LT(max_rel(got, slice(full, {0, 0, 0}, {1, prefill, 256})), 1e-5);
  for (int t = prefill; t < static_cast<int>(ids.size()); ++t) {
    Array step = m->forward(ids_array({ids[static_cast<size_t>(t)]}), opt);  // [1, 1, V]
    EXPECT_LT(max_rel(step, slice(full, {0, t, 0}, {1, t + 1, 256})), 1e-5) << "step " << t;
  }
  EXPECT_EQ(caches[0].offset(), static_cast<int64_t>(ids.size()));
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, Decode,
    testing::Combine(testing::Values("llama_f32", "qwen3_f32_tied", "gemma3_f32"),
                     testing::Values(AttentionImpl::fast, AttentionImpl::eager)));

TEST(Model, LeftPaddedBatchWithMaskAndOffsets) {
  for (auto impl : {AttentionImpl::fast, AttentionImpl::eager}) {
    auto m = load_model(fixture_dir("gemma3_f32"), {.warn = false, .attention = impl});
    std::vector<int32_t> a = {5, 9, 33, 70, 2, 8}, b = {11, 12, 13, 14, 15, 16, 17, 18};
    const int64_t l = 8, pad = l - static_cast<int64_t>(a.size());
    std::vector<int32_t> ids(2 * l, 0);
    std::copy(a.begin(), a.end(), ids.begin() + pad);
    std::copy(b.begin(), b.end(), ids.begin() + l);
    // keep[b, 0, i, j]: causal and key j is not padding.
    std::vector<uint8_t> keep(2 * l * l, 0);
    for (int64_t r = 0; r < 2; ++r)
      for (int64_t i = 0; i < l; ++i)
        for (int64_t j = 0; j <= i; ++j) keep[(r * l + i) * l + j] = r == 1 || j >= pad;
    ForwardOptions opt{.offsets = Array(std::vector<int32_t>{static_cast<int32_t>(-pad), 0}, {2}),
                       .mask = astype(Array(keep, {2, 1, l, l}, uint8), bool_)};
    Array out = m->forward(Array(ids, {2, l}, int32), opt);
    EXPECT_LT(max_rel(slice(out, {0, pad, 0}, {1, l, 256}), m->forward(ids_array(a))), 1e-5)
        << "impl " << static_cast<int>(impl);
    EXPECT_LT(max_rel(slice(out, {1, 0, 0}, {2, l, 256}), m->forward(ids_array(b))), 1e-5);
  }
}

TEST(Model, EagerAndFastAttentionAgreeInFloat32) {
  for (const char* fx : {"llama_f32", "gemma3_bf16"}) {
    auto fast = load_model(fixture_dir(fx), {.dtype = float32, .warn = false});
    auto eager = load_model(fixture_dir(fx),
                            {.dtype = float32, .warn = false, .attention = AttentionImpl::eager});
    Array ids = ids_array(seq_ids(fx, 2));
    EXPECT_LT(max_rel(eager->forward(ids), fast->forward(ids)), 1e-5) << fx;
  }
}

TEST(Model, Float16Compute) {
  auto ref = load_reference("llama_f32");
  auto m = load_model(fixture_dir("llama_f32"), {.dtype = float16, .warn = false});
  EXPECT_EQ(m->dtype(), float16);
  for (const auto& seq : ref["sequences"]) {
    Array logits = m->forward(ids_array(seq["ids"].get<std::vector<int32_t>>()));
    EXPECT_EQ(logits.dtype(), float32);
    EXPECT_LT(rel_err(logits, seq["logits_f64"]), 1e-2);  // f16 has 3 more mantissa bits
  }
}

/// A copy of a fixture whose weights are edited by `edit` (arrays it adds must be CPU arrays:
/// the writer reads host memory).
std::string edited_fixture(const std::string& fx, const std::string& dir,
                           const std::function<void(std::map<std::string, Array>&)>& edit) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  fs::copy_file(fixture_dir(fx) + "/config.json", dir + "/config.json");
  auto w = load_safetensors(fixture_dir(fx) + "/model.safetensors");
  edit(w);
  save_safetensors(dir + "/model.safetensors", w);
  return dir;
}

template <typename E>
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("wrong exception type: ") + e.what();
  }
  return "no exception";
}

TEST(ModelErrors, MissingAndWrongShapeTensorsNameTheTensor) {
  TempDir tmp;
  const std::string missing = edited_fixture("llama_f32", tmp.path + "/missing", [](auto& w) {
    w.erase("model.layers.1.mlp.up_proj.weight");
  });
  std::string msg = error_of<FormatError>([&] { load_model(missing, {.warn = false}); });
  EXPECT_NE(msg.find("model.layers.1.mlp.up_proj.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;

  const std::string shape = edited_fixture("qwen3_f32_tied", tmp.path + "/shape", [](auto& w) {
    w["model.layers.0.self_attn.k_norm.weight"] = zeros({15}, float32, cpu_device);
  });
  msg = error_of<FormatError>([&] { load_model(shape, {.warn = false}); });
  EXPECT_NE(msg.find("model.layers.0.self_attn.k_norm.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[15]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[16]"), std::string::npos) << msg;

  // An unexpected extra tensor only warns.
  const std::string extra = edited_fixture("llama_f32", tmp.path + "/extra", [](auto& w) {
    w["model.layers.0.self_attn.rotary_emb.inv_freq"] = zeros({8}, float32, cpu_device);
  });
  EXPECT_NO_THROW(load_model(extra, {.warn = false}));
}

TEST(ModelErrors, IntegerWeightsAreRejectedNamingTensorAndDtypes) {
  TempDir tmp;
  // An integer embedding used to fail deep inside initialisation ("[normal] dtype must be a
  // floating type"), an integer lm_head to load and give logits around 1e10.
  const auto cast_to = [](const char* name, Dtype t) {
    return
        [name, t](std::map<std::string, Array>& w) { w[name] = astype(w.at(name), t, cpu_device); };
  };
  const std::string embed =
      edited_fixture("llama_f32", tmp.path + "/embed", cast_to("model.embed_tokens.weight", int32));
  std::string msg = error_of<FormatError>([&] { load_model(embed, {.warn = false}); });
  EXPECT_NE(msg.find("tensor 'model.embed_tokens.weight' is stored as I32, but llama needs a "
                     "floating-point weight"),
            std::string::npos)
      << msg;
  const std::string head =
      edited_fixture("llama_f32", tmp.path + "/head", cast_to("lm_head.weight", int32));
  msg = error_of<FormatError>([&] { load_model(head, {.warn = false}); });
  EXPECT_NE(msg.find("tensor 'lm_head.weight' is stored as I32"), std::string::npos) << msg;
  const std::string qk = edited_fixture("qwen3_f32_tied", tmp.path + "/qk",
                                        cast_to("model.layers.1.self_attn.q_norm.weight", int8));
  msg = error_of<FormatError>([&] { load_model(qk, {.warn = false}); });
  EXPECT_NE(msg.find("'model.layers.1.self_attn.q_norm.weight' is stored as I8, but qwen3"),
            std::string::npos)
      << msg;
}

TEST(ModelErrors, BadInputs) {
  auto m = load_model(fixture_dir("llama_f32"), {.warn = false});
  std::string msg = error_of<InvalidArgument>([&] { m->forward(Array({1.0f, 2.0f})); });
  EXPECT_NE(msg.find("[model] ids must be integers of shape [B, L]"), std::string::npos) << msg;
  ConcatCache c;
  ForwardOptions opt{.caches = {&c}};
  msg = error_of<InvalidArgument>([&] { m->forward(ids_array({1, 2}), opt); });
  EXPECT_NE(msg.find("expected 3 caches"), std::string::npos) << msg;
  msg = error_of<IoError>([&] { load_model("/nonexistent/model"); });
  EXPECT_NE(msg.find("/nonexistent/model"), std::string::npos) << msg;
}

}  // namespace
}  // namespace ingot::models
