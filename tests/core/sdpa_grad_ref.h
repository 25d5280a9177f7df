// Float64 naive loops for the attention backward (ScaledDotProductAttentionGrad's definition):
// dq, dk, dv and, per element, the sums of magnitudes that scale a kernel's rounding error
// (16-bit P and dS terms; float32 dP and delta, which cancel in dP - delta), plus the check.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/array.h"

namespace ingot::test {

/// One problem: row-major q [B, H, L, D], k [B, Hkv, S, D], v [B, Hkv, S, Dv], out and d_out
/// [B, H, L, Dv]; mask (kind 0 none, 1 additive, 2 boolean) of mask_shape, right-aligned and
/// broadcast against [B, H, L, S].
struct SdpaGradProblem {
  int64_t B = 1, H = 1, Hkv = 1, L = 1, S = 1, D = 8, Dv = 8;
  double scale = 1;
  bool causal = false;
  int window = 0;
  int mask_kind = 0;
  Shape mask_shape;
  std::vector<double> q, k, v, out, d_out, mask;
};

struct SdpaGradRef {
  std::vector<double> dq, dk, dv;              // gradients
  std::vector<double> dq_abs, dk_abs, dv_abs;  // sums of |term| per element
  // dq and dk with each dS term replaced by P scale (sum |dO v| + sum |dO out|): the scale of
  // the float32 error of dP - delta, which does not shrink when the two cancel (dv: = dv_abs).
  std::vector<double> dq_abs2, dk_abs2;
};

inline double sdpa_mask_at(const SdpaGradProblem& p, int64_t b, int64_t h, int64_t l, int64_t j) {
  const int64_t idx[4] = {b, h, l, j};
  const int nd = static_cast<int>(p.mask_shape.size());
  int64_t off = 0;
  for (int d = 0; d < nd; ++d) {
    const int64_t n = p.mask_shape[d];
    off = off * n + (n == 1 ? 0 : idx[4 - nd + d]);
  }
  return p.mask[off];
}

/// Probabilities of query row (b, h, l) over the S keys (zeros for a fully masked row).
inline std::vector<double> sdpa_probs_ref(const SdpaGradProblem& p, int64_t b, int64_t h,
                                          int64_t l) {
  const double inf = std::numeric_limits<double>::infinity();
  const int64_t hk = h / (p.H / p.Hkv), pos = p.S - p.L + l;
  std::vector<double> s(p.S);
  double mx = -inf;
  for (int64_t j = 0; j < p.S; ++j) {
    double x = 0;
    for (int64_t d = 0; d < p.D; ++d)
      x += p.q[((b * p.H + h) * p.L + l) * p.D + d] * p.k[((b * p.Hkv + hk) * p.S + j) * p.D + d];
    x *= p.scale;
    if (p.mask_kind == 1) x += sdpa_mask_at(p, b, h, l, j);
    if (p.mask_kind == 2 && sdpa_mask_at(p, b, h, l, j) == 0) x = -inf;
    if (p.causal && (j > pos || (p.window > 0 && j <= pos - p.window))) x = -inf;
    s[j] = x;
    mx = std::max(mx, x);
  }
  double sum = 0;
  for (double& x : s) sum += (x = mx == -inf ? 0.0 : std::exp(x - mx));
  for (double& x : s) x = sum > 0 ? x / sum : 0.0;
  return s;
}

/// The forward output [B, H, L, Dv] (exact, before any rounding).
inline std::vector<double> sdpa_forward_ref(const SdpaGradProblem& p) {
  std::vector<double> o(p.B * p.H * p.L * p.Dv, 0.0);
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.H; ++h)
      for (int64_t l = 0; l < p.L; ++l) {
        const std::vector<double> pr = sdpa_probs_ref(p, b, h, l);
        const int64_t hk = h / (p.H / p.Hkv);
        for (int64_t j = 0; j < p.S; ++j)
          for (int64_t d = 0; d < p.Dv; ++d)
            o[((b * p.H + h) * p.L + l) * p.Dv + d] +=
                pr[j] * p.v[((b * p.Hkv + hk) * p.S + j) * p.Dv + d];
      }
  return o;
}

