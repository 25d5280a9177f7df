// CPU kernel of PagedAttention: the new keys/values are copied into the (donated) pools, then
// each task (row, KV head, query) runs an online softmax over the row's positions read block by
// block through its table, for the G query heads sharing the KV head (keys and values read once
// per task). float32 compute reads keys/values in their storage type through the direct
// attention loops of fast_kernels (4 query rows at a time); float64 uses plain loops.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/fast_kernels.h"
#include "backend/cpu/strided_copy.h"
#include "core/primitives/paged_attention.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace ingot {

using namespace backend;
using namespace backend::fastk;

namespace {

constexpr int64_t kChunk = 256;  // keys per softmax update (bounds the scratch)

struct Geometry {
  int64_t B, H, L, D, Hkv, G, N, P, M;
  std::vector<int32_t> table;  // [B, M]
  std::vector<int32_t> pos;    // [B]
  std::vector<int32_t> pad;    // [B] padding queries at the front of each row
  // Query i of row b: its position, or -1 for a padding query.
  int64_t qpos(int64_t b, int64_t i) const {
    const int64_t p = pos[static_cast<size_t>(b)] + i;
    return i < pad[static_cast<size_t>(b)] || p < 0 ? -1 : p;
  }
};

// Element (i, j) of a 2-d or 1-d int32 array (any strides).
int32_t at(const Array& a, int64_t i, int64_t j = 0) {
  const int32_t* p = a.raw_ptr<int32_t>();
  return a.ndim() == 1 ? p[i * a.strides()[0]] : p[i * a.strides()[0] + j * a.strides()[1]];
}

// Offset (elements) of position t of row b in a pool, head hk, dimension 0.
inline int64_t slot(const Geometry& g, int64_t b, int64_t hk, int64_t t) {
  const int64_t blk = g.table[static_cast<size_t>(b * g.M + t / g.P)];
  return ((blk * g.Hkv + hk) * g.P + t % g.P) * g.D;
}

// Copies the new keys (or values) [B, Hkv, L, D] into their slots of the pool `out`.
template <typename T>
void write_new(const Geometry& g, const Array& src, T* out) {
  const T* s = src.raw_ptr<T>();
  const Strides& st = src.strides();
  parallel_for(g.B * g.L, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / g.L, i = r % g.L, p = g.qpos(b, i);
      if (p < 0) continue;
      for (int64_t hk = 0; hk < g.Hkv; ++hk) {
        const T* from = s + b * st[0] + hk * st[1] + i * st[2];
        T* to = out + slot(g, b, hk, p);
        for (int64_t d = 0; d < g.D; ++d) to[d] = from[d * st[3]];
      }
    }
  });
}

