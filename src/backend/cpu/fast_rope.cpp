// CPU kernel of Rope: a float32 cos/sin table per (batch row, position), then one pass per row
// of x (any layout). 16-bit inputs round exactly where Hugging Face's bf16 rotary code does.
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/common/utils.h"
#include "backend/cpu/fast_kernels.h"
#include "backend/cpu/strided_copy.h"
#include "core/primitives/fast.h"
#include "util/thread_pool.h"

namespace ingot {

using namespace backend;
using namespace backend::fastk;

namespace {

// Rounds to T's precision (identity for float and double); branch-free for bfloat16 so the
// row loops vectorise.
template <typename T, typename A>
inline A rnd(A v) {
  if constexpr (std::is_same_v<T, A> || std::is_same_v<T, float>) {
    return v;
  } else if constexpr (std::is_same_v<T, bfloat16_t>) {
    const uint32_t u = f32_bits(v);
    const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    return bits_f32((u & 0x7fffffffu) > 0x7f800000u ? (u | 0x400000u) & 0xffff0000u : r);
  } else {
    return static_cast<A>(static_cast<float>(T(static_cast<float>(v))));
  }
}

// Inverse frequencies in float32: freqs input, or 1 / base^(2i / dims) as HF computes them.
std::vector<float> inverse_freqs(const Rope& p, const std::vector<Array>& inputs) {
  const int half = p.dims_ / 2;
  std::vector<float> f(half);
  if (p.has_freqs_) {
    const Array& a = inputs.back();
    dispatch_dtype(a.dtype(), [&](auto t) {
      using F = decltype(t);
      gather_row(a.raw_ptr<F>(), a.strides()[0], half, f.data());
    });
  } else {
    for (int i = 0; i < half; ++i)
      f[i] = 1.0f / std::pow(p.base_, static_cast<float>(2 * i) / static_cast<float>(p.dims_));
  }
  return f;
}

// Start position of each batch row (one entry when there are no per-row offsets).
std::vector<int64_t> start_positions(const Rope& p, const std::vector<Array>& inputs) {
  if (!p.has_offsets_) return {p.offset_};
  const Array& o = inputs[1];
  std::vector<int64_t> r(static_cast<size_t>(o.size()));
  const int64_t st = o.ndim() ? o.strides()[0] : 0;
  dispatch_dtype(o.dtype(), [&](auto t) {
    using O = decltype(t);
    const O* ptr = o.raw_ptr<O>();
    for (size_t i = 0; i < r.size(); ++i)
      r[i] = static_cast<int64_t>(ptr[static_cast<int64_t>(i) * st]);
  });
  return r;
}

// Rotates the pairs of one row in place: x * cos + rotate_half(x) * sin, each op rounded to T.
// Pairs are (2i, 2i + 1) when Trad, else (i, i + half); the loop vectorises for the latter.
template <typename T, bool Trad, typename A>
inline void rotate(A* v, const A* c, const A* s, int64_t half) {
  constexpr int64_t step = Trad ? 2 : 1;
  const int64_t second = Trad ? 1 : half;
  for (int64_t i = 0; i < half; ++i) {
    const A x1 = v[i * step], x2 = v[i * step + second];
    v[i * step] = rnd<T>(rnd<T>(x1 * c[i]) + rnd<T>(-x2 * s[i]));
    v[i * step + second] = rnd<T>(rnd<T>(x2 * c[i]) + rnd<T>(x1 * s[i]));
  }
}

template <typename T, typename A>
void rope_impl(const Rope& p, const std::vector<Array>& inputs, Array& out) {
  const Array& x = inputs[0];
  const int64_t D = x.shape(-1), L = x.shape(-2);
  const int64_t half = p.dims_ / 2;
  const int64_t rows = D ? x.size() / D : 0;
  const std::vector<float> inv = inverse_freqs(p, inputs);
  const std::vector<int64_t> starts = start_positions(p, inputs);
  const int64_t nb = static_cast<int64_t>(starts.size());
  const int64_t rows_per_b = nb > 1 ? rows / nb : rows;
  // cos/sin table [nb, L, half], rounded to T as HF's cos.to(x.dtype).
  std::vector<A> cs(static_cast<size_t>(nb * L * half)), sn(cs.size());
  parallel_for(nb * L, std::max<int64_t>(1, 4096 / std::max<int64_t>(half, 1)),
               [&](int64_t b, int64_t e) {
                 for (int64_t t = b; t < e; ++t) {
                   const float pos = static_cast<float>(starts[t / L] + t % L) * p.scale_;
                   for (int64_t i = 0; i < half; ++i) {
                     const float ang = pos * inv[i];
                     cs[t * half + i] = rnd<T, A>(static_cast<A>(std::cos(ang)));
                     sn[t * half + i] = rnd<T, A>(static_cast<A>(std::sin(ang)));
                   }
                 }
               });
  const RowOffsets offs(x);
  const int64_t sx = x.strides().back();
  const T* xp = x.raw_ptr<T>();
  if (x.is_donatable() && x.dtype() == out.dtype())
    out.move_shared_buffer(x);
  else
    alloc_cpu(out);
  if (rows == 0) return;
  T* op = out.raw_ptr<T>();
  const Kernels& k = kernels();
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(D, 1)),
               [&](int64_t b, int64_t e) {
                 std::vector<A> v(static_cast<size_t>(D));
                 for (int64_t r = b; r < e; ++r) {
                   gather_row(xp + offs(r), sx, D, v.data());
                   const int64_t t = (nb > 1 ? r / rows_per_b : 0) * L + r % L;
                   if (p.traditional_)
                     rotate<T, true>(v.data(), cs.data() + t * half, sn.data() + t * half, half);
                   else
                     rotate<T, false>(v.data(), cs.data() + t * half, sn.data() + t * half, half);
                   store_row(k, v.data(), op + r * D, D);
                 }
               });
}

}  // namespace

