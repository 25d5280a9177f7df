// fast::paged_attention against a float64 naive loop over each row's logical sequence (keys and
// values read from the pool through the block table, the new ones appended) and against the
// contiguous fast::scaled_dot_product_attention on the gathered keys/values: GQA, shared blocks
// between rows, left-padding queries, prefill chunks (causal within the chunk), sliding window,
// softcap, every float dtype, strided q/k/v; the pool writes; errors.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "core/fast/fast.h"
#include "core/fast/paged_attention.h"
#include "test_fast_util.h"

namespace ingot::test {
namespace {

const Dtype kDtypes[] = {float32, bfloat16, float16, float64};

struct PagedCase {
  int64_t B = 3, H = 4, Hkv = 2, L = 1, D = 24, P = 4, N = 16, M = 6;
  std::vector<int32_t> pos;  // q_pos per row
  int window = 0;
  float softcap = 0;
  std::vector<int32_t> pad = {};  // padding queries per row (empty: none given)
};

// First real query of row b (queries before it are padding).
int64_t first_real(const PagedCase& c, int64_t b) {
  int64_t f = std::max<int64_t>(0, -c.pos[static_cast<size_t>(b)]);
  if (!c.pad.empty()) f = std::max<int64_t>(f, c.pad[static_cast<size_t>(b)]);
  return f;
}

struct PagedInputs {
  std::vector<double> q, k, v, kpool, vpool;
  std::vector<int32_t> table;  // [B, M]
};

// Tables: row 0 owns blocks, row 1 shares row 0's first block (a common prefix), the others
// are distinct blocks in shuffled order; unused entries are -1.
PagedInputs make_inputs(const PagedCase& c, Dtype t, uint32_t seed) {
  PagedInputs in;
  in.q = random_values(c.B * c.H * c.L * c.D, t, seed, -1, 1);
  in.k = random_values(c.B * c.Hkv * c.L * c.D, t, seed + 1, -1, 1);
  in.v = random_values(c.B * c.Hkv * c.L * c.D, t, seed + 2, -3, 3);
  in.kpool = random_values(c.N * c.Hkv * c.P * c.D, t, seed + 3, -1, 1);
  in.vpool = random_values(c.N * c.Hkv * c.P * c.D, t, seed + 4, -3, 3);
  std::vector<int32_t> free(static_cast<size_t>(c.N));
  std::iota(free.begin(), free.end(), 0);
  std::shuffle(free.begin(), free.end(), std::mt19937(seed));
  size_t next = 0;
  in.table.assign(static_cast<size_t>(c.B * c.M), -1);
  for (int64_t b = 0; b < c.B; ++b) {
    const int64_t last = c.pos[static_cast<size_t>(b)] + c.L - 1;
    for (int64_t j = 0; j * c.P <= last; ++j) {  // (padding positions get blocks too: unused)
      int32_t blk = free[next++ % free.size()];
      if (b == 1 && j == 0) blk = in.table[0];  // shared with row 0
      in.table[static_cast<size_t>(b * c.M + j)] = blk;
    }
  }
  return in;
}

// Index of (blk, hk, slot, d) in a pool.
int64_t pool_at(const PagedCase& c, int64_t blk, int64_t hk, int64_t s, int64_t d) {
  return ((blk * c.Hkv + hk) * c.P + s) * c.D + d;
}

// The pools after the write, computed on the host (row 1 shares row 0's first block: both
// rows' positions there are the earlier ones, never written by this call in these cases).
void naive_write(const PagedCase& c, const PagedInputs& in, std::vector<double>& kp,
                 std::vector<double>& vp) {
  kp = in.kpool;
  vp = in.vpool;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t i = first_real(c, b); i < c.L; ++i) {
      const int64_t p = c.pos[static_cast<size_t>(b)] + i;
      const int64_t blk = in.table[static_cast<size_t>(b * c.M + p / c.P)];
      for (int64_t hk = 0; hk < c.Hkv; ++hk)
        for (int64_t d = 0; d < c.D; ++d) {
          const size_t src = static_cast<size_t>(((b * c.Hkv + hk) * c.L + i) * c.D + d);
          kp[static_cast<size_t>(pool_at(c, blk, hk, p % c.P, d))] = in.k[src];
          vp[static_cast<size_t>(pool_at(c, blk, hk, p % c.P, d))] = in.v[src];
        }
    }
}

// float64 attention of every query over its row's positions, read from the written pools.
std::vector<double> naive(const PagedCase& c, const PagedInputs& in, const std::vector<double>& kp,
                          const std::vector<double>& vp, double scale) {
  std::vector<double> out(static_cast<size_t>(c.B * c.H * c.L * c.D), 0.0);
  const int64_t G = c.H / c.Hkv;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.H; ++h)
      for (int64_t i = first_real(c, b); i < c.L; ++i) {
        const int64_t p = c.pos[static_cast<size_t>(b)] + i;
        const int64_t lo = c.window > 0 ? std::max<int64_t>(0, p - c.window + 1) : 0;
        std::vector<double> s;
        for (int64_t t = lo; t <= p; ++t) {
          const int64_t blk = in.table[static_cast<size_t>(b * c.M + t / c.P)];
          double x = 0;
          for (int64_t d = 0; d < c.D; ++d)
            x += in.q[static_cast<size_t>(((b * c.H + h) * c.L + i) * c.D + d)] *
                 kp[static_cast<size_t>(pool_at(c, blk, h / G, t % c.P, d))];
          x *= scale;
          if (c.softcap > 0) x = std::tanh(x / c.softcap) * c.softcap;
          s.push_back(x);
        }
        const double mx = *std::max_element(s.begin(), s.end());
        double sum = 0;
        for (double& x : s) sum += (x = std::exp(x - mx));
        for (int64_t t = lo; t <= p; ++t) {
          const int64_t blk = in.table[static_cast<size_t>(b * c.M + t / c.P)];
          for (int64_t d = 0; d < c.D; ++d)
            out[static_cast<size_t>(((b * c.H + h) * c.L + i) * c.D + d)] +=
                s[static_cast<size_t>(t - lo)] / sum *
                vp[static_cast<size_t>(pool_at(c, blk, h / G, t % c.P, d))];
        }
      }
  return out;
}