// One task in float32 compute: query i of row b, the G heads of KV head hk.
template <typename T>
void task_f32(const PagedAttention& prim, const Geometry& g, const Kernels& kn, SrcKind kind,
              const Array& q, const T* kp, const T* vp, T* out, int64_t b, int64_t hk, int64_t i,
              std::vector<float>& qs, std::vector<float>& s, std::vector<float>& acc) {
  const int64_t G = g.G, D = g.D;
  const int64_t p = g.qpos(b, i);
  T* o = out;  // [B, H, L, D] row-major
  auto out_row = [&](int64_t r) { return o + ((b * g.H + hk * G + r) * g.L + i) * D; };
  if (p < 0) {
    for (int64_t r = 0; r < G; ++r) std::fill(out_row(r), out_row(r) + D, T(0.0f));
    return;
  }
  const Strides& qst = q.strides();
  const T* qb = q.raw_ptr<T>();
  for (int64_t r = 0; r < G; ++r)
    for (int64_t d = 0; d < D; ++d)
      qs[static_cast<size_t>(r * D + d)] =
          static_cast<float>(qb[b * qst[0] + (hk * G + r) * qst[1] + i * qst[2] + d * qst[3]]);
  std::fill(acc.begin(), acc.begin() + G * D, 0.0f);
  std::vector<float> m(static_cast<size_t>(G), -std::numeric_limits<float>::infinity());
  std::vector<float> l(static_cast<size_t>(G), 0.0f);
  const int64_t lo = prim.window_ > 0 ? std::max<int64_t>(0, p - prim.window_ + 1) : 0;
  const float scale = prim.scale_, cap = prim.softcap_;
  struct Run {
    int64_t off, at, n;  // pool offset, index in the chunk, positions
  };
  Run runs[kChunk];
  for (int64_t t = lo; t <= p;) {
    // Up to kChunk positions, as runs inside blocks (contiguous rows of D in the pool): their
    // scores first, then one softmax update and the p.v products.
    int64_t nr = 0, n = 0;
    while (t <= p && n < kChunk) {
      const int64_t len = std::min({g.P - t % g.P, p + 1 - t, kChunk - n});
      runs[nr++] = {slot(g, b, hk, t), n, len};
      n += len;
      t += len;
    }
    for (int64_t k = 0; k < nr; ++k)
      for (int64_t r0 = 0; r0 < G; r0 += 4) {
        const int rows = static_cast<int>(std::min<int64_t>(4, G - r0));
        kn.qk_direct[static_cast<int>(kind)](qs.data() + r0 * D, D, rows, kp + runs[k].off, D,
                                             runs[k].n, D, s.data() + r0 * kChunk + runs[k].at,
                                             kChunk);
      }
    for (int64_t r = 0; r < G; ++r) {
      float* sr = s.data() + r * kChunk;
      float mx = m[static_cast<size_t>(r)];
      for (int64_t j = 0; j < n; ++j) {
        float x = sr[j] * scale;
        if (cap > 0.0f) x = std::tanh(x / cap) * cap;
        sr[j] = x;
        mx = std::max(mx, x);
      }
      const float corr = std::exp(m[static_cast<size_t>(r)] - mx);  // exp(-inf) = 0 at first
      float* ar = acc.data() + r * D;
      if (corr != 1.0f)
        for (int64_t d = 0; d < D; ++d) ar[d] *= corr;
      l[static_cast<size_t>(r)] = l[static_cast<size_t>(r)] * corr + kn.exp_sub_sum(sr, n, mx);
      m[static_cast<size_t>(r)] = mx;
    }
    for (int64_t k = 0; k < nr; ++k)
      for (int64_t r0 = 0; r0 < G; r0 += 4) {
        const int rows = static_cast<int>(std::min<int64_t>(4, G - r0));
        kn.pv_direct[static_cast<int>(kind)](s.data() + r0 * kChunk + runs[k].at, kChunk, rows,
                                             vp + runs[k].off, D, runs[k].n, D, acc.data() + r0 * D,
                                             D);
      }
  }
  for (int64_t r = 0; r < G; ++r) {
    float* ar = acc.data() + r * D;
    // NaN: a NaN score (e.g. a NaN query) makes the row NaN, as in torch.
    const float lr = l[static_cast<size_t>(r)];
    const float inv = std::isnan(lr) ? lr : (lr > 0.0f ? 1.0f / lr : 0.0f);
    for (int64_t d = 0; d < D; ++d) ar[d] *= inv;
    store_row(kn, ar, out_row(r), D);
  }
}

// Prefill chunks (many query rows per KV head): a task takes up to kRows rows (the G heads of
// kRows / G queries); each tile of kTile positions is converted once to float32 key panels
// ([D][16]) and value rows for the register-tiled q.k and p.v loops, shared by all the rows.
constexpr int64_t kTile = 64;
constexpr int64_t kRows = 64;

struct TileScratch {
  std::vector<float> q, acc, s, kp, vf, m, l;
  std::vector<int64_t> pos;
  TileScratch(int64_t R, int64_t D, int64_t Dp)
      : q(static_cast<size_t>(R * D)),
        acc(static_cast<size_t>(R * Dp)),
        s(static_cast<size_t>(R * kTile)),
        kp(static_cast<size_t>(kTile * D)),
        vf(static_cast<size_t>(kTile * Dp)),
        m(static_cast<size_t>(R)),
        l(static_cast<size_t>(R)),
        pos(static_cast<size_t>(R)) {}
};

