// CPU kernel of ScaledDotProductAttention: flash-style online softmax over key blocks. Each
// task is one (batch, KV head, query block); the G query heads sharing a KV head are processed
// together so K and V are read once per task. Keys are converted to float32 panels of 16
// ([D][16]) for a 4x16 register-tiled q.k, values to float32 rows for the p.v update.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include "backend/cpu/fast_kernels.h"
#include "core/primitives/fast.h"
#include "util/thread_pool.h"

namespace ingot {

using namespace backend;
using namespace backend::fastk;

namespace {

constexpr int64_t kBk = 64;  // keys per block (a multiple of 16)
// Keys per block of the direct loops (K and V read in place): long runs, so that their software
// prefetch ahead of the rows being read stays inside the run.
constexpr int64_t kBkDirect = 256;
constexpr int64_t kRows = 64;  // target query rows per task

// The tile loops in the compute type: float32 through the SIMD table, float64 portable.
template <typename A>
struct Tiles;

template <>
struct Tiles<float> {
  const Kernels& k;
  void qk(const float* q, int64_t ldq, int rows, const float* kp, int64_t D, float* s,
          int64_t lds) const {
    k.qk_tile(q, ldq, rows, kp, D, s, lds);
  }
  void pv(const float* p, int64_t ldp, int rows, const float* v, int64_t ldv, int64_t nk,
          int64_t Dp, float* acc, int64_t lda) const {
    k.pv_tile(p, ldp, rows, v, ldv, nk, Dp, acc, lda);
  }
  float exp_sum(float* x, int64_t n, float m) const { return k.exp_sub_sum(x, n, m); }
};

template <>
struct Tiles<double> {
  const Kernels& k;
  void qk(const double* q, int64_t ldq, int rows, const double* kp, int64_t D, double* s,
          int64_t lds) const {
    for (int r = 0; r < rows; ++r)
      for (int j = 0; j < 16; ++j) {
        double acc = 0;
        for (int64_t d = 0; d < D; ++d) acc += q[r * ldq + d] * kp[d * 16 + j];
        s[r * lds + j] = acc;
      }
  }
  void pv(const double* p, int64_t ldp, int rows, const double* v, int64_t ldv, int64_t nk,
          int64_t Dp, double* acc, int64_t lda) const {
    for (int r = 0; r < rows; ++r)
      for (int64_t j = 0; j < nk; ++j)
        for (int64_t d = 0; d < Dp; ++d) acc[r * lda + d] += p[r * ldp + j] * v[j * ldv + d];
  }
  double exp_sum(double* x, int64_t n, double m) const {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += (x[i] = std::exp(x[i] - m));
    return s;
  }
};

// Strided 4-d view of an input.
struct View4 {
  const void* p;
  int64_t st[4];
  Dtype dtype;
  explicit View4(const Array& a) : p(a.raw_ptr()), dtype(a.dtype()) {
    for (int d = 0; d < 4; ++d) st[d] = a.strides()[d];
  }
};

// Loads n elements of a strided row (start offset `off`, stride `s`) as A.
template <typename A>
void load(const View4& v, int64_t off, int64_t s, int64_t n, A* dst) {
  dispatch_dtype(v.dtype, [&](auto t) {
    using T = decltype(t);
    gather_row(static_cast<const T*>(v.p) + off, s, n, dst);
  });
}

template <typename A>
struct Problem {
  const ScaledDotProductAttention& prim;
  View4 q, k, v;
  std::optional<View4> mask;  // strides broadcast to [B, H, L, S]
  int64_t B, H, L, D, Hkv, S, Dv, G, Dp, Lb;
  /// SrcKind of K/V for the direct (no conversion) loops of few-row tasks, or -1.
  int direct = -1;
  /// Keys per block (the row stride of the scores): kBk, or kBkDirect with the direct loops.
  int64_t bk = kBk;
};

// Address of element `off` of a view.
inline const void* elem(const View4& v, int64_t off) {
  return static_cast<const char*>(v.p) + off * static_cast<int64_t>(size_of(v.dtype));
}

// Per-thread scratch.
template <typename A>
struct Scratch {
  std::vector<A> q, acc, s, kp, vf, row, m, l, mrow;
  Scratch(int64_t R, int64_t D, int64_t Dp, int64_t bk, bool direct) {
    q.resize(R * D);
    acc.resize(R * Dp);
    s.resize(R * bk);
    if (!direct) {
      kp.resize(bk * D);
      vf.resize(bk * Dp);
      row.resize(std::max(D, Dp));
    }
    m.resize(R);
    l.resize(R);
    mrow.resize(bk);
  }
};

// One task: KV head hk of batch b, query rows l0 .. l0 + nl of the G heads sharing it.
struct Task {
  int64_t b, hk, l0, nl, R;  // R = G * nl rows; row r = g * nl + (l - l0)
  int64_t head(int64_t r, int64_t G) const { return hk * G + r / nl; }
  int64_t pos(int64_t r) const { return l0 + r % nl; }
};

// Raw scores s[r][jj] = q_r . k_{j0 + jj} (q pre-scaled) for the task's rows.
template <typename A>
void block_scores(const Problem<A>& pb, const Tiles<A>& tl, Scratch<A>& sc, const Task& t,
                  int64_t koff, int64_t voff, int64_t nk) {
  const int64_t D = pb.D, Dp = pb.Dp;
  if constexpr (std::is_same_v<A, float>) {
    if (pb.direct >= 0) {
      for (int64_t r0 = 0; r0 < t.R; r0 += 4)
        tl.k.qk_direct[pb.direct](
            sc.q.data() + r0 * D, D, static_cast<int>(std::min<int64_t>(4, t.R - r0)),
            elem(pb.k, koff), pb.k.st[2], nk, D, sc.s.data() + r0 * pb.bk, pb.bk);
      return;
    }
  }
  const int64_t npanel = (nk + 15) / 16;
  // K block -> panels [npanel][D][16]; V block -> rows [nk][Dp] (zero padded).
  std::fill(sc.kp.begin(), sc.kp.begin() + npanel * 16 * D, A(0));
  for (int64_t jj = 0; jj < nk; ++jj) {
    load(pb.k, koff + jj * pb.k.st[2], pb.k.st[3], D, sc.row.data());
    A* panel = sc.kp.data() + (jj / 16) * 16 * D + jj % 16;
    for (int64_t d = 0; d < D; ++d) panel[d * 16] = sc.row[d];
    A* vr = sc.vf.data() + jj * Dp;
    load(pb.v, voff + jj * pb.v.st[2], pb.v.st[3], pb.Dv, vr);
    std::fill(vr + pb.Dv, vr + Dp, A(0));
  }
  for (int64_t r0 = 0; r0 < t.R; r0 += 4) {
    const int rows = static_cast<int>(std::min<int64_t>(4, t.R - r0));
    for (int64_t pn = 0; pn < npanel; ++pn)
      tl.qk(sc.q.data() + r0 * D, D, rows, sc.kp.data() + pn * 16 * D, D,
            sc.s.data() + r0 * pb.bk + pn * 16, pb.bk);
  }
}

// Softcap, masks and the online-softmax update of row r: s becomes the block's unnormalised
// probabilities, and the row's running max, sum and accumulator are rescaled.
template <typename A>
void softmax_update(const Problem<A>& pb, const Tiles<A>& tl, Scratch<A>& sc, const Task& t,
                    int64_t r, int64_t j0, int64_t nk) {
  const auto& p = pb.prim;
  const A neg_inf = -std::numeric_limits<A>::infinity();
  const int64_t h = t.head(r, pb.G), l = t.pos(r);
  const int64_t pos = pb.S - pb.L + l;
  A* s = sc.s.data() + r * pb.bk;
  if (p.softcap_ > 0) {
    const A cap = static_cast<A>(p.softcap_), inv = A(1) / cap;
    for (int64_t jj = 0; jj < nk; ++jj) s[jj] = cap * std::tanh(s[jj] * inv);
  }
  if (pb.mask) {
    const View4& mk = *pb.mask;
    load(mk, t.b * mk.st[0] + h * mk.st[1] + l * mk.st[2] + j0 * mk.st[3], mk.st[3], nk,
         sc.mrow.data());
    if (p.mask_ == SdpaMask::boolean) {
      for (int64_t jj = 0; jj < nk; ++jj)
        if (sc.mrow[jj] == A(0)) s[jj] = neg_inf;
    } else {
      for (int64_t jj = 0; jj < nk; ++jj) s[jj] += sc.mrow[jj];
    }
  }
  if (p.causal_) {
    for (int64_t jj = 0; jj < nk; ++jj) {
      const int64_t j = j0 + jj;
      if (j > pos || (p.window_ > 0 && j <= pos - p.window_)) s[jj] = neg_inf;
    }
  }
  A mx = sc.m[r];
  for (int64_t jj = 0; jj < nk; ++jj) mx = std::max(mx, s[jj]);
  if (mx == neg_inf) {  // nothing visible yet: no contribution ...
    // ... unless the scores are NaN (a NaN query, or NaN keys only so far; std::max skips NaN):
    // the row's sum becomes NaN and stays NaN, so the row is NaN as in torch, not zeros.
    for (int64_t jj = 0; jj < nk; ++jj)
      if (std::isnan(s[jj])) sc.l[r] = std::numeric_limits<A>::quiet_NaN();
    std::fill(s, s + nk, A(0));
    return;
  }
  const A alpha = sc.m[r] == neg_inf ? A(0) : std::exp(sc.m[r] - mx);
  sc.l[r] = sc.l[r] * alpha + tl.exp_sum(s, nk, mx);
  sc.m[r] = mx;
  if (alpha != A(1)) {
    A* ar = sc.acc.data() + r * pb.Dp;
    for (int64_t d = 0; d < pb.Dp; ++d) ar[d] *= alpha;
  }
}

// acc[r] += p[r] . V block for the task's rows.
template <typename A>
void block_pv(const Problem<A>& pb, const Tiles<A>& tl, Scratch<A>& sc, const Task& t, int64_t voff,
              int64_t nk) {
  const int64_t Dp = pb.Dp;
  for (int64_t r0 = 0; r0 < t.R; r0 += 4) {
    const int rows = static_cast<int>(std::min<int64_t>(4, t.R - r0));
    if constexpr (std::is_same_v<A, float>) {
      if (pb.direct >= 0) {
        tl.k.pv_direct[pb.direct](sc.s.data() + r0 * pb.bk, pb.bk, rows, elem(pb.v, voff),
                                  pb.v.st[2], nk, pb.Dv, sc.acc.data() + r0 * Dp, Dp);
        continue;
      }
    }
    tl.pv(sc.s.data() + r0 * pb.bk, pb.bk, rows, sc.vf.data(), Dp, nk, Dp, sc.acc.data() + r0 * Dp,
          Dp);
  }
}

// Prefetch of the first rows of a direct-loop call on K or V (no-op for the other paths).
struct Prefetcher {
  const View4& x;
  int64_t stride = 0, row = 0, n = 0;  // bytes, bytes, rows
  template <typename A>
  Prefetcher(const Problem<A>& pb, const View4& x, int64_t D) : x(x) {
    if (pb.direct < 0) return;
    const auto es = static_cast<int64_t>(size_of(x.dtype));
    stride = x.st[2] * es;
    row = D * es;
    n = prefetch_distance(row);
  }
  // Rows j .. j + n (below j_end) of the (batch, head) at element offset base.
  void operator()(int64_t base, int64_t j, int64_t j_end) const {
    if (n > 0) prefetch_rows(elem(x, base + j * x.st[2]), stride, row, std::min(n, j_end - j));
  }
};

template <typename T, typename A>
void run_task(const Problem<A>& pb, const Tiles<A>& tl, Scratch<A>& sc, int64_t b, int64_t hk,
              int64_t l0, T* out) {
  const auto& p = pb.prim;
  const int64_t D = pb.D, Dp = pb.Dp, S = pb.S, L = pb.L;
  const int64_t nl = std::min(pb.Lb, L - l0);
  const Task t{b, hk, l0, nl, pb.G * nl};
  for (int64_t r = 0; r < t.R; ++r) {
    A* qr = sc.q.data() + r * D;
    load(pb.q, b * pb.q.st[0] + t.head(r, pb.G) * pb.q.st[1] + t.pos(r) * pb.q.st[2], pb.q.st[3], D,
         qr);
    for (int64_t d = 0; d < D; ++d) qr[d] *= static_cast<A>(p.scale_);
    sc.m[r] = -std::numeric_limits<A>::infinity();
    sc.l[r] = 0;
  }
  std::fill(sc.acc.begin(), sc.acc.begin() + t.R * Dp, A(0));
  // Keys any row of the task may see.
  int64_t j_begin = 0, j_end = S;
  if (p.causal_) {
    j_end = std::clamp<int64_t>(S - L + l0 + nl, 0, S);
    if (p.window_ > 0) j_begin = std::clamp<int64_t>(S - L + l0 - p.window_ + 1, 0, S);
  }
  // The direct loops prefetch ahead inside each call: the first rows of a call are prefetched
  // here, one phase ahead (V during q.k, the next K block during p.v).
  const Prefetcher pf_k(pb, pb.k, pb.D), pf_v(pb, pb.v, pb.Dv);
  const int64_t kbase = b * pb.k.st[0] + hk * pb.k.st[1];
  const int64_t vbase = b * pb.v.st[0] + hk * pb.v.st[1];
  pf_k(kbase, j_begin, j_end);
  for (int64_t j0 = j_begin; j0 < j_end; j0 += pb.bk) {
    const int64_t nk = std::min(pb.bk, j_end - j0);
    const int64_t koff = kbase + j0 * pb.k.st[2];
    const int64_t voff = vbase + j0 * pb.v.st[2];
    pf_v(vbase, j0, j_end);
    block_scores(pb, tl, sc, t, koff, voff, nk);
    for (int64_t r = 0; r < t.R; ++r) softmax_update(pb, tl, sc, t, r, j0, nk);
    pf_k(kbase, j0 + nk, j_end);
    block_pv(pb, tl, sc, t, voff, nk);
  }
  for (int64_t r = 0; r < t.R; ++r) {
    A* ar = sc.acc.data() + r * Dp;
    // l = 0: no visible key (zeros); NaN: a NaN score (NaN row).
    const A inv = std::isnan(sc.l[r]) ? sc.l[r] : (sc.l[r] > A(0) ? A(1) / sc.l[r] : A(0));
    for (int64_t d = 0; d < pb.Dv; ++d) ar[d] *= inv;
    store_row(tl.k, ar, out + ((b * pb.H + t.head(r, pb.G)) * L + t.pos(r)) * pb.Dv, pb.Dv);
  }
}

template <typename T, typename A>
void sdpa_impl(const ScaledDotProductAttention& prim, const std::vector<Array>& inputs,
               Array& out) {
  const Array &q = inputs[0], &k = inputs[1], &v = inputs[2];
  Problem<A> pb{prim, View4(q), View4(k), View4(v), std::nullopt};
  pb.B = q.shape(0), pb.H = q.shape(1), pb.L = q.shape(2), pb.D = q.shape(3);
  pb.Hkv = k.shape(1), pb.S = k.shape(2), pb.Dv = v.shape(3);
  pb.G = pb.H / pb.Hkv;
  pb.Dp = (pb.Dv + 15) / 16 * 16;
  pb.Lb = std::max<int64_t>(1, kRows / std::max<int64_t>(pb.G, 1));
  if (prim.mask_ != SdpaMask::none) {
    const Array& m = inputs[3];
    Strides st = broadcast_strides(m, {pb.B, pb.H, pb.L, pb.S});
    View4 mv(q);
    mv.p = m.raw_ptr();
    mv.dtype = m.dtype();
    for (int d = 0; d < 4; ++d) mv.st[d] = st[d];
    pb.mask = mv;
  }
  // Few rows per task (decode): read K and V in place instead of converting them to panels.
  const bool inner_contig =
      (k.strides()[3] == 1 || pb.D == 1) && (v.strides()[3] == 1 || pb.Dv == 1);
  if (std::is_same_v<A, float> && inner_contig && pb.G * std::min(pb.Lb, pb.L) <= 8) {
    pb.direct = q.dtype() == Dtype::bfloat16  ? static_cast<int>(SrcKind::bf16)
                : q.dtype() == Dtype::float16 ? static_cast<int>(SrcKind::f16)
                                              : static_cast<int>(SrcKind::f32);
    pb.bk = kBkDirect;
  }
  alloc_cpu(out);
  if (out.size() == 0) return;
  T* op = out.raw_ptr<T>();
  const int64_t nlb = (pb.L + pb.Lb - 1) / pb.Lb;
  const int64_t tasks = pb.B * pb.Hkv * nlb;
  const Tiles<A> tl{kernels()};
  const int64_t R = pb.G * std::min(pb.Lb, pb.L);
  parallel_for(tasks, 1, [&](int64_t t0, int64_t t1) {
    Scratch<A> sc(R, pb.D, pb.Dp, pb.bk, pb.direct >= 0);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t lb = t % nlb, bh = t / nlb;
      run_task<T, A>(pb, tl, sc, bh / pb.Hkv, bh % pb.Hkv, lb * pb.Lb, op);
    }
  });
}

}  // namespace

void ScaledDotProductAttention::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  switch (out.dtype()) {
    case Dtype::float32:
      return sdpa_impl<float, float>(*this, inputs, out);
    case Dtype::bfloat16:
      return sdpa_impl<bfloat16_t, float>(*this, inputs, out);
    case Dtype::float16:
      return sdpa_impl<float16_t, float>(*this, inputs, out);
    case Dtype::float64:
      return sdpa_impl<double, double>(*this, inputs, out);
    default:
      raise("[scaled_dot_product_attention] unsupported dtype {}", dtype_name(out.dtype()));
  }
}

}  // namespace ingot
