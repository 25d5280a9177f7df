// Array basics: construction from host data, host reads, dtype conversion, errors.
#include <gtest/gtest.h>

#include "core/ingot.h"

using namespace ingot;

TEST(Array, ScalarAndVector) {
  Array a(3.5f);
  EXPECT_EQ(a.ndim(), 0);
  EXPECT_EQ(a.dtype(), float32);
  EXPECT_FLOAT_EQ(a.item<float>(), 3.5f);
  Array v({1.f, 2.f, 3.f});
  EXPECT_EQ(v.shape(), (Shape{3}));
  EXPECT_EQ(v.to_vector<int>(), (std::vector<int>{1, 2, 3}));
  Array m(std::vector<int32_t>{1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(m.shape(1), 3);
  EXPECT_EQ(m.shape(-2), 2);
  EXPECT_EQ(m.dtype(), int32);
}

TEST(Array, BadShapeMessage) {
  try {
    Array m(std::vector<float>{1, 2, 3}, {2, 2});
    FAIL() << "expected an exception";
  } catch (const InvalidArgument& e) {
    EXPECT_STREQ(e.what(), "[array] 3 values given for shape [2, 2] (4 elements)");
  }
  EXPECT_THROW(Array(1.0f).shape(1), InvalidArgument);
}

TEST(Dtype, Bf16RoundsToNearestEven) {
  // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties to even -> 1.0
  EXPECT_EQ(bfloat16_t(1.0f + 1.0f / 256).bits, bfloat16_t(1.0f).bits);
  // 1 + 3*2^-8 is halfway between 1.0078125 (odd) and 1.015625 (even) -> 1.015625
  EXPECT_FLOAT_EQ(static_cast<float>(bfloat16_t(1.0f + 3.0f / 256)), 1.015625f);
}

TEST(Array, PendingReadGivesTheValuesOfAView) {
  Array x = reshape(arange(0, 12, 1, float32), {3, 4});
  Array t = transpose(x, {1, 0}) * 2.0f;  // lazy, then read through PendingRead
  PendingRead r(t);
  std::vector<float> want;
  for (int j = 0; j < 4; ++j)
    for (int i = 0; i < 3; ++i) want.push_back(2.0f * static_cast<float>(i * 4 + j));
  EXPECT_EQ(r.get<float>(), want);
  EXPECT_EQ(r.get<int32_t>()[1], 8);  // a second get converts again
  PendingRead empty(zeros({0, 3}));
  EXPECT_TRUE(empty.get<float>().empty());
}
