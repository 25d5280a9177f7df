// fast::prefetch: x passed on unchanged (on the CPU the hint does nothing), the gradient and
// tangent of x passed through, none for the hinted arrays, and its argument checks. The GPU
// graph branch is covered by tests/backend/test_cuda_graph.cpp and tests/llm.
#include <vector>

#include "core/fast/fast.h"
#include "core/test_util.h"

using namespace ingot;
using namespace ingot::test;

namespace {

TEST(FastPrefetch, PassesXOnWithItsGradientAndTangent) {
  auto xv = random_values(12, float32, 3), wv = random_values(40, bfloat16, 4);
  const Array x(xv, {3, 4}), w(wv, {5, 8}, bfloat16);
  const auto f = [&](const std::vector<Array>& in) {
    Array y = fast::prefetch(in[0] * Array(2.0f), {{in[1], 16, 48}, {in[1], 0, 80}});
    EXPECT_EQ(count_primitives({y}, "Prefetch"), 1);
    return std::vector<Array>{y * Array(3.0f)};
  };
  std::vector<double> want;
  for (double v : xv) want.push_back(6.0 * v);
  expect_close(values_of(f({x, w})[0]), want, 1e-6, 1e-6, "value");

  const Array cot(random_values(12, float32, 5), {3, 4});
  auto [outs, grads] = vjp(f, {x, w}, {cot});
  ASSERT_EQ(grads.size(), 2u);
  std::vector<double> gx;
  for (double c : values_of(cot)) gx.push_back(6.0 * c);
  expect_close(values_of(grads[0]), gx, 1e-6, 1e-6, "x's gradient");
  EXPECT_EQ(grads[1].shape(), w.shape());
  for (double g : values_of(grads[1])) ASSERT_EQ(g, 0.0) << "a hinted array got a gradient";

  const Array tx(random_values(12, float32, 6), {3, 4});
  const Array tw(random_values(40, bfloat16, 7), {5, 8}, bfloat16);
  auto [o2, tangents] = jvp(f, {x, w}, {tx, tw});
  std::vector<double> tw_want;
  for (double t : values_of(tx)) tw_want.push_back(6.0 * t);
  expect_close(values_of(tangents[0]), tw_want, 1e-6, 1e-6, "tangent");
}

TEST(FastPrefetch, NothingToAskGivesXItselfAndBadRangesAreErrors) {
  const Array x(std::vector<float>{1, 2, 3}, {3}), w = zeros({4, 4});
  EXPECT_TRUE(fast::prefetch(x, {}).same_node(x));
  EXPECT_TRUE(fast::prefetch(x, {{w, 8, 0}}).same_node(x));
  expect_error<InvalidArgument>(
      [&] {
        fast::prefetch(x, {{w, -1, 16}});
      },
      "[prefetch] a range needs offset >= 0 and bytes >= 0");
  expect_error<InvalidArgument>(
      [&] {
        fast::prefetch(x, {{w, 0, -16}});
      },
      "[prefetch] a range needs offset >= 0 and bytes >= 0");
}

}  // namespace