std::vector<PagedCase> cases() {
  std::vector<PagedCase> cs;
  // Decode: one query per row at different lengths (row 1 shares row 0's first block).
  cs.push_back({.pos = {9, 5, 2}});
  // A prefill chunk: 5 queries, causal among themselves; row 2 left-padded (3 padding queries).
  cs.push_back({.L = 5, .pos = {7, 4, -3}});
  // Sliding window and softcap, positions crossing block boundaries.
  cs.push_back({.L = 3, .pos = {10, 6, 0}, .window = 3, .softcap = 5.0f});
  // One KV head for 4 query heads (G = 4), head dim 64, large blocks.
  cs.push_back({.B = 2, .H = 4, .Hkv = 1, .L = 2, .D = 64, .P = 8, .N = 6, .M = 3, .pos = {13, 7}});
  // G = 6 (more than 4 rows of the direct loops), blocks of 1 position.
  cs.push_back(
      {.B = 2, .H = 6, .Hkv = 1, .L = 2, .D = 16, .P = 1, .N = 24, .M = 12, .pos = {8, 3}});
  // Left-padded rows that start after a cached prefix: padding queries at positions >= 0 whose
  // slots hold earlier positions (not overwritten) and a window.
  cs.push_back({.L = 4, .pos = {5, 2, 6}, .window = 4, .pad = {0, 2, 3}});
  // Prefill chunks of many query rows (the tiled kernel): padding input, negative positions,
  // window and softcap; a long row over several tiles of keys.
  cs.push_back({.L = 6,
                .N = 40,
                .M = 20,
                .pos = {70, 20, -2},
                .window = 9,
                .softcap = 4.0f,
                .pad = {0, 3, 0}});
  cs.push_back(
      {.B = 1, .H = 8, .Hkv = 2, .L = 9, .D = 32, .P = 16, .N = 24, .M = 24, .pos = {300}});
  // Long rows: several softmax chunks of the kernel (256 positions) over many blocks.
  cs.push_back(
      {.B = 2, .H = 4, .Hkv = 2, .L = 3, .D = 32, .P = 16, .N = 64, .M = 40, .pos = {600, 290}});
  return cs;
}

std::string case_name(const PagedCase& c, Dtype t) {
  return fmt::format("B{} H{} Hkv{} L{} D{} P{} window{} softcap{}{} {}", c.B, c.H, c.Hkv, c.L, c.D,
                     c.P, c.window, c.softcap, c.pad.empty() ? "" : " padded", dtype_name(t));
}

