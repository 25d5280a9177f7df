// The C API against the C++ API it wraps: ops, random and fast ops give the same values, the
// LLM entry points (generate, batch generate, score, classify, embed, tokenizer, chat template,
// streaming decode) give the same results on the llama_bf16_tied fixture.
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/ingot.h"
#include "ingot/ingot.h"
#include "llm/generate.h"
#include "llm/score.h"
#include "llm/text/text.h"
#include "tokenizer/chat_template.h"

namespace ingot {
namespace {

const std::string kFixture = std::string(INGOT_SOURCE_DIR) + "/tests/data/models/llama_bf16_tied";

/// Owns a C array handle.
struct H {
  ingot_array h = nullptr;
  H() = default;
  explicit H(ingot_array a) : h(a) {}
  H(const H&) = delete;
  H(H&& o) noexcept : h(o.h) { o.h = nullptr; }
  ~H() { ingot_array_free(h); }
};

H from(const std::vector<float>& v, const Shape& s) {
  H a;
  EXPECT_EQ(
      ingot_array_from_data(v.data(), s.data(), static_cast<int>(s.size()), INGOT_FLOAT32, &a.h),
      INGOT_OK);
  return a;
}

std::vector<float> values(ingot_array a) {
  int64_t n = 0;
  EXPECT_EQ(ingot_array_size(a, &n), INGOT_OK);
  ingot_array f = nullptr;
  EXPECT_EQ(ingot_astype(a, INGOT_FLOAT32, &f), INGOT_OK) << ingot_last_error();
  std::vector<float> v(static_cast<size_t>(n));
  EXPECT_EQ(ingot_array_to_host(f, v.data(), v.size() * sizeof(float)), INGOT_OK)
      << ingot_last_error();
  ingot_array_free(f);
  return v;
}

Shape shape_of(ingot_array a) {
  int64_t s[8];
  int nd = 0;
  EXPECT_EQ(ingot_array_shape(a, s, 8, &nd), INGOT_OK);
  return Shape(s, s + nd);
}

void expect_same(ingot_array got, const Array& want, const char* what) {
  ASSERT_NE(got, nullptr) << what << ": " << ingot_last_error();
  EXPECT_EQ(shape_of(got), want.shape()) << what;
  int dt = -1;
  ingot_array_dtype(got, &dt);
  EXPECT_EQ(dt, static_cast<int>(want.dtype())) << what;
  std::vector<float> g = values(got), w = astype(want, float32).to_vector<float>();
  ASSERT_EQ(g.size(), w.size()) << what;
  for (size_t i = 0; i < g.size(); ++i) EXPECT_EQ(g[i], w[i]) << what << " at " << i;
}

TEST(CapiOps, UnaryAndBinaryEqualCpp) {
  const std::vector<float> av = {0.5f, -1.5f, 2.0f, 0.25f, 3.0f, -0.75f};
  const std::vector<float> bv = {1.5f, 0.5f, -2.0f, 4.0f, 0.125f, 2.5f};
  const Shape s = {2, 3};
  H a = from(av, s), b = from(bv, s);
  Array A(av, s), B(bv, s), Apos = abs(A) + 0.5f;
  H apos = from(Apos.to_vector<float>(), s);
  using U = int (*)(ingot_array, ingot_array*);
  const std::vector<std::tuple<const char*, U, std::function<Array(const Array&)>, bool>> un = {
      {"negative", ingot_negative, [](const Array& x) { return negative(x); }, false},
      {"exp", ingot_exp, [](const Array& x) { return exp(x); }, false},
      {"sigmoid", ingot_sigmoid, [](const Array& x) { return sigmoid(x); }, false},
      {"silu", ingot_silu, [](const Array& x) { return silu(x); }, false},
      {"tanh", ingot_tanh, [](const Array& x) { return tanh(x); }, false},
      {"sqrt", ingot_sqrt, [](const Array& x) { return sqrt(x); }, true},
      {"rsqrt", ingot_rsqrt, [](const Array& x) { return rsqrt(x); }, true},
      {"reciprocal", ingot_reciprocal, [](const Array& x) { return reciprocal(x); }, false},
      {"square", ingot_square, [](const Array& x) { return square(x); }, false},
  };
  for (auto& [name, cf, ref, positive] : un) {
    H r;
    ASSERT_EQ(cf(positive ? apos.h : a.h, &r.h), INGOT_OK) << name << ingot_last_error();
    expect_same(r.h, ref(positive ? Apos : A), name);
  }
  using Bf = int (*)(ingot_array, ingot_array, ingot_array*);
  const std::vector<std::tuple<const char*, Bf, std::function<Array(const Array&, const Array&)>>>
      bin = {
          {"add", ingot_add, [](const Array& x, const Array& y) { return add(x, y); }},
          {"multiply", ingot_multiply, [](const Array& x, const Array& y) { return x * y; }},
          {"divide", ingot_divide, [](const Array& x, const Array& y) { return x / y; }},
          {"subtract", ingot_subtract, [](const Array& x, const Array& y) { return x - y; }},
          {"maximum", ingot_maximum, [](const Array& x, const Array& y) { return maximum(x, y); }},
          {"minimum", ingot_minimum, [](const Array& x, const Array& y) { return minimum(x, y); }},
      };
  for (auto& [name, cf, ref] : bin) {
    H r;
    ASSERT_EQ(cf(a.h, b.h, &r.h), INGOT_OK) << name << ingot_last_error();
    expect_same(r.h, ref(A, B), name);
  }
  H p;
  ASSERT_EQ(ingot_power(apos.h, b.h, &p.h), INGOT_OK);
  expect_same(p.h, power(Apos, B), "power");
  H w, cond;
  ASSERT_EQ(ingot_greater(a.h, b.h, &cond.h), INGOT_OK);
  ASSERT_EQ(ingot_where(cond.h, a.h, b.h, &w.h), INGOT_OK);
  expect_same(w.h, where(A > B, A, B), "where");
}

TEST(CapiOps, ReductionsShapesAndIndexingEqualCpp) {
  std::vector<float> v(24);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(static_cast<float>(i) * 0.7f) * 3;
  const Shape s = {2, 3, 4};
  H a = from(v, s);
  Array A(v, s);
  const int ax1[] = {1}, ax02[] = {0, 2};
  H r;
  ASSERT_EQ(ingot_sum(a.h, ax1, 1, 1, &r.h), INGOT_OK);
  expect_same(r.h, sum(A, 1, true), "sum");
  H m;
  ASSERT_EQ(ingot_mean(a.h, ax02, 2, 0, &m.h), INGOT_OK);
  expect_same(m.h, mean(A, {0, 2}), "mean");
  H l;
  ASSERT_EQ(ingot_logsumexp(a.h, nullptr, 0, 0, &l.h), INGOT_OK);
  expect_same(l.h, logsumexp(A, {0, 1, 2}), "logsumexp");
  H sm;
  ASSERT_EQ(ingot_softmax(a.h, nullptr, 0, &sm.h), INGOT_OK);
  expect_same(sm.h, softmax(A, -1), "softmax");
  H tk, ti;
  ASSERT_EQ(ingot_topk(a.h, 2, -1, &tk.h), INGOT_OK);
  expect_same(tk.h, topk(A, 2, -1), "topk");
  ASSERT_EQ(ingot_topk_indices(a.h, 2, -1, &ti.h), INGOT_OK);
  expect_same(ti.h, topk_indices(A, 2, -1), "topk_indices");

  const int64_t ns[] = {4, -1};
  H rs;
  ASSERT_EQ(ingot_reshape(a.h, ns, 2, &rs.h), INGOT_OK);
  expect_same(rs.h, reshape(A, {4, -1}), "reshape");
  const int perm[] = {2, 0, 1};
  H tr;
  ASSERT_EQ(ingot_transpose(a.h, perm, 3, &tr.h), INGOT_OK);
  expect_same(tr.h, transpose(A, {2, 0, 1}), "transpose");
  const int e0[] = {0};
  H ed, sq;
  ASSERT_EQ(ingot_expand_dims(a.h, e0, 1, &ed.h), INGOT_OK);
  expect_same(ed.h, expand_dims(A, 0), "expand_dims");
  ASSERT_EQ(ingot_squeeze(ed.h, e0, 1, &sq.h), INGOT_OK);
  expect_same(sq.h, A, "squeeze");
  H sq_all;  // n_axes == 0: every size-1 axis ([1, 2, 3, 4] -> [2, 3, 4])
  ASSERT_EQ(ingot_squeeze(ed.h, nullptr, 0, &sq_all.h), INGOT_OK);
  expect_same(sq_all.h, A, "squeeze all");
  const int64_t bshape[] = {2, 2, 3, 4};
  H bc;
  ASSERT_EQ(ingot_broadcast_to(a.h, bshape, 4, &bc.h), INGOT_OK);
  expect_same(bc.h, broadcast_to(A, {2, 2, 3, 4}), "broadcast_to");
  ingot_array pair[] = {a.h, a.h};
  H cc;
  ASSERT_EQ(ingot_concatenate(pair, 2, 1, &cc.h), INGOT_OK);
  expect_same(cc.h, concatenate({A, A}, 1), "concatenate");
  const int64_t st[] = {0, 1, 0}, sp[] = {2, 3, 4}, ss[] = {1, 1, 2};
  H sl;
  ASSERT_EQ(ingot_slice(a.h, st, sp, ss, 3, &sl.h), INGOT_OK);
  expect_same(sl.h, slice(A, {0, 1, 0}, {2, 3, 4}, {1, 1, 2}), "slice");
  H su, upd;
  ASSERT_EQ(ingot_full(nullptr, 0, 7.0, INGOT_FLOAT32, &upd.h), INGOT_OK);
  ASSERT_EQ(ingot_slice_update(a.h, upd.h, st, sp, ss, 3, &su.h), INGOT_OK);
  expect_same(su.h, slice_update(A, Array(7.0f), {0, 1, 0}, {2, 3, 4}, {1, 1, 2}), "slice_update");

  const std::vector<int32_t> idx = {2, 0, 2};
  const int64_t is[] = {3};
  H ix;
  ASSERT_EQ(ingot_array_from_data(idx.data(), is, 1, INGOT_INT32, &ix.h), INGOT_OK);
  Array IX(idx, {3});
  H tk2;
  ASSERT_EQ(ingot_take(a.h, ix.h, 1, &tk2.h), INGOT_OK);
  expect_same(tk2.h, take(A, IX, 1), "take");
  H am, tal, pal, vals;
  const int64_t one = 1;
  ASSERT_EQ(ingot_argmax(a.h, -1, 1, &am.h), INGOT_OK);
  ASSERT_EQ(ingot_take_along_axis(a.h, am.h, -1, &tal.h), INGOT_OK);
  Array AM = argmax(A, -1, true);
  expect_same(tal.h, take_along_axis(A, AM, -1), "take_along_axis");
  ASSERT_EQ(ingot_full(&one, 1, -5.0, INGOT_FLOAT32, &vals.h), INGOT_OK);
  ASSERT_EQ(ingot_put_along_axis(a.h, am.h, vals.h, -1, &pal.h), INGOT_OK);
  expect_same(pal.h, put_along_axis(A, AM, full({1}, Array(-5.0f)), -1), "put_along_axis");
  H as16;
  ASSERT_EQ(ingot_astype(a.h, INGOT_BFLOAT16, &as16.h), INGOT_OK);
  expect_same(as16.h, astype(A, bfloat16), "astype");
}

TEST(CapiOps, RandomAndFastOpsEqualCpp) {
  H key, n, u;
  ASSERT_EQ(ingot_random_key(42, &key.h), INGOT_OK);
  const int64_t s[] = {2, 4, 3, 8};
  ASSERT_EQ(ingot_random_normal(s, 4, INGOT_FLOAT32, 0.0, 1.0, key.h, &n.h), INGOT_OK);
  const Array K = random::key(42);
  const Array N = random::normal({2, 4, 3, 8}, float32, 0.0, 1.0, K);
  expect_same(n.h, N, "normal");
  ASSERT_EQ(ingot_random_uniform(s, 4, INGOT_FLOAT32, -1.0, 2.0, key.h, &u.h), INGOT_OK);
  expect_same(u.h, random::uniform({2, 4, 3, 8}, float32, -1.0, 2.0, K), "uniform");

  const std::vector<float> wv = {1.0f, 0.5f, 2.0f, -1.0f, 1.5f, 0.25f, 1.0f, 3.0f};
  const int64_t ws[] = {8};
  H w;
  ASSERT_EQ(ingot_array_from_data(wv.data(), ws, 1, INGOT_FLOAT32, &w.h), INGOT_OK);
  const Array W(wv, {8});
  H rn, ln, rp, at;
  ASSERT_EQ(ingot_fast_rms_norm(n.h, w.h, 1e-5f, &rn.h), INGOT_OK);
  expect_same(rn.h, fast::rms_norm(N, W, {.eps = 1e-5f}), "rms_norm");
  ASSERT_EQ(ingot_fast_layer_norm(n.h, w.h, nullptr, 1e-5f, &ln.h), INGOT_OK);
  expect_same(ln.h, fast::layer_norm(N, W, std::nullopt, 1e-5f), "layer_norm");
  ASSERT_EQ(ingot_fast_rope(n.h, 8, 0, 10000.0f, 1.0f, 3, &rp.h), INGOT_OK);
  expect_same(rp.h, fast::rope(N, 8, {.offset = 3}), "rope");
  ASSERT_EQ(ingot_fast_sdpa(n.h, n.h, n.h, 0.35f, 1, nullptr, &at.h), INGOT_OK);
  expect_same(at.h, fast::scaled_dot_product_attention(N, N, N, {.scale = 0.35f, .causal = true}),
              "sdpa");
  H bad;
  EXPECT_EQ(ingot_fast_rms_norm(n.h, key.h, 1e-5f, &bad.h), INGOT_ERR_INVALID_ARGUMENT);
}

/// Both sides of the LLM comparisons: the C handle and the C++ objects, loaded alike.
class CapiLlm : public ::testing::Test {
 protected:
  void SetUp() override {
    ingot_model_options o{"cpu", "float32", nullptr};
    ASSERT_EQ(ingot_model_load(kFixture.c_str(), &o, &m_), INGOT_OK) << ingot_last_error();
    tm_ = llm::load_text_model(kFixture, {.dtype = float32, .warn = false, .device = cpu_device});
  }
  void TearDown() override { ingot_model_free(m_); }
  ingot_model m_ = nullptr;
  llm::TextModel tm_;
  const std::vector<std::vector<int32_t>> prompts_ = {
      {1, 375, 288, 83}, {1, 376, 383, 352, 84, 285, 263, 357}, {1, 291, 275, 306, 293}};
};

TEST_F(CapiLlm, GenerateAndBatchGenerateEqualCpp) {
  ingot_generate_options go = ingot_generate_options_default();
  go.max_tokens = 10;
  go.temperature = 0.8f;
  go.top_k = 20;
  go.seed = 7;
  std::string streamed;
  ingot_generation g;
  auto on_text = [](void* ctx, const char* p, size_t n) {
    static_cast<std::string*>(ctx)->append(p, n);
  };
  ASSERT_EQ(ingot_generate(m_, prompts_[1].data(), prompts_[1].size(), &go, nullptr, on_text,
                           &streamed, &g),
            INGOT_OK)
      << ingot_last_error();
  llm::TextGenerateOptions t;
  t.gen.max_tokens = 10;
  t.gen.sampler = {.temperature = 0.8f, .top_k = 20, .seed = 7};
  llm::TextResult want = llm::generate_text(tm_, prompts_[1], t);
  EXPECT_EQ(std::vector<int32_t>(g.tokens, g.tokens + g.n_tokens), want.tokens);
  EXPECT_EQ(std::string(g.text), want.text);
  EXPECT_EQ(streamed, want.text);
  ingot_generation_free(&g);

  std::vector<const int32_t*> ptrs;
  std::vector<size_t> lens;
  for (auto& p : prompts_) ptrs.push_back(p.data()), lens.push_back(p.size());
  go = ingot_generate_options_default();
  go.max_tokens = 6;
  ingot_batch_generation bg;
  ASSERT_EQ(ingot_generate_batch(m_, ptrs.data(), lens.data(), 3, &go, nullptr, nullptr, &bg),
            INGOT_OK)
      << ingot_last_error();
  llm::GenerateOptions gen;
  gen.max_tokens = 6;
  gen.stop_ids = tm_.tokenizer->special_tokens().eos_ids;
  llm::GenerationResult wb = llm::generate(*tm_.model, prompts_, gen);
  ASSERT_EQ(bg.n_rows, 3u);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_EQ(std::vector<int32_t>(bg.tokens + bg.offsets[i], bg.tokens + bg.offsets[i + 1]),
              wb.tokens[i])
        << "row " << i;
  ingot_batch_generation_free(&bg);
}

TEST_F(CapiLlm, ScoreClassifyEmbedEqualCpp) {
  const std::vector<std::vector<int32_t>> conts = {{293, 152}, {77}, {142, 215, 115}};
  std::vector<const int32_t*> pp, cp;
  std::vector<size_t> pl, cl;
  for (size_t i = 0; i < 3; ++i) {
    pp.push_back(prompts_[i].data()), pl.push_back(prompts_[i].size());
    cp.push_back(conts[i].data()), cl.push_back(conts[i].size());
  }
  std::vector<double> sums(3), toks(6);
  ASSERT_EQ(
      ingot_score(m_, pp.data(), pl.data(), cp.data(), cl.data(), 3, 2, sums.data(), toks.data()),
      INGOT_OK)
      << ingot_last_error();
  std::vector<llm::ScoreRequest> reqs;
  for (size_t i = 0; i < 3; ++i) reqs.push_back({prompts_[i], conts[i]});
  auto ws = llm::score(*tm_.model, reqs, 2);
  size_t at = 0;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(sums[i], ws[i].sum);
    for (double v : ws[i].token_logprobs) EXPECT_EQ(toks[at++], v);
  }

