// Primitives of the random ops and the Threefry-2x32 block function they share with the global
// key state. The stream of words for a key is JAX's (non-partitionable) construction, so a key
// gives the same bits on every backend: see threefry_words.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/primitive.h"

namespace ingot {

namespace detail {
template <int R>
inline void threefry_round(uint32_t& x0, uint32_t& x1) {
  x0 += x1;
  x1 = (x1 << R) | (x1 >> (32 - R));
  x1 ^= x0;
}
/// Four rounds with the rotations of even (0) or odd (1) groups.
template <int G>
inline void threefry_rounds4(uint32_t& x0, uint32_t& x1) {
  threefry_round<G == 0 ? 13 : 17>(x0, x1);
  threefry_round<G == 0 ? 15 : 29>(x0, x1);
  threefry_round<G == 0 ? 26 : 16>(x0, x1);
  threefry_round<G == 0 ? 6 : 24>(x0, x1);
}
}  // namespace detail

/// Threefry-2x32 with 20 rounds (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3")
/// of the counter (x0, x1) under the key (k0, k1). Fully unrolled so loops over counters
/// vectorise.
inline std::pair<uint32_t, uint32_t> threefry2x32(uint32_t k0, uint32_t k1, uint32_t x0,
                                                  uint32_t x1) {
  const uint32_t k2 = k0 ^ k1 ^ 0x1BD11BDAu;
  x0 += k0;
  x1 += k1;
  detail::threefry_rounds4<0>(x0, x1);
  x0 += k1;
  x1 += k2 + 1;
  detail::threefry_rounds4<1>(x0, x1);
  x0 += k2;
  x1 += k0 + 2;
  detail::threefry_rounds4<0>(x0, x1);
  x0 += k0;
  x1 += k1 + 3;
  detail::threefry_rounds4<1>(x0, x1);
  x0 += k1;
  x1 += k2 + 4;
  detail::threefry_rounds4<0>(x0, x1);
  x0 += k2;
  x1 += k0 + 5;
  return {x0, x1};
}

/// Words of pairs [pair_begin, pair_end) of the m-word stream of a key, written into `out`
/// (all m words): with h = ceil(m / 2), pair p encrypts the counter (p, p + h), or (p, 0) when
/// p + h == m; word p is its first half and word p + h its second (jax.random.bits for 32-bit
/// words; random::split(key, n) is the 2n-word stream read as [n, 2]).
[[gnu::always_inline]] inline void threefry_words(uint32_t k0, uint32_t k1, int64_t pair_begin,
                                                  int64_t pair_end, int64_t m, uint32_t* out) {
  const int64_t h = (m + 1) / 2, full_end = std::min(pair_end, m - h);
  uint32_t* second = out + h;
  for (int64_t p = pair_begin; p < full_end; ++p) {
    auto [y0, y1] = threefry2x32(k0, k1, static_cast<uint32_t>(p), static_cast<uint32_t>(p + h));
    out[p] = y0;
    second[p] = y1;
  }
  for (int64_t p = std::max(pair_begin, m - h); p < pair_end; ++p)  // the odd last word
    out[p] = threefry2x32(k0, k1, static_cast<uint32_t>(p), 0u).first;
}

/// Base of the random primitives: input 0 is the key (uint32 [2]); outputs are constants for
/// differentiation (zero cotangents for every input).
class RandomPrimitive : public UnaryPrimitive {
 public:
  RandomPrimitive(Stream s, Shape shape) : UnaryPrimitive(s), shape_(std::move(shape)) {}
  std::vector<Shape> output_shapes(const std::vector<Array>&) override { return {shape_}; }
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  const Shape shape_;
};

/// The key's word stream as uint32 of shape_.
class RandomBits : public RandomPrimitive {
 public:
  using RandomPrimitive::RandomPrimitive;
  INGOT_UNARY_PRIMITIVE(RandomBits)
  INGOT_EQUIVALENT(RandomBits, std::tie(p->shape_))
};

/// Uniform in [low_, high_) rounded to the output dtype, then clamped to [lo_, hi_], the
/// smallest and largest values of that dtype inside the interval. Float64 reads 53 bits from
/// two words per element, other dtypes 24 bits from one.
class Uniform : public RandomPrimitive {
 public:
  Uniform(Stream s, Shape shape, double low, double high, double lo, double hi)
      : RandomPrimitive(s, std::move(shape)), low_(low), high_(high), lo_(lo), hi_(hi) {}
  INGOT_UNARY_PRIMITIVE(Uniform)
  INGOT_EQUIVALENT(Uniform, std::tie(p->shape_, p->low_, p->high_))
  const double low_, high_, lo_, hi_;
};

/// loc_ + scale_ * z, z standard normal: sqrt(2) * erfinv(u) with u uniform on a symmetric
/// grid in (-1, 1) from 24 bits (one word); float64 uses Box–Muller's cosine branch with two
/// 32-bit uniforms (two words per element).
class Normal : public RandomPrimitive {
 public:
  Normal(Stream s, Shape shape, double loc, double scale)
      : RandomPrimitive(s, std::move(shape)), loc_(loc), scale_(scale) {}
  INGOT_UNARY_PRIMITIVE(Normal)
  INGOT_EQUIVALENT(Normal, std::tie(p->shape_, p->loc_, p->scale_))
  const double loc_, scale_;
};

/// low_ + (x mod (high_ - low_)) with x a 64-bit word pair: bias below (high - low) / 2^64.
class RandInt : public RandomPrimitive {
 public:
  RandInt(Stream s, Shape shape, int64_t low, int64_t high)
      : RandomPrimitive(s, std::move(shape)), low_(low), high_(high) {}
  INGOT_UNARY_PRIMITIVE(RandInt)
  INGOT_EQUIVALENT(RandInt, std::tie(p->shape_, p->low_, p->high_))
  const int64_t low_, high_;
};

/// u < p (inputs {key, p}, p broadcast to shape_), u = word / 2^32.
class Bernoulli : public RandomPrimitive {
 public:
  using RandomPrimitive::RandomPrimitive;
  INGOT_UNARY_PRIMITIVE(Bernoulli)
  INGOT_EQUIVALENT(Bernoulli, std::tie(p->shape_))
};

/// -log(-log(u)) with u in (0, 1) (computed in float64 from 24 bits, or 53 for float64).
class Gumbel : public RandomPrimitive {
 public:
  using RandomPrimitive::RandomPrimitive;
  INGOT_UNARY_PRIMITIVE(Gumbel)
  INGOT_EQUIVALENT(Gumbel, std::tie(p->shape_))
};

/// Gumbel-max sampling (inputs {key, logits}): argmax over axis_ of logits + g, with g drawn
/// for every logit in row-major order (u = (word + 0.5) / 2^32). Output uint32 of shape_.
class Categorical : public RandomPrimitive {
 public:
  Categorical(Stream s, Shape shape, int axis)
      : RandomPrimitive(s, std::move(shape)), axis_(axis) {}
  INGOT_UNARY_PRIMITIVE(Categorical)
  INGOT_EQUIVALENT(Categorical, std::tie(p->shape_, p->axis_))
  const int axis_;
};

}  // namespace ingot