void check_cases(bool transposed) {
  uint32_t seed = 11;
  for (const PagedCase& c : cases())
    for (Dtype t : kDtypes) {
      PagedInputs in = make_inputs(c, t, seed += 5);
      const float scale = 1.0f / std::sqrt(static_cast<float>(c.D));
      const Layout lay = transposed ? Layout::transposed : Layout::contiguous;
      Array q = make_array(in.q, {c.B, c.H, c.L, c.D}, t, lay);
      Array k = make_array(in.k, {c.B, c.Hkv, c.L, c.D}, t, lay);
      Array v = make_array(in.v, {c.B, c.Hkv, c.L, c.D}, t, lay);
      Array kp(in.kpool, {c.N, c.Hkv, c.P, c.D}, t), vp(in.vpool, {c.N, c.Hkv, c.P, c.D}, t);
      Array table(in.table, {c.B, c.M}, int32), pos(c.pos, {c.B}, int32);
      const std::string what = case_name(c, t);
      fast::PagedAttentionOptions po{.scale = scale, .window = c.window, .softcap = c.softcap};
      if (!c.pad.empty()) po.padding = Array(c.pad, {c.B}, int32);
      auto out = fast::paged_attention(q, k, v, kp, vp, table, pos, po);
      ASSERT_EQ(out.size(), 3u);
      EXPECT_EQ(out[0].shape(), q.shape());
      EXPECT_EQ(out[0].dtype(), t);
      std::vector<double> wk, wv;
      naive_write(c, in, wk, wv);
      // The pools: exactly the new keys/values in their slots, every other slot as it was.
      EXPECT_EQ(values_of(out[1]), wk) << what;
      EXPECT_EQ(values_of(out[2]), wv) << what;
      const std::vector<double> want = naive(c, in, wk, wv, scale);
      const double e = t == float64 ? 1e-12 : 4 * eps_of(t) + 2e-6;
      expect_close(values_of(out[0]), want, e, 4 * e, what);
      // The input pool arrays still hold the old values (they were shared with `in`'s arrays
      // here, so the kernel copied them instead of writing in place).
      EXPECT_EQ(values_of(kp), in.kpool) << what;

      // The contiguous sdpa on each row's gathered keys/values gives the same output.
      for (int64_t b = 0; b < c.B; ++b) {
        const int64_t p0 = c.pos[static_cast<size_t>(b)];
        const int64_t first = first_real(c, b);
        if (first >= c.L) continue;
        const int64_t S = p0 + c.L;  // positions [0, S)
        std::vector<int32_t> idx;
        for (int64_t s = 0; s < S; ++s)
          idx.push_back(in.table[static_cast<size_t>(b * c.M + s / c.P)] *
                            static_cast<int32_t>(c.P) +
                        static_cast<int32_t>(s % c.P));
        auto gather = [&](const Array& pool) {  // [N, Hkv, P, D] -> [1, Hkv, S, D]
          Array flat = reshape(transpose(pool, {1, 0, 2, 3}), {c.Hkv, c.N * c.P, c.D});
          return expand_dims(take(flat, Array(idx, {S}, int32), 1), 0);
        };
        Array qb = slice(q, {b, 0, first, 0}, {b + 1, c.H, c.L, c.D});
        Array ref = fast::scaled_dot_product_attention(
            qb, gather(out[1]), gather(out[2]),
            {.scale = scale, .causal = true, .window = c.window, .softcap = c.softcap});
        Array got = slice(out[0], {b, 0, first, 0}, {b + 1, c.H, c.L, c.D});
        expect_close(values_of(got), values_of(ref), 2 * e, 8 * e, what + " vs sdpa");
        if (first > 0) {  // padding queries: zeros
          EXPECT_EQ(values_of(slice(out[0], {b, 0, 0, 0}, {b + 1, c.H, first, c.D})),
                    std::vector<double>(static_cast<size_t>(c.H * first * c.D), 0.0));
        }
      }
    }
}

TEST(FastPagedAttention, MatchesNaiveAndContiguousSdpa) {
  check_cases(false);
}

TEST(FastPagedAttention, StridedInputs) {
  check_cases(true);
}

TEST(FastPagedAttention, PortableKernelsMatchNaive) {
  ScopedIsa isa("portable");
  check_cases(false);
}

