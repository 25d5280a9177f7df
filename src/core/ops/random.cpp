// Random ops: keys, split, the global key state, and the sampling ops (each a primitive that
// reads its key's Threefry word stream; see primitives/random.h).
#include "core/ops/random.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>

#include "core/cast.h"
#include "core/ops/creation.h"
#include "core/ops/elementwise.h"
#include "core/primitives/random.h"
#include "core/primitives/shape.h"

namespace ingot {

std::vector<Array> RandomPrimitive::vjp(const std::vector<Array>& primals,
                                        const std::vector<Array>&, const std::vector<int>& argnums,
                                        const std::vector<Array>&) {
  std::vector<Array> r;
  for (int arg : argnums) r.push_back(zeros_like(primals[arg], stream()));
  return r;
}

namespace random {

namespace {

std::mutex g_mutex;
bool g_seeded = false;
uint32_t g_key[2] = {0, 0};

void set_key_locked(uint64_t s) {
  g_key[0] = static_cast<uint32_t>(s >> 32);
  g_key[1] = static_cast<uint32_t>(s & 0xffffffffu);
  g_seeded = true;
}

/// Splits the global key in two: keeps the first half, returns the second.
Array next_key() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_seeded)
    set_key_locked(
        static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()));
  uint32_t w[4];
  threefry_words(g_key[0], g_key[1], 0, 2, 4, w);
  g_key[0] = w[0];
  g_key[1] = w[1];
  return Array(std::vector<uint32_t>{w[2], w[3]}, {2}, Dtype::uint32);
}

void check_key(const Array& k, const char* op) {
  if (k.dtype() != Dtype::uint32 || k.shape() != Shape{2})
    raise("[{}] a key must be a uint32 array of shape [2], got {} of shape {}", op,
          dtype_name(k.dtype()), shape_str(k.shape()));
}

Array resolve_key(const std::optional<Array>& key, const char* op) {
  if (!key) return next_key();
  check_key(*key, op);
  return *key;
}

void check_shape(const Shape& shape, int64_t words_per_element, const char* op) {
  for (int64_t d : shape)
    if (d < 0) raise("[{}] negative dimension in shape {}", op, shape_str(shape));
  if (shape_size(shape) * words_per_element > int64_t{0xffffffff})
    raise("[{}] shape {} needs more than 2^32 - 1 random words; draw it in parts", op,
          shape_str(shape));
}

void check_float(Dtype t, const char* op) {
  if (!is_floating(t)) raise("[{}] dtype must be a floating type, got {}", op, dtype_name(t));
}

/// The next value of T after v towards +inf (up) or -inf.
template <typename T>
T step(T v, bool up) {
  if constexpr (is_half_v<T>) {
    uint16_t b = v.bits;
    const bool neg = (b & 0x8000u) != 0, zero = (b & 0x7fffu) == 0;
    if (zero)
      b = up ? 0x0001 : 0x8001;
    else if (neg == up)
      b = static_cast<uint16_t>(b - 1);
    else
      b = static_cast<uint16_t>(b + 1);
    return T::from_bits(b);
  } else {
    return std::nextafter(
        v, up ? std::numeric_limits<T>::infinity() : -std::numeric_limits<T>::infinity());
  }
}

/// Smallest and largest values of dtype t in [low, high) (as doubles).
std::pair<double, double> representable_range(Dtype t, double low, double high) {
  return dispatch_dtype(t, [&](auto tag) -> std::pair<double, double> {
    using T = decltype(tag);
    if constexpr (std::is_floating_point_v<T> || is_half_v<T>) {
      T h = cast_value<T>(high), l = cast_value<T>(low);
      while (cast_value<double>(h) >= high) h = step(h, false);
      while (cast_value<double>(l) < low) l = step(l, true);
      return {cast_value<double>(l), cast_value<double>(h)};
    } else {
      return {low, high};
    }
  });
}

}  // namespace

Array key(uint64_t seed) {
  return Array(std::vector<uint32_t>{static_cast<uint32_t>(seed >> 32),
                                     static_cast<uint32_t>(seed & 0xffffffffu)},
               {2}, Dtype::uint32);
}

void seed(uint64_t s) {
  std::lock_guard<std::mutex> lock(g_mutex);
  set_key_locked(s);
}

Array split(const Array& key, int num, StreamOrDevice s) {
  check_key(key, "random.split");
  if (num < 1) raise("[random.split] number of keys must be positive, got {}", num);
  Shape shape{num, 2};
  return Array(shape, Dtype::uint32, std::make_shared<RandomBits>(resolve_stream(s, {&key}), shape),
               {key});
}