  const std::vector<std::vector<int32_t>> labels = {{293}, {77}, {142}};
  std::vector<const int32_t*> lp;
  std::vector<size_t> ll;
  for (auto& l : labels) lp.push_back(l.data()), ll.push_back(l.size());
  std::vector<double> probs(9);
  ASSERT_EQ(ingot_classify(m_, pp.data(), pl.data(), 3, lp.data(), ll.data(), 3, 2, probs.data()),
            INGOT_OK)
      << ingot_last_error();
  auto wc = llm::classify(*tm_.model, prompts_, labels, {.batch_size = 2});
  for (size_t i = 0; i < 3; ++i)
    for (size_t k = 0; k < 3; ++k) EXPECT_EQ(probs[i * 3 + k], wc[i][k]);

  const char* texts[] = {"good movie", "terrible plot, bad acting", "fine"};
  const char* tl[] = {" yes", " no"};
  std::vector<double> tp(6);
  ASSERT_EQ(ingot_classify_texts(m_, "Review: {text}\nGood?", tl, 2, texts, 3, 0, tp.data()),
            INGOT_OK)
      << ingot_last_error();
  auto wt = llm::classify_texts(tm_, {"Review: {text}\nGood?", {" yes", " no"}},
                                {texts[0], texts[1], texts[2]});
  for (size_t i = 0; i < 3; ++i)
    for (size_t k = 0; k < 2; ++k) EXPECT_EQ(tp[i * 2 + k], wt[i][k]);
  EXPECT_EQ(ingot_classify_texts(m_, "no placeholder", tl, 2, texts, 3, 0, tp.data()),
            INGOT_ERR_INVALID_ARGUMENT);

