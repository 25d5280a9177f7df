// CPU eval of ScaledDotProductAttentionGrad: plain loops accumulating in float64 (a reference for
// the CUDA kernels and for tests; the CPU training path keeps the composition, which is faster).
// One task per (batch, kv head) owns its dk/dv rows and the dq rows of the group's G heads.
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include "backend/common/utils.h"
#include "backend/cpu/reduce_utils.h"
#include "core/primitives/fast.h"
#include "util/thread_pool.h"

namespace ingot {

using namespace backend;

namespace {

// Element (i0, i1, i2, i3) of a 4-d input through its strides, as double.
struct Reader {
  const void* p;
  Dtype t;
  int64_t st[4];
  Reader(const Array& a, const Strides& s) : p(a.raw_ptr()), t(a.dtype()) {
    for (int d = 0; d < 4; ++d) st[d] = s[d];
  }
  double at(int64_t i0, int64_t i1, int64_t i2, int64_t i3) const {
    const int64_t off = i0 * st[0] + i1 * st[1] + i2 * st[2] + i3 * st[3];
    return dispatch_dtype(t, [&](auto x) {
      using T = decltype(x);
      return cast_value<double>(static_cast<const T*>(p)[off]);
    });
  }
};

// A 4-d input's values in row-major order as double.
std::vector<double> to_double(const Array& a) {
  std::vector<double> r(static_cast<size_t>(a.size()));
  const Reader rd(a, a.strides());
  size_t n = 0;
  for (int64_t i0 = 0; i0 < a.shape(0); ++i0)
    for (int64_t i1 = 0; i1 < a.shape(1); ++i1)
      for (int64_t i2 = 0; i2 < a.shape(2); ++i2)
        for (int64_t i3 = 0; i3 < a.shape(3); ++i3) r[n++] = rd.at(i0, i1, i2, i3);
  return r;
}

}  // namespace

void ScaledDotProductAttentionGrad::eval_cpu(const std::vector<Array>& inputs,
                                             std::vector<Array>& outputs) {
  const Array &q = inputs[0], &k = inputs[1], &v = inputs[2];
  const int64_t B = q.shape(0), H = q.shape(1), L = q.shape(2), D = q.shape(3);
  const int64_t Hkv = k.shape(1), S = k.shape(2), Dv = v.shape(3), G = H / Hkv;
  for (Array& o : outputs) alloc_cpu(o);
  const std::vector<double> qv = to_double(q), kv = to_double(k), vv = to_double(v),
                            ov = to_double(inputs[3]), dov = to_double(inputs[4]);
  std::optional<Reader> rm;
  if (mask_ != SdpaMask::none) rm.emplace(inputs[5], broadcast_strides(inputs[5], {B, H, L, S}));
  const double neg_inf = -std::numeric_limits<double>::infinity();
  const double scale = scale_;
  parallel_for(B * Hkv, 1, [&](int64_t t0, int64_t t1) {
    std::vector<double> p(S), ds(S), qi(D), doi(Dv), dq(D);
    std::vector<double> dk(S * D), dv(S * Dv);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / Hkv, hk = t % Hkv;
      const double* kr = &kv[(b * Hkv + hk) * S * D];   // [S][D]
      const double* vr = &vv[(b * Hkv + hk) * S * Dv];  // [S][Dv]
      std::fill(dk.begin(), dk.end(), 0.0);
      std::fill(dv.begin(), dv.end(), 0.0);
      for (int64_t h = hk * G; h < (hk + 1) * G; ++h)
        for (int64_t i = 0; i < L; ++i) {
          const int64_t pos = S - L + i;
          const int64_t row = (b * H + h) * L + i;
          for (int64_t d = 0; d < D; ++d) qi[d] = qv[row * D + d];
          double delta = 0;
          for (int64_t d = 0; d < Dv; ++d) {
            doi[d] = dov[row * Dv + d];
            delta += doi[d] * ov[row * Dv + d];
          }
          // Masked, scaled logits, then probabilities (zero for a fully masked row).
          double mx = neg_inf;
          for (int64_t j = 0; j < S; ++j) {
            double x = 0;
            for (int64_t d = 0; d < D; ++d) x += qi[d] * kr[j * D + d];
            x *= scale;
            if (rm) {
              const double m = rm->at(b, h, i, j);
              if (mask_ == SdpaMask::boolean)
                x = m != 0 ? x : neg_inf;
              else
                x += m;
            }
            if (causal_ && (j > pos || (window_ > 0 && j <= pos - window_))) x = neg_inf;
            p[j] = x;
            mx = std::max(mx, x);
          }
          double sum = 0;
          for (int64_t j = 0; j < S; ++j) sum += (p[j] = mx == neg_inf ? 0.0 : std::exp(p[j] - mx));
          const double inv = sum > 0 ? 1.0 / sum : 0.0;
          std::fill(dq.begin(), dq.end(), 0.0);
          for (int64_t j = 0; j < S; ++j) {
            p[j] *= inv;
            if (p[j] == 0) continue;
            double dp = 0;
            for (int64_t d = 0; d < Dv; ++d) dp += doi[d] * vr[j * Dv + d];
            const double dsj = p[j] * (dp - delta) * scale;
            for (int64_t d = 0; d < Dv; ++d) dv[j * Dv + d] += p[j] * doi[d];
            for (int64_t d = 0; d < D; ++d) {
              dk[j * D + d] += dsj * qi[d];
              dq[d] += dsj * kr[j * D + d];
            }
          }
          dispatch_dtype(outputs[0].dtype(), [&](auto x) {
            using T = decltype(x);
            T* dst = outputs[0].raw_ptr<T>() + row * D;
            for (int64_t d = 0; d < D; ++d) dst[d] = cast_value<T>(dq[d]);
          });
        }
      dispatch_dtype(outputs[1].dtype(), [&](auto x) {
        using T = decltype(x);
        T* dst = outputs[1].raw_ptr<T>() + (b * Hkv + hk) * S * D;
        for (int64_t e = 0; e < S * D; ++e) dst[e] = cast_value<T>(dk[e]);
      });
      dispatch_dtype(outputs[2].dtype(), [&](auto x) {
        using T = decltype(x);
        T* dst = outputs[2].raw_ptr<T>() + (b * Hkv + hk) * S * Dv;
        for (int64_t e = 0; e < S * Dv; ++e) dst[e] = cast_value<T>(dv[e]);
      });
    }
  });
}

}  // namespace ingot