/// The gradients with delta_i = d_out_i . out_i from p.out as given.
inline SdpaGradRef sdpa_grad_ref(const SdpaGradProblem& p) {
  SdpaGradRef r;
  r.dq.assign(p.B * p.H * p.L * p.D, 0.0);
  r.dk.assign(p.B * p.Hkv * p.S * p.D, 0.0);
  r.dv.assign(p.B * p.Hkv * p.S * p.Dv, 0.0);
  r.dq_abs = r.dq, r.dk_abs = r.dk, r.dv_abs = r.dv;
  r.dq_abs2 = r.dq, r.dk_abs2 = r.dk;
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.H; ++h)
      for (int64_t l = 0; l < p.L; ++l) {
        const std::vector<double> pr = sdpa_probs_ref(p, b, h, l);
        const int64_t hk = h / (p.H / p.Hkv), row = (b * p.H + h) * p.L + l;
        const double* g = &p.d_out[row * p.Dv];
        double delta = 0, delta_abs = 0;
        for (int64_t d = 0; d < p.Dv; ++d) {
          delta += g[d] * p.out[row * p.Dv + d];
          delta_abs += std::abs(g[d] * p.out[row * p.Dv + d]);
        }
        for (int64_t j = 0; j < p.S; ++j) {
          const int64_t kr = (b * p.Hkv + hk) * p.S + j;
          double dp = 0, dp_abs = 0;
          for (int64_t d = 0; d < p.Dv; ++d) {
            dp += g[d] * p.v[kr * p.Dv + d];
            dp_abs += std::abs(g[d] * p.v[kr * p.Dv + d]);
          }
          const double ds = pr[j] * (dp - delta) * p.scale;
          const double ds2 = pr[j] * (dp_abs + delta_abs) * p.scale;
          for (int64_t d = 0; d < p.Dv; ++d) {
            r.dv[kr * p.Dv + d] += pr[j] * g[d];
            r.dv_abs[kr * p.Dv + d] += std::abs(pr[j] * g[d]);
          }
          for (int64_t d = 0; d < p.D; ++d) {
            const double qv = p.q[row * p.D + d], kv = p.k[kr * p.D + d];
            r.dq[row * p.D + d] += ds * kv;
            r.dq_abs[row * p.D + d] += std::abs(ds * kv);
            r.dk[kr * p.D + d] += ds * qv;
            r.dk_abs[kr * p.D + d] += std::abs(ds * qv);
            r.dq_abs2[row * p.D + d] += ds2 * std::abs(kv);
            r.dk_abs2[kr * p.D + d] += ds2 * std::abs(qv);
          }
        }
      }
  return r;
}

/// Largest |got - want| / tol over the elements, with
///   tol = c (|want| + abs) + f abs2 + atol_rel max(abs2):
/// a kernel that rounds each term (P, dS) and the result to a dtype of unit roundoff u stays
/// within c = 2u; f covers float32 dP - delta (and the float32 logits); atol_rel the absolute
/// rounding of subnormals.
inline double sdpa_grad_worst(const std::vector<double>& got, const std::vector<double>& want,
                              const std::vector<double>& abs, const std::vector<double>& abs2,
                              double c, double f, double atol_rel) {
  double amax = 0, worst = 0;
  for (double x : abs2) amax = std::max(amax, x);
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol = c * (std::abs(want[i]) + abs[i]) + f * abs2[i] + atol_rel * amax + 1e-300;
    const double e = std::abs(got[i] - want[i]) / tol;
    worst = std::isnan(e) ? INFINITY : std::max(worst, e);
  }
  return worst;
}

/// Checks dq, dk, dv (values of got[0..2]) against r with sdpa_grad_worst's tolerance.
inline void expect_sdpa_grads(const std::vector<std::vector<double>>& got, const SdpaGradRef& r,
                              double c, double f, double atol_rel, const std::string& what) {
  ASSERT_EQ(got.size(), 3u) << what;
  const std::vector<double>* want[] = {&r.dq, &r.dk, &r.dv};
  const std::vector<double>* abs[] = {&r.dq_abs, &r.dk_abs, &r.dv_abs};
  const std::vector<double>* abs2[] = {&r.dq_abs2, &r.dk_abs2, &r.dv_abs};
  const char* names[] = {" dq", " dk", " dv"};
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(got[i].size(), want[i]->size()) << what << names[i];
    const double w = sdpa_grad_worst(got[i], *want[i], *abs[i], *abs2[i], c, f, atol_rel);
    EXPECT_LE(w, 1.0) << what << names[i] << ": worst error / tolerance " << w;
  }
}

}  // namespace ingot::test
