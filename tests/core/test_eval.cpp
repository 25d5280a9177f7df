// Graph evaluation: deep chains without stack overflow, memory returning to what live arrays
// need, detach after eval, donation, siblings, and the allocator's limits.
#include "core/transforms/id_set.h"
#include "test_util.h"

using namespace ingot;
using namespace ingot::test;

TEST(Eval, HundredThousandChainedOps) {
  size_t before = memory::active();
  {
    Array x = zeros({16});
    for (int i = 0; i < 100000; ++i) x = x + 1.0f;
    EXPECT_FALSE(x.is_evaluated());
    auto v = x.to_vector<float>();
    for (float f : v) EXPECT_EQ(f, 100000.0f);
    EXPECT_FALSE(x.has_primitive());  // detached
  }
  {
    // An unevaluated 100k chain must also be destroyed without recursion.
    Array y = ones({4});
    for (int i = 0; i < 100000; ++i) y = y * 1.0f;
  }
  EXPECT_EQ(memory::active(), before);
}

TEST(Eval, MemoryReturnsToLiveArrays) {
  memory::clear_cache();
  size_t base = memory::active();
  Array a = random::normal({256, 256});
  a.eval();
  size_t with_a = memory::active();
  EXPECT_GE(with_a - base, a.nbytes());
  Array r;
  {
    Array t = a;
    for (int i = 0; i < 50; ++i) t = exp(t * 0.01f) - 1.0f;  // 100 intermediates of 256 KiB
    r = sum(t, {1});
  }
  memory::reset_peak();
  r.eval();
  size_t after = memory::active();
  // Only a and r remain alive; size classes add at most 25% slack.
  EXPECT_LE(after - base, (a.nbytes() + r.nbytes()) * 5 / 4 + 128);
  // Intermediates were freed as the chain ran: the peak stayed far below 100 buffers.
  EXPECT_LT(memory::peak() - base, 8 * a.nbytes());
  r = Array();
  a = Array();
  EXPECT_EQ(memory::active(), base);
}

TEST(Eval, DonationReusesBuffer) {
  Array a = random::uniform({1 << 16});
  a.eval();
  const void* pa = a.raw_ptr();
  Array b = exp(a);
  a = Array();  // b's graph now holds the only reference: its buffer can be donated
  b.eval();
  EXPECT_EQ(b.raw_ptr(), pa);
  Array c = random::uniform({1 << 16});
  c.eval();
  Array d = exp(c);  // c is still held by the caller: no donation
  d.eval();
  EXPECT_NE(d.raw_ptr(), c.raw_ptr());
}

TEST(Eval, SharedSubgraphEvaluatedOnce) {
  Array a = Array({1.f, 2.f, 3.f});
  Array b = a * 2.0f;
  Array c = b + b;
  Array d = b * b;
  eval({c, d});
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{4, 8, 12}));
  EXPECT_EQ(d.to_vector<float>(), (std::vector<float>{4, 16, 36}));
  EXPECT_TRUE(b.is_evaluated());
}

TEST(Eval, MultiOutputWithDroppedSibling) {
  Array a = random::normal({7, 33});
  std::vector<Array> parts = split(a, std::vector<int64_t>{3, 10}, 1);
  ASSERT_EQ(parts.size(), 3u);
  Array mid = parts[1];
  parts.clear();
  EXPECT_EQ(mid.shape(), (Shape{7, 7}));
  auto av = a.to_vector<float>();
  auto mv = mid.to_vector<float>();
  for (int i = 0; i < 7; ++i)
    for (int j = 0; j < 7; ++j) EXPECT_EQ(mv[i * 7 + j], av[i * 33 + 3 + j]);
}

TEST(Allocator, LimitThrowsOutOfMemoryAndCarriesOn) {
  size_t old = memory::set_limit(memory::active() + (1 << 20));
  Array big = zeros({1 << 20});  // 4 MiB > 1 MiB headroom
  Array r = big + 1.0f;
  expect_error<OutOfMemory>([&] { r.eval(); }, "[allocator] " + default_device().str());
  memory::set_limit(old);
  // The process carries on and the same graph can be built again.
  Array r2 = zeros({1 << 20}) + 1.0f;
  EXPECT_EQ(sum(r2).item<float>(), static_cast<float>(1 << 20));
}

