// Continuous batching decoder (llm::BatchDecoder): rows joining a running batch, prefill in
// chunks between decode steps, prompt caching across rows (llm::PrefixStore) with blocks of the
// paged KV cache shared in place, and the block accounting (llm::BlockPool: reference counts,
// blocks given back when rows leave, a full pool). Every sequence of tokens is checked against
// generate() run on the prompt alone (itself checked against transformers in
// test_generate.cpp); cached-token counts against the block rule; block counts against the
// tables' arithmetic.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
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
  // more (6 stored blocks: 24 ids), D shares nothing. Every row of a group starts at its own
  // position, so B reuses 16, C 24 and D 0 ids (their tables point at the stored blocks).
  Ids x = random_ids(10, v, 2);
  x[0] = a[18] == 3 ? 4 : 3;  // differs from A at id 18
  const Ids b = cat(Ids(a.begin(), a.begin() + 18), x);
  const Ids c = cat(cat(a, Ids(got_a.begin(), got_a.begin() + 3)), random_ids(5, v, 3));
  Ids dd = random_ids(6, v, 4);
  dd[0] = a[0] == 3 ? 4 : 3;
  std::vector<DecoderRow> group = {row(2, b), row(3, c), row(4, dd)};
  const int64_t before = d.blocks_in_use();  // the store's 6 blocks
  EXPECT_EQ(before, 6);
  EXPECT_EQ(d.join(group), (std::vector<int64_t>{16, 24, 0}));
  // Shared in place: B's first 4 blocks are C's first 4, which are the store's.
  const std::vector<int32_t> tb = d.row_blocks(2), tc = d.row_blocks(3);
  ASSERT_EQ(tb.size(), 4u);
  ASSERT_EQ(tc.size(), 6u);
  EXPECT_TRUE(std::equal(tb.begin(), tb.end(), tc.begin()));
  EXPECT_EQ(d.blocks_in_use(), before);  // joining shares, allocates nothing yet
  while (!(first = d.prefill_step())) {
  }
  // After the prefill: B holds ceil(28 / 4) = 7 blocks (3 of its own), C 8 (2 of its own),
  // D 2: 6 + 3 + 2 + 2 new blocks.
  EXPECT_EQ(d.row_blocks(2).size(), 7u);
  EXPECT_EQ(d.row_blocks(3).size(), 8u);
  EXPECT_EQ(d.row_blocks(4).size(), 2u);
  EXPECT_EQ(d.blocks_in_use(), 6 + 3 + 2 + 2);
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
  EXPECT_THROW(BatchDecoder(*m, BatchDecoderOptions{.max_blocks = -1}), InvalidArgument);
}

TEST(BatchDecoder, RowsShareStoredBlocksAndGiveTheirOwnBackWhenTheyLeave) {
  auto m = load_f32("llama_f32");
  const int64_t v = m->vocab_size();
  BatchDecoder d(*m, BatchDecoderOptions{.prefix = {.block = 4, .max_bytes = 64 << 20}});
  EXPECT_EQ(d.blocks_for(9), 3);
  EXPECT_EQ(d.blocks_for(8), 2);
  // Row 1: 10 ids -> 3 blocks; its 2 whole blocks go to the store (shared, not copied).
  const Ids a = random_ids(10, v, 21);
  const std::vector<int32_t> fa = d.admit({row(1, a)});
  EXPECT_EQ(d.blocks_in_use(), 3);
  EXPECT_EQ(d.prefix_store()->size(), 2);
  const std::vector<int32_t> ta = d.row_blocks(1);
  ASSERT_EQ(ta.size(), 3u);
  EXPECT_EQ(d.kv().pool().refs(ta[0]), 2);  // row 1 + store
  EXPECT_EQ(d.kv().pool().refs(ta[2]), 1);  // the partial block: row 1 alone
  // Row 2 shares a's first 8 ids and has 5 of its own: 2 blocks shared, 2 new.
  Ids b = cat(Ids(a.begin(), a.begin() + 8), random_ids(5, v, 22));
  EXPECT_EQ(d.shared_blocks_for(b), (std::vector<int32_t>{ta[0], ta[1]}));
  EXPECT_EQ(d.shared_blocks_in_use(), 0);  // row 1's blocks are its own
  EXPECT_EQ(d.join({row(2, b)}), std::vector<int64_t>{8});
  EXPECT_EQ(d.shared_blocks_in_use(), 0);  // row 2 shares row 1's own blocks (counted there)
  std::optional<std::vector<int32_t>> fb;
  while (!(fb = d.prefill_step())) {
  }
  const std::vector<int32_t> tb = d.row_blocks(2);
  ASSERT_EQ(tb.size(), 4u);
  EXPECT_EQ(tb[0], ta[0]);
  EXPECT_EQ(tb[1], ta[1]);
  EXPECT_EQ(d.blocks_in_use(), 5);
  EXPECT_EQ(d.kv().pool().refs(ta[0]), 3);  // rows 1, 2 + store
  auto got = run(d, {1, 2}, {fa[0], (*fb)[0]}, 4);
  EXPECT_EQ(got[1], alone(*m, a, 4));
  EXPECT_EQ(got[2], alone(*m, b, 4));
  // Row 1 now holds 13 positions (4 blocks: a 4th of its own), row 2 16 (still 4 blocks).
  EXPECT_EQ(d.row_blocks(1).size(), 4u);
  EXPECT_EQ(d.blocks_in_use(), 6);
  // Row 1 leaves: its 2 own blocks are free again.
  d.drop({1});
  EXPECT_EQ(d.blocks_in_use(), 4);
  EXPECT_EQ(d.shared_blocks_in_use(), 2);  // now only shared: held by row 2 and the store
  EXPECT_EQ(d.kv().pool().refs(ta[0]), 2);
  EXPECT_TRUE(d.row_blocks(1).empty());
  // Row 2 leaves: only the store's blocks stay (a's 2, b's third whole block).
  d.drop({2});
  EXPECT_EQ(d.shared_blocks_in_use(), 0);
  EXPECT_EQ(d.blocks_in_use(), 3);
  EXPECT_EQ(d.prefix_store()->size(), 3);
  EXPECT_EQ(d.prefix_store()->evictable(), 3);
  // A group dropped while it joins gives its blocks (shared ones: its references) back.
  d.join({row(3, b)});
  EXPECT_EQ(d.kv().pool().refs(ta[0]), 2);
  d.drop({3});
  EXPECT_FALSE(d.joining());
  EXPECT_EQ(d.kv().pool().refs(ta[0]), 1);
  EXPECT_EQ(d.blocks_in_use(), 3);
}

