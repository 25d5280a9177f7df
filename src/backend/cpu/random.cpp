// CPU kernels of the random primitives: generate the key's Threefry word stream, then map
// words to values (16-bit floats computed in float/double and rounded once).
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "backend/common/utils.h"
#include "backend/cpu/gemm_kernels.h"
#include "backend/cpu/strided_copy.h"
#include "core/cast.h"
#include "core/primitives/random.h"
#include "util/thread_pool.h"

namespace ingot {

namespace {

using backend::alloc_cpu;

constexpr int64_t kPairGrain = 1 << 13;
constexpr int64_t kElemGrain = 1 << 14;
constexpr double k2pow24 = 16777216.0;
constexpr double k2pow32 = 4294967296.0;

std::pair<uint32_t, uint32_t> read_key(const Array& k) {
  const uint32_t* p = k.raw_ptr<uint32_t>();
  return {p[0], p[k.strides()[0]]};
}

// The same loop compiled for wider vectors (threefry_words vectorises over counters).
using WordsFn = void (*)(uint32_t, uint32_t, int64_t, int64_t, int64_t, uint32_t*);
__attribute__((target("avx2"))) void words_avx2(uint32_t k0, uint32_t k1, int64_t b, int64_t e,
                                                int64_t m, uint32_t* out) {
  threefry_words(k0, k1, b, e, m, out);
}
__attribute__((target("avx512f"))) void words_avx512(uint32_t k0, uint32_t k1, int64_t b, int64_t e,
                                                     int64_t m, uint32_t* out) {
  threefry_words(k0, k1, b, e, m, out);
}
void words_portable(uint32_t k0, uint32_t k1, int64_t b, int64_t e, int64_t m, uint32_t* out) {
  threefry_words(k0, k1, b, e, m, out);
}

/// Fills out[0, m) with the key's word stream.
void fill_words(const Array& key, uint32_t* out, int64_t m) {
  // Plain variables, not structured bindings: clang 14 cannot capture bindings in lambdas.
  const auto key_words = read_key(key);
  const uint32_t k0 = key_words.first, k1 = key_words.second;
  const cpu::Isa isa = cpu::active_isa();
  const WordsFn fn = isa == cpu::Isa::avx512 ? words_avx512
                     : isa == cpu::Isa::avx2 ? words_avx2
                                             : words_portable;
  parallel_for((m + 1) / 2, kPairGrain, [&](int64_t b, int64_t e) { fn(k0, k1, b, e, m, out); });
}

/// The key's first m words (uninitialised storage: every word is written).
std::unique_ptr<uint32_t[]> make_words(const Array& key, int64_t m) {
  std::unique_ptr<uint32_t[]> w(new uint32_t[static_cast<size_t>(std::max<int64_t>(m, 1))]);
  fill_words(key, w.get(), m);
  return w;
}

/// Calls f(i) for every element index in parallel.
template <typename F>
void for_each_elem(int64_t n, F&& f) {
  parallel_for(n, kElemGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) f(i);
  });
}

/// 53-bit integer from two words.
inline uint64_t bits53(uint32_t w0, uint32_t w1) {
  return ((static_cast<uint64_t>(w0) << 32) | w1) >> 11;
}

/// erfinv for |x| < 1 in single precision (M. Giles, "Approximating the erfinv function",
/// GPU Computing Gems, 2011).
inline float erfinv_f(float x) {
  float w = -std::log((1.0f - x) * (1.0f + x));
  float p;
  if (w < 5.0f) {
    w -= 2.5f;
    p = 2.81022636e-08f;
    p = 3.43273939e-07f + p * w;
    p = -3.5233877e-06f + p * w;
    p = -4.39150654e-06f + p * w;
    p = 0.00021858087f + p * w;
    p = -0.00125372503f + p * w;
    p = -0.00417768164f + p * w;
    p = 0.246640727f + p * w;
    p = 1.50140941f + p * w;
  } else {
    w = std::sqrt(w) - 3.0f;
    p = -0.000200214257f;
    p = 0.000100950558f + p * w;
    p = 0.00134934322f + p * w;
    p = -0.00367342844f + p * w;
    p = 0.00573950773f + p * w;
    p = -0.0076224613f + p * w;
    p = 0.00943887047f + p * w;
    p = 1.00167406f + p * w;
    p = 2.83297682f + p * w;
  }
  return p * x;
}

/// Runs f(T{}) for the floating output dtype of `out`.
template <typename F>
void dispatch_float(Dtype t, F&& f) {
  switch (t) {
    case Dtype::float16:
      return f(float16_t{});
    case Dtype::bfloat16:
      return f(bfloat16_t{});
    case Dtype::float64:
      return f(double{});
    default:
      return f(float{});
  }
}

}  // namespace

void RandomBits::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  alloc_cpu(out);
  fill_words(inputs[0], out.raw_ptr<uint32_t>(), out.size());
}

void Uniform::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  alloc_cpu(out);
  const int64_t n = out.size();
  dispatch_float(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* o = out.raw_ptr<T>();
    if constexpr (std::is_same_v<T, double>) {
      const auto w = make_words(inputs[0], 2 * n);
      for_each_elem(n, [&](int64_t i) {
        const double u = static_cast<double>(bits53(w[2 * i], w[2 * i + 1])) * 0x1p-53;
        o[i] = std::clamp(low_ + u * (high_ - low_), lo_, hi_);
      });
    } else {
      // In float: lo_/hi_ are values of T, so clamping before the (monotonic) rounding to T
      // keeps every result inside [low, high).
      const auto w = make_words(inputs[0], n);
      const float low = static_cast<float>(low_), range = static_cast<float>(high_ - low_);
      const float lo = static_cast<float>(lo_), hi = static_cast<float>(hi_);
      parallel_for(n, kElemGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          const float u = static_cast<float>(static_cast<int32_t>(w[i] >> 8)) * 0x1p-24f;
          o[i] = cast_value<T>(std::min(std::max(low + u * range, lo), hi));
        }
      });
    }
  });
}