Array bits(const Shape& shape, const std::optional<Array>& key, StreamOrDevice s) {
  check_shape(shape, 1, "random.bits");
  return Array(shape, Dtype::uint32,
               std::make_shared<RandomBits>(resolve_stream(s, {key ? &*key : nullptr}), shape),
               {resolve_key(key, "random.bits")});
}

Array uniform(const Shape& shape, Dtype dtype, double low, double high,
              const std::optional<Array>& key, StreamOrDevice s) {
  check_float(dtype, "uniform");
  check_shape(shape, dtype == Dtype::float64 ? 2 : 1, "uniform");
  if (!std::isfinite(low) || !std::isfinite(high) || !(low < high))
    raise("[uniform] need finite low < high, got low {} and high {}", low, high);
  auto [lo, hi] = representable_range(dtype, low, high);
  if (lo > hi) raise("[uniform] no {} value lies in [{}, {})", dtype_name(dtype), low, high);
  return Array(shape, dtype,
               std::make_shared<Uniform>(resolve_stream(s, {key ? &*key : nullptr}), shape, low,
                                         high, lo, hi),
               {resolve_key(key, "uniform")});
}

Array normal(const Shape& shape, Dtype dtype, double loc, double scale,
             const std::optional<Array>& key, StreamOrDevice s) {
  check_float(dtype, "normal");
  check_shape(shape, dtype == Dtype::float64 ? 2 : 1, "normal");
  if (!std::isfinite(loc) || !std::isfinite(scale) || scale < 0)
    raise("[normal] need a finite loc and a finite scale >= 0, got loc {} and scale {}", loc,
          scale);
  return Array(
      shape, dtype,
      std::make_shared<Normal>(resolve_stream(s, {key ? &*key : nullptr}), shape, loc, scale),
      {resolve_key(key, "normal")});
}

Array randint(int64_t low, int64_t high, const Shape& shape, Dtype dtype,
              const std::optional<Array>& key, StreamOrDevice s) {
  if (!is_integral(dtype) || dtype == Dtype::bool_)
    raise("[randint] dtype must be an integer type, got {}", dtype_name(dtype));
  check_shape(shape, 2, "randint");
  if (high <= low) raise("[randint] high ({}) must be greater than low ({})", high, low);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_integral_v<T>) {
      const double mn = static_cast<double>(std::numeric_limits<T>::min());
      const double mx = static_cast<double>(std::numeric_limits<T>::max());
      if (static_cast<double>(low) < mn || static_cast<double>(high - 1) > mx)
        raise("[randint] range [{}, {}) does not fit in {}", low, high, dtype_name(dtype));
    }
  });
  return Array(
      shape, dtype,
      std::make_shared<RandInt>(resolve_stream(s, {key ? &*key : nullptr}), shape, low, high),
      {resolve_key(key, "randint")});
}

Array bernoulli(const Array& p, const Shape& shape, const std::optional<Array>& key,
                StreamOrDevice s) {
  check_shape(shape, 1, "bernoulli");
  if (p.dtype() == Dtype::bool_)
    raise("[bernoulli] p must be numeric, got {}", dtype_name(p.dtype()));
  if (!broadcasts_to(p.shape(), shape))
    raise("[bernoulli] p of shape {} cannot be broadcast to shape {}", shape_str(p.shape()),
          shape_str(shape));
  return Array(shape, Dtype::bool_,
               std::make_shared<Bernoulli>(resolve_stream(s, {key ? &*key : nullptr, &p}), shape),
               {resolve_key(key, "bernoulli"), p});
}

Array gumbel(const Shape& shape, Dtype dtype, const std::optional<Array>& key, StreamOrDevice s) {
  check_float(dtype, "gumbel");
  check_shape(shape, dtype == Dtype::float64 ? 2 : 1, "gumbel");
  return Array(shape, dtype,
               std::make_shared<Gumbel>(resolve_stream(s, {key ? &*key : nullptr}), shape),
               {resolve_key(key, "gumbel")});
}

Array categorical(const Array& logits, int axis, const std::optional<Array>& key,
                  StreamOrDevice s) {
  if (logits.ndim() == 0) raise("[categorical] logits must have at least one axis");
  if (logits.dtype() == Dtype::bool_)
    raise("[categorical] logits must be numeric, got {}", dtype_name(logits.dtype()));
  const int ax = normalize_axis(axis, logits.ndim(), "categorical");
  if (logits.shape()[ax] == 0)
    raise("[categorical] axis {} of logits {} is empty", ax, shape_str(logits.shape()));
  check_shape(logits.shape(), 1, "categorical");
  Shape out = logits.shape();
  out.erase(out.begin() + ax);
  return Array(
      out, Dtype::uint32,
      std::make_shared<Categorical>(resolve_stream(s, {key ? &*key : nullptr, &logits}), out, ax),
      {resolve_key(key, "categorical"), logits});
}

}  // namespace random
}  // namespace ingot
