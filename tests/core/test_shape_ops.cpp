// Copying shape ops (concatenate, stack, split, pad, slice_update, tile, repeat) against naive
// float64 loops on every dtype and layout, their errors, and their gradients.
#include <gtest/gtest.h>

#include "core/transforms/autodiff.h"
#include "test_util.h"

namespace ingot::test {
namespace {

Shape unravel(int64_t k, const Shape& shape) {
  Shape idx(shape.size());
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    idx[d] = k % shape[d];
    k /= shape[d];
  }
  return idx;
}

int64_t ravel(const Shape& idx, const Shape& shape) {
  int64_t k = 0;
  for (size_t d = 0; d < shape.size(); ++d) k = k * shape[d] + idx[d];
  return k;
}

std::string ctx(Dtype t, Layout l, const Shape& s) {
  return std::string(dtype_name(t)) + "/" + layout_name(l) + "/" + shape_str(s);
}

/// Logical values of `a` converted to what dtype t holds.
std::vector<double> as_dtype(std::vector<double> v, Dtype t) {
  for (auto& x : v) x = t == bool_ ? (x != 0) : round_to(x, t);
  return v;
}

TEST(Concatenate, DtypesLayoutsAxes) {
  struct C {
    Shape a, b;
    int axis;
  };
  const C cases[] = {{{7}, {1}, 0},           {{3, 5}, {4, 5}, 0},
                     {{3, 5}, {3, 33}, 1},    {{2, 3, 4}, {2, 1, 4}, -2},
                     {{1000, 2}, {37, 2}, 0}, {{2, 3}, {2, 0}, 1}};
  uint32_t seed = 1;
  for (Dtype t : kAllDtypes)
    for (Dtype u : {t, float32, int32, bfloat16})
      for (Layout l : kAllLayouts)
        for (const auto& c : cases) {
          auto av = random_values(shape_size(c.a), t, seed++);
          auto bv = random_values(shape_size(c.b), u, seed++);
          Array a = make_array(av, c.a, t, l);
          // (Zero-size arrays come from zeros(): host construction of empty data is avoided.)
          Array b = shape_size(c.b) == 0
                        ? zeros(c.b, u)
                        : make_array(bv, c.b, u, l == Layout::broadcast ? Layout::transposed : l);
          Array out = concatenate({a, b}, c.axis);
          const Dtype rt = promote_types(t, u);
          ASSERT_EQ(out.dtype(), rt);
          const int ax = c.axis < 0 ? c.axis + static_cast<int>(c.a.size()) : c.axis;
          Shape os = c.a;
          os[ax] += c.b[ax];
          ASSERT_EQ(out.shape(), os);
          std::vector<double> want;
          for (int64_t k = 0; k < shape_size(os); ++k) {
            Shape i = unravel(k, os);
            if (i[ax] < c.a[ax]) {
              want.push_back(av[ravel(i, c.a)]);
            } else {
              i[ax] -= c.a[ax];
              want.push_back(bv[ravel(i, c.b)]);
            }
          }
          expect_close(values_of(out), as_dtype(want, rt), 0, 0, ctx(t, l, c.a));
        }
}

TEST(Concatenate, ManyInputs) {
  std::vector<Array> parts;
  std::vector<double> want;
  for (int i = 0; i < 9; ++i) {
    parts.push_back(full({i + 1}, Array(static_cast<float>(i)), float32));
    for (int k = 0; k <= i; ++k) want.push_back(i);
  }
  expect_close(values_of(concatenate(parts)), want, 0, 0);
}

TEST(Stack, NewAxis) {
  for (Dtype t : kAllDtypes)
    for (Layout l : kAllLayouts)
      for (int axis : {0, 1, 2, -1}) {
        const Shape s{3, 5};
        auto v0 = random_values(15, t, 10), v1 = random_values(15, t, 11);
        Array a = make_array(v0, s, t, l), b = make_array(v1, s, t, l);
        Array out = stack({a, b, a}, axis);
        const int ax = axis < 0 ? axis + 3 : axis;
        Shape os = s;
        os.insert(os.begin() + ax, 3);
        ASSERT_EQ(out.shape(), os);
        std::vector<double> want;
        for (int64_t k = 0; k < shape_size(os); ++k) {
          Shape i = unravel(k, os);
          const int64_t which = i[ax];
          i.erase(i.begin() + ax);
          want.push_back((which == 1 ? v1 : v0)[ravel(i, s)]);
        }
        expect_close(values_of(out), want, 0, 0, ctx(t, l, os));
      }
}

TEST(Split, EqualAndIndices) {
  auto v = random_values(6 * 35, float32, 3);
  for (Layout l : kAllLayouts) {
    Array a = make_array(v, {6, 35}, float32, l);
    auto parts = split(a, 5, 1);
    ASSERT_EQ(parts.size(), 5u);
    for (int p = 0; p < 5; ++p) {
      ASSERT_EQ(parts[p].shape(), (Shape{6, 7}));
      std::vector<double> want;
      for (int r = 0; r < 6; ++r)
        for (int c = 0; c < 7; ++c) want.push_back(v[r * 35 + p * 7 + c]);
      expect_close(values_of(parts[p]), want, 0, 0, layout_name(l));
    }
    auto rows = split(a, std::vector<int64_t>{1, 4, 4}, 0);
    ASSERT_EQ(rows.size(), 4u);
    EXPECT_EQ(rows[0].shape(), (Shape{1, 35}));
    EXPECT_EQ(rows[1].shape(), (Shape{3, 35}));
    EXPECT_EQ(rows[2].shape(), (Shape{0, 35}));
    EXPECT_EQ(rows[3].shape(), (Shape{2, 35}));
    expect_close(values_of(rows[3]), std::vector<double>(v.begin() + 4 * 35, v.end()), 0, 0);
    auto neg = split(a, std::vector<int64_t>{-2}, 0);
    EXPECT_EQ(neg[0].shape(), (Shape{4, 35}));
    EXPECT_EQ(neg[1].shape(), (Shape{2, 35}));
  }
}

TEST(Pad, SeveralAxesWithValues) {
  struct C {
    Shape s;
    std::vector<int> axes;
    Shape lo, hi;
  };
  const C cases[] = {{{7}, {0}, {2}, {3}},
                     {{3, 5}, {0, 1}, {1, 0}, {2, 4}},
                     {{2, 3, 4}, {-1, 0}, {1, 0}, {1, 3}},
                     {{1, 1}, {1}, {0}, {5}},
                     {{1030, 2}, {1}, {1}, {1}}};
  uint32_t seed = 5;
  for (Dtype t : kAllDtypes)
    for (Layout l : kAllLayouts)
      for (const auto& c : cases) {
        auto av = random_values(shape_size(c.s), t, seed++);
        Array a = make_array(av, c.s, t, l);
        const double pv = t == bool_ ? 1 : 3;
        Array out = pad(a, c.axes, c.lo, c.hi, Array(pv));
        const int nd = static_cast<int>(c.s.size());
        Shape lo(nd, 0), os = c.s;
        for (size_t i = 0; i < c.axes.size(); ++i) {
          const int ax = c.axes[i] < 0 ? c.axes[i] + nd : c.axes[i];
          lo[ax] = c.lo[i];
          os[ax] += c.lo[i] + c.hi[i];
        }
        ASSERT_EQ(out.shape(), os);
        ASSERT_EQ(out.dtype(), t);
        std::vector<double> want;
        for (int64_t k = 0; k < shape_size(os); ++k) {
          Shape i = unravel(k, os);
          bool inside = true;
          for (int d = 0; d < nd; ++d) {
            i[d] -= lo[d];
            inside = inside && i[d] >= 0 && i[d] < c.s[d];
          }
          want.push_back(inside ? av[ravel(i, c.s)] : pv);
        }
        expect_close(values_of(out), want, 0, 0, ctx(t, l, c.s));
      }
}

TEST(Pad, PadWidthOverload) {
  Array a = Array({1.f, 2.f, 3.f, 4.f}, {2, 2});
  Array out = pad(a, {{1, 0}, {0, 1}}, Array(-1.0f));
  expect_close(values_of(out), {-1, -1, -1, 1, 2, -1, 3, 4, -1}, 0, 0);
  Array all = pad(a, {{1, 1}});
  EXPECT_EQ(all.shape(), (Shape{4, 4}));
  expect_close(values_of(all), {0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 0}, 0, 0);
}

TEST(SliceUpdate, StridesAndBroadcast) {
  struct C {
    Shape s, start, stop, step, ushape;
  };
  const C cases[] = {{{7}, {1}, {7}, {2}, {3}},
                     {{7}, {-1}, {-8}, {-3}, {3}},
                     {{5, 6}, {1, 0}, {4, 6}, {1, 2}, {3, 3}},
                     {{5, 6}, {0, 5}, {5, 0}, {2, -1}, {1, 5}},  // broadcast over rows
                     {{4, 33}, {0, 0}, {4, 33}, {1, 1}, {}},     // scalar update
                     {{3, 4, 5}, {2, 1, 0}, {0, 4, 5}, {-1, 2, 2}, {2, 1, 3}},
                     {{1100}, {3}, {1100}, {1}, {1097}}};
  uint32_t seed = 50;
  for (Dtype t : kAllDtypes)
    for (Layout l : kAllLayouts)
      for (const auto& c : cases) {
        auto av = random_values(shape_size(c.s), t, seed++);
        // The update is float (converted to a's dtype) holding values exact in both dtypes.
        auto uv = random_values(shape_size(c.ushape), t, seed++);
        const Dtype ut = t == float64 ? float64 : float32;
        Array a = make_array(av, c.s, t, l);
        Array u = make_array(uv, c.ushape, ut, l == Layout::broadcast ? Layout::sliced : l);
        Array out = slice_update(a, u, c.start, c.stop, c.step);
        // Reference: the slice's positions via Python slicing.
        std::vector<double> want = av;
        const int nd = static_cast<int>(c.s.size());
        Shape sstart(nd), count(nd);
        for (int d = 0; d < nd; ++d) {
          int64_t n = c.s[d], b = c.start[d], e = c.stop[d], st = c.step[d];
          if (b < 0) b += n;
          if (e < 0) e += n;
          if (st > 0) {
            b = std::clamp<int64_t>(b, 0, n), e = std::clamp<int64_t>(e, 0, n);
            count[d] = e > b ? (e - b + st - 1) / st : 0;
          } else {
            b = std::clamp<int64_t>(b, -1, n - 1), e = std::clamp<int64_t>(e, -1, n - 1);
            count[d] = b > e ? (b - e - st - 1) / -st : 0;
          }
          sstart[d] = b;
        }
        Shape ub(nd, 1);  // update broadcast against the slice shape
        std::copy(c.ushape.begin(), c.ushape.end(), ub.end() - c.ushape.size());
        for (int64_t k = 0; k < shape_size(count); ++k) {
          Shape i = unravel(k, count), pos(nd), ui(nd);
          for (int d = 0; d < nd; ++d) {
            pos[d] = sstart[d] + i[d] * c.step[d];
            ui[d] = ub[d] == 1 ? 0 : i[d];
          }
          want[ravel(pos, c.s)] = uv[ravel(ui, ub)];
        }
        expect_close(values_of(out), as_dtype(want, t), 0, 0, ctx(t, l, c.s));
        expect_close(values_of(a), av, 0, 0, "input unchanged " + ctx(t, l, c.s));
      }
}

TEST(SliceUpdate, DonatedTemporary) {
  Array x = arange(10, float32) + 1.0f;  // a temporary the kernel may reuse
  Array y = slice_update(x * 2.0f, Array(0.0f), {2}, {5});
  expect_close(values_of(y), {2, 4, 0, 0, 0, 12, 14, 16, 18, 20}, 0, 0);
  expect_close(values_of(x), {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0, 0);
}

TEST(Tile, Reps) {
  struct C {
    Shape s, reps;
  };
  const C cases[] = {{{3}, {2}},      {{2, 3}, {2, 1}},       {{2, 3}, {3}},
                     {{3}, {2, 2}},   {{2, 1, 3}, {1, 4, 1}}, {{1}, {1031}},
                     {{2, 2}, {0, 1}}};
  for (Dtype t : kAllDtypes)
    for (Layout l : kAllLayouts)
      for (const auto& c : cases) {
        auto av = random_values(shape_size(c.s), t, 9);
        Array a = make_array(av, c.s, t, l);
        Array out = tile(a, c.reps);
        const size_t nd = std::max(c.s.size(), c.reps.size());
        Shape s(nd, 1), r(nd, 1), os(nd);
        std::copy(c.s.begin(), c.s.end(), s.end() - c.s.size());
        std::copy(c.reps.begin(), c.reps.end(), r.end() - c.reps.size());
        for (size_t d = 0; d < nd; ++d) os[d] = s[d] * r[d];
        ASSERT_EQ(out.shape(), os) << ctx(t, l, c.s);
        std::vector<double> want;
        for (int64_t k = 0; k < shape_size(os); ++k) {
          Shape i = unravel(k, os);
          for (size_t d = 0; d < nd; ++d) i[d] %= s[d];
          want.push_back(av[ravel(i, s)]);
        }
        expect_close(values_of(out), want, 0, 0, ctx(t, l, c.s));
      }
}

TEST(Repeat, EachElement) {
  for (Dtype t : kAllDtypes)
    for (Layout l : kAllLayouts)
      for (int axis : {0, 1, -1})
        for (int reps : {1, 3, 0}) {
          const Shape s{4, 7};
          auto av = random_values(28, t, 12);
          Array a = make_array(av, s, t, l);
          Array out = repeat(a, reps, axis);
          const int ax = axis < 0 ? axis + 2 : axis;
          Shape os = s;
          os[ax] *= reps;
          ASSERT_EQ(out.shape(), os);
          std::vector<double> want;
          for (int64_t k = 0; k < shape_size(os); ++k) {
            Shape i = unravel(k, os);
            i[ax] /= reps;
            want.push_back(av[ravel(i, s)]);
          }
          expect_close(values_of(out), want, 0, 0, ctx(t, l, s));
        }
}

TEST(ShapeOpErrors, Messages) {
  Array a = zeros({2, 3});
  expect_error<InvalidArgument>([&] { concatenate({}); }, "[concatenate] needs at least one");
  expect_error<InvalidArgument>(
      [&] {
        concatenate({a, zeros({3})});
      },
      "[concatenate] all arrays need the same number of dimensions: "
      "got shapes [2, 3] and [3]");
  expect_error<InvalidArgument>(
      [&] {
        concatenate({a, zeros({3, 4})}, 1);
      },
      "[concatenate] shapes [2, 3] and [3, 4] differ outside axis 1");
  expect_error<InvalidArgument>([&] { concatenate({a, a}, 2); }, "[concatenate]");
  expect_error<InvalidArgument>(
      [&] {
        stack({a, zeros({3, 2})});
      },
      "[stack] all arrays need the same shape: got [2, 3] and [3, 2]");
  expect_error<InvalidArgument>([&] { split(a, 2, 1); },
                                "[split] axis 1 of size 3 (shape [2, 3]) cannot be split into 2");
  expect_error<InvalidArgument>([&] { split(a, 0, 1); }, "[split] number of parts must be");
  expect_error<InvalidArgument>([&] { pad(a, {0}, {-1}, {0}); },
                                "[pad] negative padding (-1, 0) on axis 0 of shape [2, 3]");
  expect_error<InvalidArgument>(
      [&] {
        pad(a, {0, 0}, {1, 1}, {1, 1});
      },
      "[pad] axis 0 given twice");
  expect_error<InvalidArgument>([&] { pad(a, {0}, {1}, {1}, zeros({2})); },
                                "[pad] value must be a single element, got shape [2]");
  expect_error<InvalidArgument>(
      [&] {
        pad(a, {{1, 1}, {1, 1}, {1, 1}});
      },
      "[pad] pad_width needs one (low, high) pair per axis of [2, 3]");
  expect_error<InvalidArgument>(
      [&] {
        slice_update(a, zeros({2}), {0, 0}, {2, 3});
      },
      "[slice_update] update of shape [2] cannot be broadcast to the "
      "slice shape [2, 3] of a [2, 3]");
  expect_error<InvalidArgument>([&] { slice_update(a, zeros({1}), {0}, {2}); },
                                "[slice_update] start, stop and strides need one entry per axis");
  expect_error<InvalidArgument>(
      [&] {
        slice_update(a, zeros({1}), {0, 0}, {2, 2}, {1, 0});
      },
      "[slice_update] stride 0 on axis 1");
  expect_error<InvalidArgument>([&] { tile(a, {2, -1}); }, "[tile] repetitions must be");
  expect_error<InvalidArgument>([&] { repeat(a, -1, 0); }, "[repeat] repeats must be");
  expect_error<InvalidArgument>([&] { repeat(a, 2, 3); }, "[repeat]");
}

// ---- gradients (float64 finite differences through the autodiff engine) ----

TEST(ShapeOpGrad, FiniteDifferences) {
  Array x(random_values(12, float64, 5), {3, 4}, float64);
  check_grad(
      [](const Array& a) {
        return concatenate({a, a * 2.0, slice_axis(a, 1, 1, 3)}, 1);
      },
      x);
  check_grad([](const Array& a) { return stack({a, a * a}, 1); }, x);
  check_grad([](const Array& a) { return pad(a, {1}, {2}, {1}, sum(a)); }, x);
  check_grad(
      [](const Array& a) {
        return slice_update(a, slice_axis(a, 0, 0, 1) * 3.0, {1, 0}, {3, 4});
      },
      x);
  check_grad([](const Array& a) { return tile(a, {2, 1, 3}); }, x);
  check_grad([](const Array& a) { return repeat(a, 2, 0); }, x);
  check_grad([](const Array& a) { return split(a, 2, 1)[1] * split(a, 2, 1)[0]; }, x);
}

TEST(ShapeOpGrad, ForwardMode) {
  Array x(random_values(12, float64, 6), {3, 4}, float64);
  check_jvp([](const Array& a) { return concatenate({a * a, a}, 0); }, x);
  check_jvp([](const Array& a) { return pad(a, {0, 1}, {1, 0}, {0, 2}, Array(2.0)); }, x);
  check_jvp([](const Array& a) { return slice_update(a * a, a * 3.0, {0, 0}, {3, 4}, {1, 1}); }, x);
  check_jvp(
      [](const Array& a) {
        return slice_update(a, slice_axis(a, 1, 0, 2), {0, 1}, {3, 4}, {1, 2});
      },
      x);
}

}  // namespace
}  // namespace ingot::test