TEST(BatchDecoder, AFullPoolEvictsUnusedStoredBlocksThenFails) {
  auto m = load_f32("llama_f32");
  const int64_t v = m->vocab_size();
  {  // No store: 3 blocks of 4 hold 12 positions; the step that needs a 4th block fails.
    BatchDecoder d(*m,
                   BatchDecoderOptions{.prefix = {.block = 4, .max_bytes = 0}, .max_blocks = 3});
    d.admit({row(1, random_ids(9, v, 31))});
    EXPECT_EQ(d.blocks_in_use(), 3);
    for (int i = 0; i < 3; ++i) d.step();  // positions 9, 10, 11
    EXPECT_THROW(d.step(), InvalidArgument);
    d.drop({1});
    EXPECT_EQ(d.blocks_in_use(), 0);
  }
  // With a store: its blocks that no row uses make room for a new row, least recently used
  // first.
  BatchDecoder d(
      *m, BatchDecoderOptions{.prefix = {.block = 4, .max_bytes = 64 << 20}, .max_blocks = 3});
  const Ids a = random_ids(9, v, 32), b = random_ids(9, v, 33);
  d.admit({row(1, a)});
  d.drop({1});
  EXPECT_EQ(d.blocks_in_use(), 2);  // a's 2 whole blocks, in the store
  const std::vector<int32_t> fb = d.admit({row(2, b)});
  EXPECT_EQ(d.prefix_store()->evicted(), 2);
  EXPECT_EQ(d.prefix_store()->size(), 2);  // b's own whole blocks now
  EXPECT_EQ(d.blocks_in_use(), 3);
  EXPECT_EQ(run(d, {2}, fb, 3)[2], alone(*m, b, 3));
}

// The paged cache on a GPU (fast::paged_attention's CUDA kernel inside the model): rows that
// join a running batch in chunks, one of them from stored blocks, give generate()'s tokens on
// the CPU. Skips without a CUDA device.
TEST(BatchDecoder, OnCudaRowsGiveTheCpuGenerateTokens) {
  if (gpu::device_count() == 0) GTEST_SKIP() << "no CUDA device: the CUDA paged kernel untested";
  const Device cuda{Device::Type::cuda, 0};
  for (const char* fx : kFixtures) {
    auto cpu = load_f32(fx);
    auto gpu_model = models::load_model(models::fixture_dir(fx),
                                        {.dtype = float32, .warn = false, .device = cuda});
    const int64_t v = cpu->vocab_size();
    const Ids a = random_ids(21, v, 41),
              b = cat(Ids(a.begin(), a.begin() + 12), random_ids(9, v, 42));
    BatchDecoder d(*gpu_model, BatchDecoderOptions{.prefill_chunk = 6,
                                                   .prefix = {.block = 4, .max_bytes = 64 << 20}});
    const std::vector<int32_t> fa = d.admit({row(1, a)});
    EXPECT_EQ(d.join({row(2, b)}), std::vector<int64_t>{12});
    Ids got_a = fa;
    std::optional<std::vector<int32_t>> fb;
    while (!(fb = d.prefill_step())) got_a.push_back(d.step()[0]);
    auto got = run(d, {1, 2}, {got_a.back(), (*fb)[0]}, 6);
    got_a.pop_back();
    got_a.insert(got_a.end(), got[1].begin(), got[1].end());
    got_a.resize(6);
    EXPECT_EQ(got_a, alone(*cpu, a, 6)) << fx;
    EXPECT_EQ(got[2], alone(*cpu, b, 6)) << fx;
    for (const Array& p : d.kv().state()) EXPECT_EQ(p.device(), cuda) << fx;
  }
}