// Queries [i0, i0 + nq) of row b, the G heads of KV head hk (row r = query * G + head).
template <typename T>
void task_tiled(const PagedAttention& prim, const Geometry& g, const Kernels& kn, const Array& q,
                const T* kp, const T* vp, T* out, int64_t b, int64_t hk, int64_t i0, int64_t nq,
                TileScratch& sc) {
  const int64_t G = g.G, D = g.D, Dp = (D + 15) / 16 * 16, R = G * nq;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const float scale = prim.scale_, cap = prim.softcap_;
  const Strides& qst = q.strides();
  const T* qb = q.raw_ptr<T>();
  int64_t lo_all = std::numeric_limits<int64_t>::max(), hi_all = -1;
  for (int64_t r = 0; r < R; ++r) {
    const int64_t i = i0 + r / G, h = hk * G + r % G, p = g.qpos(b, i);
    sc.pos[static_cast<size_t>(r)] = p;
    sc.m[static_cast<size_t>(r)] = neg_inf;
    sc.l[static_cast<size_t>(r)] = 0.0f;
    float* qr = sc.q.data() + r * D;
    for (int64_t d = 0; d < D; ++d)
      qr[d] = static_cast<float>(qb[b * qst[0] + h * qst[1] + i * qst[2] + d * qst[3]]);
    if (p < 0) continue;
    lo_all = std::min(lo_all, prim.window_ > 0 ? std::max<int64_t>(0, p - prim.window_ + 1) : 0);
    hi_all = std::max(hi_all, p);
  }
  std::fill(sc.acc.begin(), sc.acc.begin() + R * Dp, 0.0f);
  for (int64_t t0 = lo_all; t0 <= hi_all; t0 += kTile) {
    const int64_t nk = std::min(kTile, hi_all + 1 - t0), npanel = (nk + 15) / 16;
    std::fill(sc.kp.begin(), sc.kp.begin() + npanel * 16 * D, 0.0f);
    for (int64_t jj = 0; jj < nk; ++jj) {
      const int64_t off = slot(g, b, hk, t0 + jj);
      float* panel = sc.kp.data() + (jj / 16) * 16 * D + jj % 16;
      for (int64_t d = 0; d < D; ++d) panel[d * 16] = static_cast<float>(kp[off + d]);
      float* vr = sc.vf.data() + jj * Dp;
      for (int64_t d = 0; d < D; ++d) vr[d] = static_cast<float>(vp[off + d]);
      std::fill(vr + D, vr + Dp, 0.0f);
    }
    for (int64_t r0 = 0; r0 < R; r0 += 4) {
      const int rows = static_cast<int>(std::min<int64_t>(4, R - r0));
      for (int64_t pn = 0; pn < npanel; ++pn)
        kn.qk_tile(sc.q.data() + r0 * D, D, rows, sc.kp.data() + pn * 16 * D, D,
                   sc.s.data() + r0 * kTile + pn * 16, kTile);
    }
    for (int64_t r = 0; r < R; ++r) {
      float* sr = sc.s.data() + r * kTile;
      const int64_t p = sc.pos[static_cast<size_t>(r)];
      const int64_t lo = prim.window_ > 0 ? p - prim.window_ + 1 : 0;
      float& m = sc.m[static_cast<size_t>(r)];
      float mx = m;
      for (int64_t jj = 0; jj < nk; ++jj) {
        const int64_t t = t0 + jj;
        float x = neg_inf;
        if (p >= 0 && t <= p && t >= lo) {
          x = sr[jj] * scale;
          if (cap > 0.0f) x = std::tanh(x / cap) * cap;
        }
        sr[jj] = x;
        mx = std::max(mx, x);
      }
      if (mx == neg_inf) {  // nothing visible yet: no contribution, unless a score is NaN
        for (int64_t jj = 0; jj < nk; ++jj)
          if (std::isnan(sr[jj])) sc.l[static_cast<size_t>(r)] = std::nanf("");
        std::fill(sr, sr + nk, 0.0f);
        continue;
      }
      const float corr = m == neg_inf ? 0.0f : std::exp(m - mx);
      sc.l[static_cast<size_t>(r)] =
          sc.l[static_cast<size_t>(r)] * corr + kn.exp_sub_sum(sr, nk, mx);
      m = mx;
      if (corr != 1.0f) {
        float* ar = sc.acc.data() + r * Dp;
        for (int64_t d = 0; d < Dp; ++d) ar[d] *= corr;
      }
    }
    for (int64_t r0 = 0; r0 < R; r0 += 4) {
      const int rows = static_cast<int>(std::min<int64_t>(4, R - r0));
      kn.pv_tile(sc.s.data() + r0 * kTile, kTile, rows, sc.vf.data(), Dp, nk, Dp,
                 sc.acc.data() + r0 * Dp, Dp);
    }
  }
  for (int64_t r = 0; r < R; ++r) {
    const int64_t i = i0 + r / G, h = hk * G + r % G;
    T* o = out + ((b * g.H + h) * g.L + i) * D;
    float* ar = sc.acc.data() + r * Dp;
    const float l = sc.l[static_cast<size_t>(r)];
    const float inv = sc.pos[static_cast<size_t>(r)] < 0 ? 0.0f
                      : std::isnan(l)                    ? l
                      : l > 0.0f                         ? 1.0f / l
                                                         : 0.0f;
    for (int64_t d = 0; d < D; ++d) ar[d] *= inv;
    store_row(kn, ar, o, D);
  }
}

