// Continuous batching decoder (llm::BatchDecoder): rows joining a running batch, prefill in
// chunks between decode steps, and prompt caching across rows (llm::PrefixStore). Every
// sequence of tokens is checked against generate() run on the prompt alone (itself checked
// against transformers in test_generate.cpp); cached-token counts against the block rule.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <random>

#include "core/ops/ops.h"
#include "llm/batch_decoder.h"
#include "llm/generate.h"
#include "llm_test_util.h"
#include "util/error.h"

namespace ingot::llm {
namespace {

// Greedy continuation of `prompt` by generate() alone (the reference).
Ids alone(const models::Model& m, const Ids& prompt, int64_t n) {
  GenerateOptions o;
  o.max_tokens = n;
  return generate(m, {prompt}, o).tokens[0];
}

Ids random_ids(size_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> d(3, static_cast<int32_t>(vocab) - 1);
  Ids out(n);
  for (auto& v : out) v = d(rng);
  return out;
}

Ids cat(Ids a, const Ids& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

DecoderRow row(int64_t key, const Ids& prompt) {
  DecoderRow r;
  r.key = key;
  r.prompt = prompt;
  return r;
}

// Steps the decoder until the rows `keys` have `n` tokens each (first tokens from `first`, in
// the order of `keys`; other rows step along, their tokens ignored); returns them per key.
std::map<int64_t, Ids> run(BatchDecoder& d, const std::vector<int64_t>& keys,
                           const std::vector<int32_t>& first, size_t n) {
  std::map<int64_t, Ids> out;
  for (size_t i = 0; i < keys.size(); ++i) out[keys[i]].push_back(first[i]);
  auto short_of = [&] {
    for (const auto& [k, v] : out)
      if (v.size() < n) return true;
    return false;
  };
  while (short_of()) {
    const std::vector<int64_t> order = d.keys();
    const std::vector<int32_t> ids = d.step();
    for (size_t i = 0; i < ids.size(); ++i)
      if (out.count(order[i])) out[order[i]].push_back(ids[i]);
  }
  for (auto& [k, v] : out) v.resize(n);
  return out;
}

const char* kFixtures[] = {"llama_f32", "qwen3_f32_tied", "gemma3_f32"};

class BatchDecoderFixture : public testing::TestWithParam<const char*> {};

TEST_P(BatchDecoderFixture, PromptCacheReusesBlocksAndGivesTheSameTokens) {
  const std::string fx = GetParam();
  auto m = load_f32(fx);
  const int64_t v = m->vocab_size();
  BatchDecoder d(*m, BatchDecoderOptions{.prefill_chunk = 512,
                                         .prefix = {.block = 4, .max_bytes = 64 << 20},
                                         .store_generated = true});
  ASSERT_NE(d.prefix_store(), nullptr);

  // A alone: nothing stored yet. It runs 6 tokens and leaves: its prompt (22 ids, 5 whole
  // blocks) and prompt + generated (27 computed positions: 6 blocks) are stored.
  const Ids a = random_ids(22, v, 1);
  EXPECT_EQ(d.join({row(1, a)}), std::vector<int64_t>{0});
  std::optional<std::vector<int32_t>> first;
  while (!(first = d.prefill_step())) {
  }
  const Ids got_a = run(d, {1}, *first, 6)[1];
  EXPECT_EQ(got_a, alone(*m, a, 6)) << fx;
  d.drop({1});
  EXPECT_TRUE(d.empty());
  EXPECT_EQ(d.prefix_store()->size(), 6);
  {  // Without store_generated only the prompt's 5 blocks are stored.
    BatchDecoder p(*m, BatchDecoderOptions{.prefix = {.block = 4, .max_bytes = 64 << 20}});
    const std::vector<int32_t> f = p.admit({row(1, a)});
    EXPECT_EQ(run(p, {1}, f, 6)[1], got_a) << fx;
    p.drop({1});
    EXPECT_EQ(p.prefix_store()->size(), 5);
  }

  // B shares 18 ids with A (4 whole blocks), C is A's prompt and 3 of its generated ids and
  // more (6 stored blocks: 24 ids), D shares nothing. Joining as one group (left-padded to
  // C's 30 columns: pads 2, 0, 24) they start at column min(2 + 16, 0 + 24, 24 + 0) = 18, so
  // B reuses 16, C 18 and D 0 ids.
  Ids x = random_ids(10, v, 2);
  x[0] = a[18] == 3 ? 4 : 3;  // differs from A at id 18
  const Ids b = cat(Ids(a.begin(), a.begin() + 18), x);
  const Ids c = cat(cat(a, Ids(got_a.begin(), got_a.begin() + 3)), random_ids(5, v, 3));
  Ids dd = random_ids(6, v, 4);
  dd[0] = a[0] == 3 ? 4 : 3;
  std::vector<DecoderRow> group = {row(2, b), row(3, c), row(4, dd)};
  EXPECT_EQ(d.join(group), (std::vector<int64_t>{16, 18, 0}));
  while (!(first = d.prefill_step())) {
  }
  auto got = run(d, {2, 3, 4}, *first, 7);
  EXPECT_EQ(got[2], alone(*m, b, 7)) << fx;
  EXPECT_EQ(got[3], alone(*m, c, 7)) << fx;
  EXPECT_EQ(got[4], alone(*m, dd, 7)) << fx;

  // The same group without a prompt cache gives the same tokens.
  BatchDecoder plain(*m, 512);
  EXPECT_EQ(plain.prefix_store(), nullptr);
  EXPECT_EQ(plain.join(group), (std::vector<int64_t>{0, 0, 0}));
  while (!(first = plain.prefill_step())) {
  }
  EXPECT_EQ(run(plain, {2, 3, 4}, *first, 7), got) << fx;

  // C again, joining the running batch: its whole prompt was stored when its group joined, so
  // 7 blocks (28 of at most 29 ids) are reused.
  d.drop({3});
  EXPECT_EQ(d.join({row(5, c)}), std::vector<int64_t>{28});
  while (!(first = d.prefill_step())) {
  }
  EXPECT_EQ(run(d, {5}, *first, 5)[5], alone(*m, c, 5)) << fx;
}

TEST_P(BatchDecoderFixture, ChunkedPrefillLetsRunningRowsStepAndGivesTheSameTokens) {
  const std::string fx = GetParam();
  auto m = load_f32(fx);
  const int64_t v = m->vocab_size();
  const Ids a = random_ids(5, v, 11), b = random_ids(41, v, 12);
  const Ids c = random_ids(9, v, 13), e = random_ids(30, v, 14);

  BatchDecoder d(*m, BatchDecoderOptions{.prefill_chunk = 8});
  const std::vector<int32_t> first_a = d.admit({row(1, a)});
  EXPECT_EQ(d.prefill_passes(), 1);
  Ids got_a = first_a;
  // B's 41 columns take ceil(41 / 8) = 6 passes; A steps after each of the first 5, so it
  // never waits for more than one pass of 8 columns.
  d.join({row(2, b)});
  EXPECT_TRUE(d.joining());
  EXPECT_EQ(d.join_columns_left(), 41);
  std::optional<std::vector<int32_t>> first_b;
  int steps = 0;
  while (!(first_b = d.prefill_step())) {
    EXPECT_EQ(d.keys(), std::vector<int64_t>{1});
    got_a.push_back(d.step()[0]);
    ++steps;
    EXPECT_EQ(d.join_columns_left(), 41 - 8 * steps);
  }
  EXPECT_EQ(steps, 5);
  EXPECT_EQ(d.prefill_passes(), 7);
  EXPECT_FALSE(d.joining());
  EXPECT_EQ(d.keys(), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(got_a, alone(*m, a, 6)) << fx;
  const Ids got_b = run(d, {2}, *first_b, 7)[2];
  EXPECT_EQ(got_b, alone(*m, b, 7)) << fx;

  // Two rows join together: 8 tokens per pass = 4 columns of the 30-column group, 8 passes;
  // a row dropped while its group joins is not added.
  d.join({row(3, c), row(4, e)});
  d.drop({4});
  EXPECT_TRUE(d.joining());
  std::optional<std::vector<int32_t>> first_ce;
  int passes = 1;
  while (!(first_ce = d.prefill_step())) ++passes;
  EXPECT_EQ(passes, 8);
  EXPECT_EQ(d.keys(), (std::vector<int64_t>{1, 2, 3}));
  // A whole group dropped while it joins is abandoned.
  d.join({row(6, e)});
  d.drop({6});
  EXPECT_FALSE(d.joining());

  EXPECT_EQ(run(d, {3}, *first_ce, 4)[3], alone(*m, c, 4)) << fx;

  // Unchunked (one pass per group) gives the same tokens.
  BatchDecoder whole(*m, BatchDecoderOptions{.prefill_chunk = 0});
  const std::vector<int32_t> first_whole = whole.admit({row(2, b)});
  EXPECT_EQ(whole.prefill_passes(), 1);
  EXPECT_EQ(run(whole, {2}, first_whole, 7)[2], got_b) << fx;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, BatchDecoderFixture, testing::ValuesIn(kFixtures));

TEST(BatchDecoder, ErrorsAreInvalidArgument) {
  auto m = load_f32("llama_f32");
  BatchDecoder d(*m, 4);
  EXPECT_THROW(d.prefill_step(), InvalidArgument);
  EXPECT_THROW(d.join({}), InvalidArgument);
  EXPECT_THROW(d.join({row(1, {5, 6}), row(1, {7})}), InvalidArgument);
  EXPECT_THROW(d.join({row(1, {})}), InvalidArgument);
  d.join({row(1, {5, 6, 7, 8, 9, 10})});
  EXPECT_THROW(d.join({row(2, {5})}), InvalidArgument);
  EXPECT_THROW(d.admit({row(2, {5})}), InvalidArgument);
  EXPECT_THROW(BatchDecoder(*m, BatchDecoderOptions{.prefill_chunk = -1}), InvalidArgument);
  EXPECT_THROW(BatchDecoder(*m, BatchDecoderOptions{.prefix = {.block = 0, .max_bytes = 1}}),
               InvalidArgument);
}

// One layer, blocks of 2 ids, keys/values [1, 1, 2, 1] float32 (8 bytes each, 16 a block).
std::pair<Array, Array> kv_of(int64_t seq, int64_t from, int64_t to) {
  std::vector<float> k, val;
  for (int64_t p = from; p < to; ++p) {
    k.push_back(static_cast<float>(100 * seq + p));
    val.push_back(static_cast<float>(-100 * seq - p));
  }
  return {Array(k, {1, 1, to - from, 1}), Array(val, {1, 1, to - from, 1})};
}

TEST(PrefixStore, MatchesWholeBlocksAndEvictsLeastRecentlyUsedLeaves) {
  PrefixStore s({.block = 2, .max_bytes = 48});  // 3 blocks
  const Ids a = {1, 2, 3, 4, 5}, b = {7, 8, 9, 10};
  EXPECT_EQ(s.insert(a, 5, 1, [](int, int64_t f, int64_t t) { return kv_of(1, f, t); }), 2);
  EXPECT_EQ(s.nbytes(), 32);
  auto m = s.match({1, 2, 3, 4, 9}, 100);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[1]->keys[0].to_vector<float>(), (std::vector<float>{102, 103}));
  EXPECT_EQ(m[1]->values[0].to_vector<float>(), (std::vector<float>{-102, -103}));
  EXPECT_EQ(s.match({1, 2, 3, 4}, 3).size(), 1u);  // at most 3 ids: one block
  EXPECT_EQ(s.match({1, 2, 3}, 100).size(), 1u);
  EXPECT_EQ(s.match({2, 2, 3, 4}, 100).size(), 0u);
  m.clear();
  // Inserting B (2 blocks) goes over 48 bytes: A's leaf {3, 4} is the least recently used.
  EXPECT_EQ(s.insert(b, 4, 1, [](int, int64_t f, int64_t t) { return kv_of(2, f, t); }), 2);
  EXPECT_EQ(s.size(), 3);
  EXPECT_EQ(s.evicted(), 1);
  EXPECT_EQ(s.match(a, 100).size(), 1u);
  // A block somebody holds is not evicted (refcount), nor a block with children.
  auto held = s.match(b, 100);  // B is now the most recently used, A's {1, 2} the oldest
  ASSERT_EQ(held.size(), 2u);
  EXPECT_EQ(s.insert({20, 21}, 2, 1, [](int, int64_t f, int64_t t) { return kv_of(3, f, t); }), 1);
  EXPECT_EQ(s.match(a, 100).size(), 0u);  // {1, 2} went
  EXPECT_EQ(s.match(b, 100).size(), 2u);
  EXPECT_EQ(s.insert({30, 31}, 2, 1, [](int, int64_t f, int64_t t) { return kv_of(4, f, t); }), 1);
  // Over budget: of the leaves nobody holds, {20, 21} is older than the new {30, 31}.
  EXPECT_EQ(s.match({20, 21}, 100).size(), 0u);
  EXPECT_EQ(s.match({30, 31}, 100).size(), 1u);
  EXPECT_EQ(s.match(b, 100).size(), 2u);
  EXPECT_EQ(held[0]->keys[0].to_vector<float>(), (std::vector<float>{200, 201}));
  EXPECT_THROW(PrefixStore({.block = 2, .max_bytes = -1}), InvalidArgument);
  PrefixStore off({.block = 2, .max_bytes = 0});
  EXPECT_EQ(off.insert(a, 5, 1, [](int, int64_t f, int64_t t) { return kv_of(1, f, t); }), 0);
}

}  // namespace
}  // namespace ingot::llm