TEST(BlockPool, CountsReferencesAndReusesFreedBlocks) {
  BlockPool p(2, 16);
  EXPECT_EQ(p.available(), 2);
  const int32_t a = p.allocate(), b = p.allocate();
  EXPECT_EQ(a, 0);
  EXPECT_EQ(b, 1);
  EXPECT_EQ(p.used(), 2);
  EXPECT_THROW(p.allocate(), InvalidArgument);  // full
  p.retain(a);
  EXPECT_EQ(p.refs(a), 2);
  p.release(a);
  EXPECT_EQ(p.used(), 2);
  p.release(a);
  EXPECT_EQ(p.used(), 1);
  EXPECT_EQ(p.refs(a), 0);
  EXPECT_THROW(p.release(a), InvalidArgument);  // not in use
  EXPECT_THROW(p.retain(a), InvalidArgument);
  EXPECT_EQ(p.allocate(), a);  // reused
  EXPECT_EQ(p.high_water(), 2);
  EXPECT_THROW(BlockPool(-1), InvalidArgument);
  EXPECT_EQ(BlockPool().available(), std::numeric_limits<int64_t>::max());
}

TEST(PrefixStore, MatchesWholeBlocksAndEvictsLeastRecentlyUsedLeavesNoRowUses) {
  BlockPool pool(0, 16);
  // Blocks are pool blocks; a "row" holds its own reference on each (allocate = count 1).
  auto blocks = [&](int n) {
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) out.push_back(pool.allocate());
    return out;
  };
  PrefixStore s({.block = 2, .max_bytes = 48}, pool);  // 3 blocks
  const Ids a = {1, 2, 3, 4, 5}, b = {7, 8, 9, 10};
  const std::vector<int32_t> ba = blocks(3);  // a's 5 positions: 2 whole blocks + 1
  EXPECT_EQ(s.insert(a, 5, ba), 2);
  EXPECT_EQ(s.nbytes(), 32);
  EXPECT_EQ(pool.refs(ba[0]), 2);  // shared in place
  EXPECT_EQ(pool.refs(ba[2]), 1);  // not a whole block: not stored
  EXPECT_EQ(s.match({1, 2, 3, 4, 9}, 100), (std::vector<int32_t>{ba[0], ba[1]}));
  EXPECT_EQ(s.match({1, 2, 3, 4}, 3).size(), 1u);  // at most 3 ids: one block
  EXPECT_EQ(s.match({1, 2, 3}, 100).size(), 1u);
  EXPECT_EQ(s.match({2, 2, 3, 4}, 100).size(), 0u);
  EXPECT_EQ(s.evictable(), 0);             // the row still uses them
  for (int32_t id : ba) pool.release(id);  // the row leaves
  EXPECT_EQ(s.evictable(), 2);
  EXPECT_EQ(pool.used(), 2);
  // Inserting B (2 blocks, its row still running) goes over 48 bytes: A's leaf {3, 4} is the
  // least recently used block no row uses.
  const std::vector<int32_t> bb = blocks(2);
  EXPECT_EQ(s.insert(b, 4, bb), 2);
  EXPECT_EQ(s.size(), 3);
  EXPECT_EQ(s.evicted(), 1);
  EXPECT_EQ(pool.refs(ba[1]), 0);  // back in the pool
  EXPECT_EQ(s.match(a, 100).size(), 1u);
  // B's blocks are used by its row: not evicted; A's {1, 2} goes instead.
  const std::vector<int32_t> bc = blocks(1);
  EXPECT_EQ(s.insert({20, 21}, 2, bc), 1);
  EXPECT_EQ(s.match(a, 100).size(), 0u);
  EXPECT_EQ(s.match(b, 100).size(), 2u);
  pool.release(bc[0]);
  const std::vector<int32_t> bd = blocks(1);
  EXPECT_EQ(s.insert({30, 31}, 2, bd), 1);
  // Over budget: {20, 21} is the only stored block no row uses.
  EXPECT_EQ(s.match({20, 21}, 100).size(), 0u);
  EXPECT_EQ(s.match({30, 31}, 100).size(), 1u);
  EXPECT_EQ(s.match(b, 100).size(), 2u);
  EXPECT_FALSE(s.evict_one());  // every stored block is in use by a row
  EXPECT_EQ(pool.used(), 3);
  s.clear();  // the store's references go; the rows' stay
  EXPECT_EQ(pool.refs(bb[0]), 1);
  EXPECT_EQ(pool.used(), 3);
  EXPECT_THROW(PrefixStore({.block = 2, .max_bytes = -1}, pool), InvalidArgument);
  PrefixStore off({.block = 2, .max_bytes = 0}, pool);
  EXPECT_EQ(off.insert(a, 5, bb), 0);
  EXPECT_EQ(pool.refs(bb[0]), 1);
}

}  // namespace
}  // namespace ingot::llm
