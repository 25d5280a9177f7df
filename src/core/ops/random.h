// Random numbers from splittable counter-based keys (Threefry-2x32), so a seed gives the same
// numbers on every backend. A key is a uint32 array of shape [2].
#pragma once

#include <optional>

#include "core/array.h"

namespace ingot::random {

/// Key from a seed.
Array key(uint64_t seed);
/// `num` independent keys derived from `key` (shape [num, 2]).
Array split(const Array& key, int num = 2, StreamOrDevice s = {});
/// Seeds the global key used when none is passed.
void seed(uint64_t seed);
/// Random bits (uint32) of a shape from a key.
Array bits(const Shape& shape, const std::optional<Array>& key = std::nullopt,
           StreamOrDevice s = {});
/// Uniform in [low, high).
Array uniform(const Shape& shape, Dtype dtype = float32, double low = 0.0, double high = 1.0,
              const std::optional<Array>& key = std::nullopt, StreamOrDevice s = {});
/// Normal with mean loc and standard deviation scale.
Array normal(const Shape& shape, Dtype dtype = float32, double loc = 0.0, double scale = 1.0,
             const std::optional<Array>& key = std::nullopt, StreamOrDevice s = {});
/// Integers uniform in [low, high).
Array randint(int64_t low, int64_t high, const Shape& shape, Dtype dtype = int32,
              const std::optional<Array>& key = std::nullopt, StreamOrDevice s = {});
/// True with probability p (p broadcast to shape).
Array bernoulli(const Array& p, const Shape& shape, const std::optional<Array>& key = std::nullopt,
                StreamOrDevice s = {});
/// Standard Gumbel samples.
Array gumbel(const Shape& shape, Dtype dtype = float32,
             const std::optional<Array>& key = std::nullopt, StreamOrDevice s = {});
/// Samples category indices (uint32) from unnormalised log-probabilities along `axis`
/// (Gumbel-max); the output drops that axis.
Array categorical(const Array& logits, int axis = -1,
                  const std::optional<Array>& key = std::nullopt, StreamOrDevice s = {});

}  // namespace ingot::random