void Rope::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  switch (out.dtype()) {
    case Dtype::float32:
      return rope_impl<float, float>(*this, inputs, out);
    case Dtype::bfloat16:
      return rope_impl<bfloat16_t, float>(*this, inputs, out);
    case Dtype::float16:
      return rope_impl<float16_t, float>(*this, inputs, out);
    case Dtype::float64:
      return rope_impl<double, double>(*this, inputs, out);
    default:
      raise("[rope] unsupported dtype {}", dtype_name(out.dtype()));
  }
}

}  // namespace ingot

namespace ingot::backend::fastk {

// The separate ops' CPU kernels one after the other on views of qkv (RmsNorm, Rope), then the
// new keys/values copied into the (donated) buffers: the values of the unfused ops exactly.
void rope_kv_update(const RopeKvUpdate& p, const Array& qkv, const Array* q_norm,
                    const Array* k_norm, const std::vector<Array>& rope_params, const Array& keys,
                    const Array& values, const Array& column, Array& q, Array& keys_out,
                    Array& values_out, long holders) {
  const int64_t b = qkv.shape(0), l = qkv.shape(1), d = keys.shape(3), c = keys.shape(2);
  const int64_t h = p.n_heads_, hk = p.n_kv_heads_;
  int64_t col = 0;
  dispatch_dtype(column.dtype(), [&](auto t) {
    using I = decltype(t);
    if constexpr (std::is_integral_v<I>) col = static_cast<int64_t>(*column.raw_ptr<I>());
  });
  if (col < 0 || col + l > c)
    raise("[rope_kv_update] columns [{}, {}) are outside the cache's {} columns", col, col + l, c);
  const std::shared_ptr<Rope> rp = p.rope(static_cast<int>(d));
  // Heads [first, first + count) of qkv as a [B, count, L, D] view.
  const Strides& qs = qkv.strides();
  auto heads = [&](int64_t first, int64_t count) {
    const Shape shape{b, count, l, d};
    const Strides st{qs[0], d * qs[2], qs[1], qs[2]};
    int64_t span = 1;
    for (size_t i = 0; i < shape.size(); ++i) span += (shape[i] - 1) * st[i];
    Array v(shape, qkv.dtype(), rp, {});
    v.copy_shared_buffer(qkv, st, backend::compute_flags(shape, st), span, first * d * qs[2]);
    return v;
  };
  auto norm_rope = [&](Array x, const Array* w, Array& out) {
    if (w) {
      const std::shared_ptr<RmsNorm> np = p.norm();
      Array n(x.shape(), x.dtype(), np, {x, *w});
      np->eval_cpu({x, *w}, n);
      x = n;
    }
    std::vector<Array> rin{x};
    rin.insert(rin.end(), rope_params.begin(), rope_params.end());
    rp->eval_cpu(rin, out);
  };
  norm_rope(heads(0, h), q_norm, q);
  Array k({b, hk, l, d}, qkv.dtype(), rp, {});
  norm_rope(heads(h, hk), k_norm, k);
  const Array v = heads(h + hk, hk);
  backend::copy_or_donate(keys, keys_out, holders);
  backend::copy_or_donate(values, values_out, holders);
  const size_t es = qkv.itemsize();
  char* ko = static_cast<char*>(keys_out.raw_ptr());
  char* vo = static_cast<char*>(values_out.raw_ptr());
  const Strides& ks = k.strides();
  const Strides& vs = v.strides();
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t hi = 0; hi < hk; ++hi)
      for (int64_t li = 0; li < l; ++li) {
        const int64_t dst = ((bi * hk + hi) * c + col + li) * d;
        const char* kr = static_cast<const char*>(k.raw_ptr()) +
                         (bi * ks[0] + hi * ks[1] + li * ks[2]) * static_cast<int64_t>(es);
        const char* vr = static_cast<const char*>(v.raw_ptr()) +
                         (bi * vs[0] + hi * vs[1] + li * vs[2]) * static_cast<int64_t>(es);
        for (int64_t j = 0; j < d; ++j) {
          std::memcpy(ko + (dst + j) * es, kr + j * ks[3] * static_cast<int64_t>(es), es);
          std::memcpy(vo + (dst + j) * es, vr + j * vs[3] * static_cast<int64_t>(es), es);
        }
      }
}

}  // namespace ingot::backend::fastk