void Normal::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  alloc_cpu(out);
  const int64_t n = out.size();
  dispatch_float(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* o = out.raw_ptr<T>();
    if constexpr (std::is_same_v<T, double>) {
      const auto w = make_words(inputs[0], 2 * n);
      for_each_elem(n, [&](int64_t i) {
        const double u1 = (static_cast<double>(w[2 * i]) + 0.5) / k2pow32;  // (0, 1)
        const double u2 = static_cast<double>(w[2 * i + 1]) / k2pow32;
        const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
        o[i] = loc_ + scale_ * z;
      });
    } else {
      const auto w = make_words(inputs[0], n);
      const float sqrt2 = 1.41421356237309505f;
      for_each_elem(n, [&](int64_t i) {
        // (2k + 1) / 2^24 - 1 for k in [0, 2^24): symmetric, never +-1, exact in float.
        const float u =
            static_cast<float>((2.0 * static_cast<double>(w[i] >> 8) + 1.0) / k2pow24 - 1.0);
        const float z = sqrt2 * erfinv_f(u);
        o[i] = cast_value<T>(loc_ + scale_ * static_cast<double>(z));
      });
    }
  });
}

void RandInt::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  alloc_cpu(out);
  const int64_t n = out.size();
  const auto w = make_words(inputs[0], 2 * n);
  const uint64_t range = static_cast<uint64_t>(high_) - static_cast<uint64_t>(low_);
  const uint64_t base = static_cast<uint64_t>(low_);
  dispatch_dtype(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      T* o = out.raw_ptr<T>();
      for_each_elem(n, [&](int64_t i) {
        const uint64_t x = (static_cast<uint64_t>(w[2 * i]) << 32) | w[2 * i + 1];
        o[i] = static_cast<T>(static_cast<int64_t>(base + x % range));
      });
    }
  });
}

void Bernoulli::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  alloc_cpu(out);
  const Array& p = inputs[1];
  const int64_t n = out.size();
  if (n == 0) return;
  const auto w = make_words(inputs[0], n);
  bool* o = out.raw_ptr<bool>();
  backend::StridedRuns runs(out.shape(),
                            {out.strides(), backend::broadcast_strides(p, out.shape())});
  const int64_t len = runs.run_length();
  dispatch_dtype(p.dtype(), [&](auto tag) {
    using P = decltype(tag);
    const P* pp = p.raw_ptr<P>();
    const int64_t* st = runs.inner_strides().data();
    parallel_for(
        runs.num_runs(), std::max<int64_t>(1, kElemGrain / len), [&](int64_t b, int64_t e) {
          runs.for_runs(b, e, [&](const int64_t* off, int64_t m) {
            for (int64_t i = 0; i < m; ++i) {
              const int64_t k = off[0] + i * st[0];
              o[k] =
                  static_cast<double>(w[k]) / k2pow32 < cast_value<double>(pp[off[1] + i * st[1]]);
            }
          });
        });
  });
}

void Gumbel::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  alloc_cpu(out);
  const int64_t n = out.size();
  dispatch_float(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    constexpr bool wide = std::is_same_v<T, double>;
    const auto w = make_words(inputs[0], wide ? 2 * n : n);
    T* o = out.raw_ptr<T>();
    for_each_elem(n, [&](int64_t i) {
      double u;  // in (0, 1)
      if constexpr (wide)
        u = (static_cast<double>(bits53(w[2 * i], w[2 * i + 1])) + 0.5) * 0x1p-53;
      else
        u = (static_cast<double>(w[i] >> 8) + 0.5) / k2pow24;
      o[i] = cast_value<T>(-std::log(-std::log(u)));
    });
  });
}

void Categorical::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  alloc_cpu(out);
  const Array& logits = inputs[1];
  const Shape& sh = logits.shape();
  const int64_t N = sh[axis_];
  int64_t O = 1, K = 1;
  for (int d = 0; d < axis_; ++d) O *= sh[d];
  for (size_t d = axis_ + 1; d < sh.size(); ++d) K *= sh[d];
  if (out.size() == 0) return;
  std::vector<double> l(static_cast<size_t>(logits.size()));
  backend::copy_array(logits, l.data(), Dtype::float64);
  const auto w = make_words(inputs[0], logits.size());
  uint32_t* o = out.raw_ptr<uint32_t>();
  parallel_for(O * K, std::max<int64_t>(1, kElemGrain / N), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t base = (r / K) * N * K + r % K;
      double best = -std::numeric_limits<double>::infinity();
      uint32_t arg = 0;
      for (int64_t j = 0; j < N; ++j) {
        const int64_t k = base + j * K;
        const double u = (static_cast<double>(w[k]) + 0.5) / k2pow32;
        const double v = l[k] - std::log(-std::log(u));
        if (v > best) {
          best = v;
          arg = static_cast<uint32_t>(j);
        }
      }
      o[r] = arg;
    }
  });
}

}  // namespace ingot