TEST(FastPagedAttention, WritesThePoolInPlaceWhenNothingElseHoldsIt) {
  const PagedCase c{.pos = {9, 5, 2}};
  PagedInputs in = make_inputs(c, float32, 3);
  Array q(in.q, {c.B, c.H, c.L, c.D}, float32), k(in.k, {c.B, c.Hkv, c.L, c.D}, float32),
      v(in.v, {c.B, c.Hkv, c.L, c.D}, float32);
  Array kp = copy(Array(in.kpool, {c.N, c.Hkv, c.P, c.D}, float32));
  Array vp = copy(Array(in.vpool, {c.N, c.Hkv, c.P, c.D}, float32));
  eval({kp, vp});
  const void* before = kp.raw_ptr();
  auto out = fast::paged_attention(q, k, v, kp, vp, Array(in.table, {c.B, c.M}, int32),
                                   Array(c.pos, {c.B}, int32), {.scale = 0.2f});
  kp = Array();  // the graph holds the only references now
  vp = Array();
  eval(out);
  EXPECT_EQ(out[1].raw_ptr(), before);
  std::vector<double> wk, wv;
  naive_write(c, in, wk, wv);
  EXPECT_EQ(values_of(out[1]), wk);
}

TEST(FastPagedAttention, NanQueryGivesANanRow) {
  // A NaN query: its row of the output is NaN (as in torch and the contiguous sdpa), not zeros;
  // every other row stays finite. Decode (one query per row: the direct loops) and a prefill
  // chunk of many query rows (the tiled kernel).
  const std::vector<PagedCase> all = cases();
  for (const PagedCase& c : {all[0], all[6]})
    for (Dtype t : {float32, bfloat16}) {
      PagedInputs in = make_inputs(c, t, 91);
      const int64_t b = 0, h = 1, l = c.L - 1;  // row 0 has no padding
      const int64_t bad = (b * c.H + h) * c.L + l;
      in.q[static_cast<size_t>(bad * c.D + 3)] = std::nan("");
      Array q(in.q, {c.B, c.H, c.L, c.D}, t);
      Array k(in.k, {c.B, c.Hkv, c.L, c.D}, t), v(in.v, {c.B, c.Hkv, c.L, c.D}, t);
      Array kp(in.kpool, {c.N, c.Hkv, c.P, c.D}, t), vp(in.vpool, {c.N, c.Hkv, c.P, c.D}, t);
      Array table(in.table, {c.B, c.M}, int32), pos(c.pos, {c.B}, int32);
      fast::PagedAttentionOptions po{.scale = 0.25f, .window = c.window, .softcap = c.softcap};
      if (!c.pad.empty()) po.padding = Array(c.pad, {c.B}, int32);
      const std::vector<double> y =
          values_of(fast::paged_attention(q, k, v, kp, vp, table, pos, po)[0]);
      for (size_t i = 0; i < y.size(); ++i)
        ASSERT_EQ(std::isnan(y[i]), static_cast<int64_t>(i) / c.D == bad)
            << case_name(c, t) << " at " << i;
    }
}

TEST(FastPagedAttention, Errors) {
  const Array q = zeros({2, 4, 1, 8}), k = zeros({2, 2, 1, 8});
  const Array pool = zeros({4, 2, 2, 8}), table = zeros({2, 3}, int32), pos = zeros({2}, int32);
  EXPECT_NO_THROW(eval(fast::paged_attention(q, k, k, pool, pool, table, pos)));
  EXPECT_THROW(fast::paged_attention(zeros({2, 3, 1, 8}), k, k, pool, pool, table, pos),
               InvalidArgument);  // 3 query heads for 2 KV heads
  EXPECT_THROW(fast::paged_attention(q, k, k, zeros({4, 2, 2, 4}), pool, table, pos),
               InvalidArgument);  // head dims differ
  EXPECT_THROW(fast::paged_attention(q, k, k, pool, pool, zeros({2, 3}), pos), InvalidArgument);
  EXPECT_THROW(fast::paged_attention(q, k, k, pool, pool, table, zeros({3}, int32)),
               InvalidArgument);
  EXPECT_THROW(fast::paged_attention(q, k, k, astype(pool, bfloat16), pool, table, pos),
               InvalidArgument);
  EXPECT_THROW(
      fast::paged_attention(q, k, k, pool, pool, table, pos, {.padding = zeros({2}, float32)}),
      InvalidArgument);
  // A position beyond the table, or a block outside the pool: a clear error when evaluated.
  EXPECT_THROW(eval(fast::paged_attention(q, k, k, pool, pool, table,
                                          Array(std::vector<int32_t>{0, 6}, {2}, int32))),
               InvalidArgument);
  EXPECT_THROW(
      eval(fast::paged_attention(
          q, k, k, pool, pool, Array(std::vector<int32_t>{0, 0, 0, 9, 0, 0}, {2, 3}, int32), pos)),
      InvalidArgument);
}

}  // namespace
}  // namespace ingot::test