  int64_t e = 0;
  ASSERT_EQ(ingot_model_hidden_size(m_, &e), INGOT_OK);
  std::vector<float> emb(static_cast<size_t>(3 * e));
  ASSERT_EQ(ingot_embed(m_, pp.data(), pl.data(), 3, INGOT_POOL_MEAN, 0, emb.data()), INGOT_OK);
  auto we = llm::embed(*tm_.model, prompts_, llm::Pooling::mean);
  for (size_t i = 0; i < 3; ++i)
    for (size_t j = 0; j < static_cast<size_t>(e); ++j) EXPECT_EQ(emb[i * e + j], we[i][j]);

  // out-of-vocabulary ids are an error, not a crash
  const int32_t bad[] = {1, 100000};
  const int32_t* bp[] = {bad};
  const size_t bl[] = {2};
  EXPECT_EQ(ingot_classify(m_, bp, bl, 1, lp.data(), ll.data(), 3, 0, probs.data()),
            INGOT_ERR_INVALID_ARGUMENT);
}

TEST_F(CapiLlm, TokenizerEqualsCpp) {
  ingot_tokenizer t = nullptr;
  ASSERT_EQ(ingot_tokenizer_load(kFixture.c_str(), &t), INGOT_OK);
  for (const char* s : {"Hello, world!", "The quick brown fox jumps over the lazy dog.", "",
                        "  spaces\tand\nnewlines  ", "caf\xc3\xa9 \xe2\x9c\x93"}) {
    int32_t* ids = nullptr;
    size_t n = 0;
    ASSERT_EQ(ingot_tokenizer_encode(t, s, 1, &ids, &n), INGOT_OK);
    std::vector<int32_t> got(ids, ids + n);
    ingot_free(ids);
    EXPECT_EQ(got, tm_.tokenizer->encode(s)) << s;
    // streaming decode concatenates to decode
    ingot_stream_decoder d = nullptr;
    ASSERT_EQ(ingot_stream_decoder_new(t, 0, &d), INGOT_OK);
    std::string streamed;
    for (int32_t id : got) {
      char* p = nullptr;
      ASSERT_EQ(ingot_stream_decoder_step(d, id, &p), INGOT_OK);
      streamed += p;
      ingot_free(p);
    }
    char* p = nullptr;
    ASSERT_EQ(ingot_stream_decoder_finish(d, &p), INGOT_OK);
    streamed += p;
    ingot_free(p);
    ingot_stream_decoder_free(d);
    EXPECT_EQ(streamed, tm_.tokenizer->decode(got)) << s;
  }
  const char* conv = R"([{"role": "user", "content": "Hi there"}])";
  char* text = nullptr;
  int rc = ingot_tokenizer_apply_chat_template(t, conv, 1, &text);
  if (tm_.tokenizer->chat_template().empty()) {
    EXPECT_NE(rc, INGOT_OK);
  } else {
    ASSERT_EQ(rc, INGOT_OK) << ingot_last_error();
    EXPECT_EQ(std::string(text), tokenizer::apply_chat_template(*tm_.tokenizer, conv,
                                                                {.add_generation_prompt = true}));
    ingot_free(text);
  }
  ingot_tokenizer_free(t);
}

TEST(CapiMemory, StatsAndLimits) {
  // The device new arrays go to (the GPU when INGOT_DEVICE=cuda).
  ingot_device dev{INGOT_CPU, 0};
  ASSERT_EQ(ingot_default_device(&dev), INGOT_OK);
  ingot_memory_stats st{};
  ASSERT_EQ(ingot_memory_get_stats(dev, &st), INGOT_OK);
  size_t prev = 0;
  // A 1 MB limit makes a 64 MB allocation fail with OUT_OF_MEMORY, not an abort.
  ASSERT_EQ(ingot_memory_set_limit(dev, st.active + (1 << 20), &prev), INGOT_OK);
  const int64_t big[] = {16 << 20};
  H z, s;
  ASSERT_EQ(ingot_ones(big, 1, INGOT_FLOAT32, &z.h), INGOT_OK);
  EXPECT_EQ(ingot_eval(&z.h, 1), INGOT_ERR_OUT_OF_MEMORY);
  EXPECT_NE(std::string(ingot_last_error()).find("["), std::string::npos);
  ASSERT_EQ(ingot_memory_set_limit(dev, prev, nullptr), INGOT_OK);
  ASSERT_EQ(ingot_memory_clear_cache(dev), INGOT_OK);
  int n = -1;
  ASSERT_EQ(ingot_device_count(INGOT_CUDA, &n), INGOT_OK);
  EXPECT_GE(n, 0);
  ingot_device bad{7, 0};
  EXPECT_EQ(ingot_memory_get_stats(bad, &st), INGOT_ERR_INVALID_ARGUMENT);
}

// On the GPU machine: arrays move to cuda:0 and back, async eval then synchronize, and the
// fixture classifies on cuda:0 as on the CPU. Skipped where no GPU is present (as in CI).
TEST(CapiGpu, ArraysAndClassifyOnCuda) {
  int n = 0;
  ASSERT_EQ(ingot_device_count(INGOT_CUDA, &n), INGOT_OK);
  if (n == 0) GTEST_SKIP() << "no CUDA device";
  const ingot_device gpu{INGOT_CUDA, 0};
  const std::vector<float> v = {1, -2, 3, 0.5f, 8, -1};
  H a = from(v, {2, 3}), g, e, back;
  ASSERT_EQ(ingot_to_device(a.h, gpu, &g.h), INGOT_OK) << ingot_last_error();
  ASSERT_EQ(ingot_exp(g.h, &e.h), INGOT_OK);
  ASSERT_EQ(ingot_eval_async(&e.h, 1), INGOT_OK);
  ASSERT_EQ(ingot_synchronize(gpu), INGOT_OK);
  ingot_device d{};
  ASSERT_EQ(ingot_array_device(e.h, &d), INGOT_OK);
  EXPECT_EQ(d.type, INGOT_CUDA);
  std::vector<float> got = values(e.h);
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(got[i], std::exp(v[i]), 1e-5f * std::exp(v[i]));

  ingot_model_options oc{"cpu", "float32", nullptr}, og{"cuda:0", "float32", nullptr};
  ingot_model mc = nullptr, mg = nullptr;
  ASSERT_EQ(ingot_model_load(kFixture.c_str(), &oc, &mc), INGOT_OK) << ingot_last_error();
  ASSERT_EQ(ingot_model_load(kFixture.c_str(), &og, &mg), INGOT_OK) << ingot_last_error();
  const char* texts[] = {"good movie", "terrible plot, bad acting", "fine"};
  const char* tl[] = {" yes", " no"};
  std::vector<double> pc(6), pg(6);
  ASSERT_EQ(ingot_classify_texts(mc, "Review: {text}\nGood?", tl, 2, texts, 3, 0, pc.data()),
            INGOT_OK);
  ASSERT_EQ(ingot_classify_texts(mg, "Review: {text}\nGood?", tl, 2, texts, 3, 0, pg.data()),
            INGOT_OK)
      << ingot_last_error();
  for (size_t i = 0; i < 6; ++i) EXPECT_NEAR(pg[i], pc[i], 1e-4);
  ingot_model_free(mc);
  ingot_model_free(mg);
}

}  // namespace
}  // namespace ingot