// float64: plain loops (the reference precision).
void task_f64(const PagedAttention& prim, const Geometry& g, const Array& q, const double* kp,
              const double* vp, double* out, int64_t b, int64_t hk, int64_t i) {
  const int64_t G = g.G, D = g.D;
  const int64_t p = g.qpos(b, i);
  const Strides& qst = q.strides();
  const double* qb = q.raw_ptr<double>();
  const int64_t lo = prim.window_ > 0 ? std::max<int64_t>(0, p - prim.window_ + 1) : 0;
  for (int64_t r = 0; r < G; ++r) {
    double* o = out + ((b * g.H + hk * G + r) * g.L + i) * D;
    std::fill(o, o + D, 0.0);
    if (p < 0) continue;
    const double* qr = qb + b * qst[0] + (hk * G + r) * qst[1] + i * qst[2];
    std::vector<double> sc(static_cast<size_t>(p + 1 - lo));
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t t = lo; t <= p; ++t) {
      const double* kr = kp + slot(g, b, hk, t);
      double x = 0;
      for (int64_t d = 0; d < D; ++d) x += qr[d * qst[3]] * kr[d];
      x *= static_cast<double>(prim.scale_);
      if (prim.softcap_ > 0.0f) {
        const double cap = static_cast<double>(prim.softcap_);
        x = std::tanh(x / cap) * cap;
      }
      sc[static_cast<size_t>(t - lo)] = x;
      mx = std::max(mx, x);
    }
    double sum = 0;
    for (double& x : sc) sum += (x = std::exp(x - mx));
    for (int64_t t = lo; t <= p; ++t) {
      const double w = sc[static_cast<size_t>(t - lo)] / sum;
      const double* vr = vp + slot(g, b, hk, t);
      for (int64_t d = 0; d < D; ++d) o[d] += w * vr[d];
    }
  }
}