TEST(Allocator, PrivatePoolsKeepTheirBlocks) {
  // What a recorded device graph relies on: blocks allocated while a pool is routed go back to
  // that pool when freed (never to the shared cache), and only the pool's allocations reuse them.
  CachingAllocator& a = dynamic_cast<CachingAllocator&>(allocator(cpu_device));
  const int pool = a.create_pool();
  const int previous = a.route_to_pool(pool);
  Buffer p1 = a.malloc(1000);
  a.free(p1);
  Buffer p2 = a.malloc(1000);  // the pool's own block again
  EXPECT_EQ(p2.ptr, p1.ptr);
  a.route_to_pool(previous);
  EXPECT_GE(a.pool_memory(pool), 1000u);
  a.free(p2);  // freed outside the routing: still the pool's
  Buffer outside = a.malloc(1000);
  EXPECT_NE(outside.ptr, p1.ptr);
  a.route_to_pool(pool);
  Buffer again = a.malloc(1000);
  EXPECT_EQ(again.ptr, p1.ptr);
  // A shared block freed while the pool is routed (a recorded kernel may have used it) is
  // adopted by the pool.
  a.route_to_pool(previous);
  Buffer shared = a.malloc(5000);
  a.route_to_pool(pool);
  const size_t before = a.pool_memory(pool);
  a.free(shared);
  EXPECT_GT(a.pool_memory(pool), before);
  a.route_to_pool(previous);
  Buffer next = a.malloc(5000);
  EXPECT_NE(next.ptr, shared.ptr);
  a.free(next);
  a.free(again);
  a.release_pool(pool);  // now the shared cache may hand it out
  EXPECT_EQ(a.pool_memory(pool), 0u);
  const size_t cached = a.cache_memory();
  EXPECT_GE(cached, 1000u);
  a.free(outside);
  EXPECT_THROW(a.route_to_pool(pool), InvalidArgument);
}

TEST(Allocator, CacheLimitAndClear) {
  memory::clear_cache();
  {
    Array a = zeros({1 << 16}) + 1.0f;
    a.eval();
  }
  EXPECT_GT(memory::cache(), 0u);
  memory::clear_cache();
  EXPECT_EQ(memory::cache(), 0u);
  size_t old = memory::set_cache_limit(0);
  {
    Array a = zeros({1 << 16}) + 1.0f;
    a.eval();
  }
  EXPECT_EQ(memory::cache(), 0u);
  memory::set_cache_limit(old);
}

TEST(Eval, DefaultArrayErrors) {
  Array e;
  expect_error<InvalidArgument>([&] { (void)e.shape(); }, "[array] use of an empty");
}

TEST(IdSet, InsertContainsClearAndGrowth) {
  // The walks' set: every id stays found through growth, clear() forgets them all at once,
  // and ids of an earlier generation never shadow the new ones.
  ingot::detail::IdSet s;
  EXPECT_FALSE(s.contains(8));
  for (uintptr_t id = 8; id < 8 * 5000; id += 8) EXPECT_TRUE(s.insert(id));
  for (uintptr_t id = 8; id < 8 * 5000; id += 8) {
    ASSERT_TRUE(s.contains(id)) << id;
    ASSERT_FALSE(s.insert(id)) << id;
  }
  EXPECT_FALSE(s.contains(4));
  EXPECT_GE(s.capacity(), 2u * 4999);
  s.clear();
  for (uintptr_t id = 8; id < 8 * 5000; id += 8) ASSERT_FALSE(s.contains(id)) << id;
  for (uintptr_t id = 16; id < 16 * 100; id += 16) EXPECT_TRUE(s.insert(id));
  EXPECT_TRUE(s.contains(16 * 50));
  EXPECT_FALSE(s.contains(8));
  s.release();
  EXPECT_FALSE(s.contains(16));
  EXPECT_TRUE(s.insert(16));
}