namespace ingot {

// rope_kv_update's kernels, then the attention's over the updated buffers (the values of
// ref::rope_kv_attention exactly).
void RopeKvAttention::eval_cpu(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const size_t n = kv_inputs(inputs.size());
  const bool norm = kv_->has_norm_;
  const std::vector<Array> rope_params(inputs.begin() + (norm ? 3 : 1),
                                       inputs.begin() + static_cast<long>(n) - 3);
  const Array& qkv = inputs[0];
  const Array& keys = inputs[n - 3];
  Array q({qkv.shape(0), kv_->n_heads_, qkv.shape(1), keys.shape(3)}, qkv.dtype(), kv_, {});
  // Each of the three outputs holds the inputs: the buffers are free when held only so.
  fastk::rope_kv_update(*kv_, qkv, norm ? &inputs[1] : nullptr, norm ? &inputs[2] : nullptr,
                        rope_params, keys, inputs[n - 2], inputs[n - 1], q, outputs[1], outputs[2],
                        static_cast<long>(outputs.size()));
  std::vector<Array> ain{q, outputs[1], outputs[2]};
  if (n < inputs.size()) ain.push_back(inputs.back());
  attention()->eval_cpu(ain, outputs[0]);
}

void RopeKvUpdate::eval_cpu(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const std::vector<Array> rope_params(inputs.begin() + (has_norm_ ? 3 : 1), inputs.end() - 3);
  // Each of the three outputs holds the inputs: the buffers are free when held only so.
  fastk::rope_kv_update(*this, inputs[0], has_norm_ ? &inputs[1] : nullptr,
                        has_norm_ ? &inputs[2] : nullptr, rope_params, inputs[inputs.size() - 3],
                        inputs[inputs.size() - 2], inputs.back(), outputs[0], outputs[1],
                        outputs[2], static_cast<long>(outputs.size()));
}

}  // namespace ingot