template <typename T>
void run(const PagedAttention& prim, const std::vector<Array>& inputs,
         std::vector<Array>& outputs) {
  const Array &q = inputs[0], &k = inputs[1], &v = inputs[2];
  const Array &table = inputs[5], &qpos = inputs[6];
  Geometry g;
  g.B = q.shape(0), g.H = q.shape(1), g.L = q.shape(2), g.D = q.shape(3);
  g.Hkv = k.shape(1), g.G = g.H / g.Hkv;
  g.N = inputs[3].shape(0), g.P = inputs[3].shape(2), g.M = table.shape(1);
  g.table.resize(static_cast<size_t>(g.B * g.M));
  g.pos.resize(static_cast<size_t>(g.B));
  g.pad.assign(static_cast<size_t>(g.B), 0);
  for (int64_t b = 0; b < g.B; ++b) {
    g.pos[static_cast<size_t>(b)] = at(qpos, b);
    if (prim.has_padding_) g.pad[static_cast<size_t>(b)] = at(inputs[7], b);
    for (int64_t j = 0; j < g.M; ++j) g.table[static_cast<size_t>(b * g.M + j)] = at(table, b, j);
    // Every position a query of this row reads or writes must be in a valid block.
    int64_t first = -1;
    for (int64_t i = 0; i < g.L && first < 0; ++i) first = g.qpos(b, i);
    if (first < 0) continue;
    const int64_t last = g.qpos(b, g.L - 1);
    if (last / g.P >= g.M)
      raise("[paged_attention] row {} reaches position {}, beyond its table of {} blocks of {}", b,
            last, g.M, g.P);
    const int64_t lo = prim.window_ > 0 ? std::max<int64_t>(0, first - prim.window_ + 1) : 0;
    for (int64_t j = lo / g.P; j <= last / g.P; ++j) {
      const int32_t blk = g.table[static_cast<size_t>(b * g.M + j)];
      if (blk < 0 || blk >= g.N)
        raise("[paged_attention] row {} block {} is {}, outside the pool of {} blocks", b, j, blk,
              g.N);
    }
  }
  // Three outputs hold the inputs: the pools are free to donate when held only so.
  const long holders = static_cast<long>(outputs.size());
  copy_or_donate(inputs[3], outputs[1], holders);
  copy_or_donate(inputs[4], outputs[2], holders);
  T* kp = outputs[1].raw_ptr<T>();
  T* vp = outputs[2].raw_ptr<T>();
  write_new<T>(g, k, kp);
  write_new<T>(g, v, vp);
  Array& o = outputs[0];
  alloc_cpu(o);
  if (o.size() == 0) return;
  T* op = o.raw_ptr<T>();
  const int64_t tasks = g.B * g.Hkv * g.L;
  if constexpr (std::is_same_v<T, double>) {
    parallel_for(tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        task_f64(prim, g, q, kp, vp, op, t / (g.Hkv * g.L), (t / g.L) % g.Hkv, t % g.L);
    });
  } else {
    const SrcKind kind = std::is_same_v<T, bfloat16_t>  ? SrcKind::bf16
                         : std::is_same_v<T, float16_t> ? SrcKind::f16
                                                        : SrcKind::f32;
    const Kernels& kn = kernels();
    const int64_t lt = std::max<int64_t>(1, kRows / g.G);  // queries per tiled task
    if (g.G * std::min(lt, g.L) > 8) {  // prefill chunks: tiles shared by many rows
      const int64_t ntiles = (g.L + lt - 1) / lt;
      parallel_for(g.B * g.Hkv * ntiles, 1, [&](int64_t t0, int64_t t1) {
        TileScratch sc(g.G * std::min(lt, g.L), g.D, (g.D + 15) / 16 * 16);
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t tile = t % ntiles, bh = t / ntiles, i0 = tile * lt;
          task_tiled<T>(prim, g, kn, q, kp, vp, op, bh / g.Hkv, bh % g.Hkv, i0,
                        std::min(lt, g.L - i0), sc);
        }
      });
      return;
    }
    parallel_for(tasks, 1, [&](int64_t t0, int64_t t1) {
      std::vector<float> qs(static_cast<size_t>(g.G * g.D)), s(static_cast<size_t>(g.G * kChunk)),
          acc(static_cast<size_t>(g.G * g.D));
      for (int64_t t = t0; t < t1; ++t)
        task_f32<T>(prim, g, kn, kind, q, kp, vp, op, t / (g.Hkv * g.L), (t / g.L) % g.Hkv, t % g.L,
                    qs, s, acc);
    });
  }
}

}  // namespace

void PagedAttention::eval_cpu(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  switch (inputs[0].dtype()) {
    case Dtype::float32:
      return run<float>(*this, inputs, outputs);
    case Dtype::bfloat16:
      return run<bfloat16_t>(*this, inputs, outputs);
    case Dtype::float16:
      return run<float16_t>(*this, inputs, outputs);
    case Dtype::float64:
      return run<double>(*this, inputs, outputs);
    default:
      raise("[paged_attention] unsupported dtype {}", dtype_name(inputs[0].dtype()));
  }
}

}  // namespace ingot
