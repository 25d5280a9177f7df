// Matmul / AddMM on the CPU: batch planning (broadcast batches, batch folding into M), float32
// and float64 GEMM through OpenBLAS, GEMV (M == 1 or N == 1) and bf16/f16 through ingot's own
// kernels (gemm_kernels.h) with float32 accumulation. bf16 GEMM multiplies bf16 directly with
// AVX512_BF16 where the CPU has it (gemm_bf16.h; INGOT_CPU_BF16_GEMM=0 or an ISA cap below
// avx512 selects the route below); otherwise bf16/f16 GEMM converts panels to float32 for sgemm.
//
// Threads: OpenBLAS keeps its own pthread pool; we only cap it at pool_threads() once (so
// INGOT_NUM_THREADS also bounds BLAS) and never call BLAS from inside parallel_for, so the two
// pools never run at the same time (no oversubscription). Our own kernels use parallel_for.
#include <cblas.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <type_traits>
#include <vector>

#include "backend/common/utils.h"
#include "backend/cpu/gemm_bf16.h"
#include "backend/cpu/gemm_kernels.h"
#include "backend/cpu/gemm_plan.h"
#include "core/primitives/linalg.h"
#include "util/thread_pool.h"

namespace ingot {
namespace {

using cpu::GemmKernels;
using cpu::MatmulPlan;

void init_blas_threads() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(pool_threads()); });
}

template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

/// out[j] = alpha * y[j] (+ beta * c[j * cs]), rounded once to T.
template <typename T>
void store_row(const acc_t<T>* y, int64_t n, T* out, float alpha, const T* c, int64_t cs,
               float beta) {
  using A = acc_t<T>;
  if (c) {
    for (int64_t j = 0; j < n; ++j)
      out[j] = T(A(alpha) * y[j] + A(beta) * static_cast<A>(c[j * cs]));
  } else if (alpha == 1.0f) {
    for (int64_t j = 0; j < n; ++j) out[j] = T(y[j]);
  } else {
    for (int64_t j = 0; j < n; ++j) out[j] = T(A(alpha) * y[j]);
  }
}

/// K == 0: the product is all zeros.
template <typename T>
void eval_empty_k(const MatmulPlan& p, T* out, const T* c, float alpha, float beta) {
  std::vector<acc_t<T>> zero(static_cast<size_t>(p.N), 0);
  for (int64_t bi = 0; bi < p.batch; ++bi)
    for (int64_t m = 0; m < p.M; ++m)
      store_row(zero.data(), p.N, out + (bi * p.M + m) * p.N, alpha,
                c ? c + p.c_off[bi] + m * p.sc_m : nullptr, p.sc_n, beta);
}

// ---------------------------------------------------------------- GEMV (M == 1 or N == 1)

/// One vector-matrix product: out[j] = sum_k x[k * xs] * w[k * wk + j * wn], j < n.
template <typename T>
struct GemvJob {
  const T* x;
  int64_t xs;
  const T* w;
  int64_t wk, wn, n;
  T* out;      // contiguous
  const T* c;  // addmm bias row (or null)
  int64_t cs;
};

template <typename T>
std::vector<GemvJob<T>> gemv_jobs(const MatmulPlan& p, const T* a, const T* b, T* out, const T* c) {
  std::vector<GemvJob<T>> jobs;
  const bool by_rows = !(p.N == 1 && p.M > 1);  // N == 1: the roles of a and b swap
  for (int64_t bi = 0; bi < p.batch; ++bi) {
    const T* cb = c ? c + p.c_off[bi] : nullptr;
    if (by_rows) {
      for (int64_t m = 0; m < p.M; ++m)
        jobs.push_back({a + p.a_off[bi] + m * p.sa_m, p.sa_k, b + p.b_off[bi], p.sb_k, p.sb_n, p.N,
                        out + (bi * p.M + m) * p.N, cb ? cb + m * p.sc_m : nullptr, p.sc_n});
    } else {
      jobs.push_back({b + p.b_off[bi], p.sb_k, a + p.a_off[bi], p.sa_k, p.sa_m, p.M, out + bi * p.M,
                      cb, p.sc_m});
    }
  }
  return jobs;
}

template <typename T>
constexpr cpu::WKind wkind() {
  if constexpr (std::is_same_v<T, bfloat16_t>) return cpu::WKind::bf16;
  if constexpr (std::is_same_v<T, float16_t>) return cpu::WKind::f16;
  return cpu::WKind::f32;
}

/// y[j] for a weight layout our SIMD kernels do not cover (neither stride is 1), or float64.
template <typename T>
void gemv_generic(const GemvJob<T>& jb, const acc_t<T>* x, int64_t k, int64_t j0, int64_t n,
                  acc_t<T>* y) {
  for (int64_t j = 0; j < n; ++j) y[j] = 0;
  for (int64_t i = 0; i < k; ++i) {
    const T* row = jb.w + i * jb.wk + j0 * jb.wn;
    const acc_t<T> xi = x[i];
    for (int64_t j = 0; j < n; ++j) y[j] += xi * static_cast<acc_t<T>>(row[j * jb.wn]);
  }
}

template <typename T>
void gemv_chunk(const GemvJob<T>& jb, const acc_t<T>* x, int64_t k, int64_t j0, int64_t n,
                acc_t<T>* y, const GemmKernels& kern) {
  if constexpr (std::is_same_v<T, double>) {
    if (jb.wk == 1) {  // dot products of contiguous rows
      for (int64_t j = 0; j < n; ++j) {
        const double* r = jb.w + (j0 + j) * jb.wn;
        double s = 0;
        for (int64_t i = 0; i < k; ++i) s += r[i] * x[i];
        y[j] = s;
      }
      return;
    }
    gemv_generic(jb, x, k, j0, n, y);
  } else {
    const int kind = static_cast<int>(wkind<T>());
    if (jb.wk == 1)
      kern.rows[kind](jb.w + j0 * jb.wn, jb.wn, x, k, y, n);
    else if (jb.wn == 1)
      kern.cols[kind](jb.w + j0, jb.wk, x, k, y, n);
    else
      gemv_generic(jb, x, k, j0, n, y);
  }
}

/// bf16 GEMV on the AVX512_BF16 dot kernel (kern.rows_bf16_dot), weights [n, k] with rows
/// contiguous over k: x stays bf16 (copied once per call, no float32 round trip), consecutive
/// jobs on the same weights (the rows of one small-M product, up to kBf16DotMaxRows) go to the
/// kernel together, so each block of weight rows comes from DRAM once (the kernel's passes
/// after the first read it from L2), and the weight rows are split over the pool in blocks of
/// ~128 KB handed out one at a time (parallel_for_dynamic: a worker that wakes late takes fewer
/// blocks instead of delaying the caller; each output column is one dot product whatever the
/// split, so the result does not depend on the thread count).
void run_gemv_bf16_dot(const std::vector<GemvJob<bfloat16_t>>& jobs, int64_t k, float alpha,
                       float beta, const GemmKernels& kern) {
  struct Group {
    size_t q0, q1;  // jobs [q0, q1) share their weights
  };
  std::vector<Group> groups;
  for (size_t q = 0; q < jobs.size();) {
    size_t e = q + 1;
    while (e < jobs.size() && static_cast<int64_t>(e - q) < cpu::kBf16DotMaxRows &&
           jobs[e].w == jobs[q].w && jobs[e].wn == jobs[q].wn)
      ++e;
    groups.push_back({q, e});
    q = e;
  }
  std::vector<uint16_t> xs(jobs.size() * static_cast<size_t>(k));
  for (size_t q = 0; q < jobs.size(); ++q)
    for (int64_t i = 0; i < k; ++i) xs[q * k + i] = jobs[q].x[i * jobs[q].xs].bits;
  const int64_t n = jobs[0].n;
  const int64_t nc = std::min(n, std::max<int64_t>(16, (int64_t{128} << 10) / (2 * k)));
  const int64_t per_group = (n + nc - 1) / nc;
  const int64_t ngroups = static_cast<int64_t>(groups.size());
  parallel_for_dynamic(per_group * ngroups, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> y;
    y.resize(static_cast<size_t>(cpu::kBf16DotMaxRows * nc));
    for (int64_t t = begin; t < end; ++t) {
      const Group& g = groups[static_cast<size_t>(t / per_group)];
      const GemvJob<bfloat16_t>& j0b = jobs[g.q0];
      const int64_t j0 = (t % per_group) * nc, len = std::min(nc, n - j0);
      const int64_t m = static_cast<int64_t>(g.q1 - g.q0);
      kern.rows_bf16_dot(reinterpret_cast<const uint16_t*>(j0b.w + j0 * j0b.wn), j0b.wn,
                         xs.data() + g.q0 * k, m, k, y.data(), nc, len);
      for (int64_t r = 0; r < m; ++r) {
        const GemvJob<bfloat16_t>& jb = jobs[g.q0 + static_cast<size_t>(r)];
        if (!jb.c && alpha == 1.0f)
          cpu::round_to_bf16_avx512(y.data() + r * nc, reinterpret_cast<uint16_t*>(jb.out + j0),
                                    len);
        else
          store_row(y.data() + r * nc, len, jb.out + j0, alpha, jb.c ? jb.c + j0 * jb.cs : nullptr,
                    jb.cs, beta);
      }
    }
  });
}

/// Runs every GEMV job, split over (job, column chunk) pairs with parallel_for.
template <typename T>
void run_gemv(const std::vector<GemvJob<T>>& jobs, int64_t k, float alpha, float beta) {
  using A = acc_t<T>;
  const GemmKernels& kern = cpu::active_kernels();
  if constexpr (std::is_same_v<T, bfloat16_t>)
    if (kern.rows_bf16_dot && !jobs.empty() && jobs[0].wk == 1)
      return run_gemv_bf16_dot(jobs, k, alpha, beta, kern);
  // x of every job in the accumulation type, contiguous.
  std::vector<A> xs(jobs.size() * static_cast<size_t>(k));
  for (size_t q = 0; q < jobs.size(); ++q)
    for (int64_t i = 0; i < k; ++i) xs[q * k + i] = static_cast<A>(jobs[q].x[i * jobs[q].xs]);
  const int64_t n = jobs.empty() ? 0 : jobs[0].n;
  // Column chunks of >= 64k multiply-adds; the [K, N] layout streams weight rows, so its
  // chunks are as wide as the thread count allows (long sequential reads).
  const bool cols = !jobs.empty() && jobs[0].wn == 1 && jobs[0].wk != 1;
  int64_t nc = std::max<int64_t>(64, (65536 / std::max<int64_t>(k, 1)) / 64 * 64);
  if (cols)  // one chunk per thread, 1024..4096 columns (the float32 y row stays in L1)
    nc = std::clamp<int64_t>((n + pool_threads() - 1) / pool_threads() + 63, 1024, 4096) / 64 * 64;
  // Several rows of one product (small-M bf16/f16) share the weights: chunks are ordered
  // chunk-major and kept within ~256 KB, so rows after the first read the chunk from L2.
  if (!cols && jobs.size() > 1)
    nc = std::max<int64_t>(16, std::min<int64_t>(nc, (int64_t{256} << 10) / (k * sizeof(T))));
  nc = std::min(n, nc);
  const int64_t per_job = (n + nc - 1) / nc;
  const int64_t njobs = static_cast<int64_t>(jobs.size());
  const int64_t total = per_job * static_cast<int64_t>(jobs.size());
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, nc * k));
  auto body = [&](int64_t begin, int64_t end) {
    std::vector<A> y(static_cast<size_t>(nc));
    for (int64_t t = begin; t < end; ++t) {
      const int64_t q = t % njobs;
      const GemvJob<T>& jb = jobs[q];
      const int64_t j0 = (t / njobs) * nc, len = std::min(nc, n - j0);
      gemv_chunk(jb, xs.data() + q * k, k, j0, len, y.data(), kern);
      store_row(y.data(), len, jb.out + j0, alpha, jb.c ? jb.c + j0 * jb.cs : nullptr, jb.cs, beta);
    }
  };
  // [N, K] rows: chunks of >= 64 KB of weights handed out one at a time (parallel_for_dynamic;
  // a column split leaves every dot product as it is). [K, N]: one chunk per thread (above).
  if (cols)
    parallel_for(total, grain, body);
  else
    parallel_for_dynamic(
        total,
        std::max<int64_t>(
            grain,
            (int64_t{64} << 10) / std::max<int64_t>(1, nc * k * static_cast<int64_t>(sizeof(T)))),
        body);
}

// ---------------------------------------------------------------- float32/float64 GEMM (BLAS)

void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
               int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
              alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta, c,
              static_cast<int>(ldc));
}
void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, float alpha,
               const double* a, int64_t lda, const double* b, int64_t ldb, float beta, double* c,
               int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
              alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta, c,
              static_cast<int>(ldc));
}

/// A BLAS operand: (pointer, transpose flag, leading dimension), copying a layout BLAS cannot
/// take (neither stride 1 with a valid leading dimension) into `scratch`.
template <typename T>
struct Operand {
  const T* p;
  CBLAS_TRANSPOSE t;
  int64_t ld;
};
template <typename T>
Operand<T> blas_operand(const T* p, int64_t rows, int64_t cols, int64_t rs, int64_t cs,
                        std::vector<T>& scratch) {
  if (cs == 1 && rs >= std::max<int64_t>(cols, 1)) return {p, CblasNoTrans, rs};
  if (rs == 1 && cs >= std::max<int64_t>(rows, 1)) return {p, CblasTrans, cs};
  scratch.resize(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t q = 0; q < cols; ++q) scratch[r * cols + q] = p[r * rs + q * cs];
  return {scratch.data(), CblasNoTrans, cols};
}

template <typename T>
void gemm_blas(const MatmulPlan& p, const T* a, const T* b, T* out, const T* c, float alpha,
               float beta) {
  init_blas_threads();
  if (c)  // out = beta * c first, then BLAS accumulates alpha * a @ b into it
    for (int64_t bi = 0; bi < p.batch; ++bi)
      for (int64_t m = 0; m < p.M; ++m) {
        T* o = out + (bi * p.M + m) * p.N;
        const T* cr = c + p.c_off[bi] + m * p.sc_m;
        for (int64_t j = 0; j < p.N; ++j) o[j] = static_cast<T>(beta) * cr[j * p.sc_n];
      }
  std::vector<T> sa, sb;
  for (int64_t bi = 0; bi < p.batch; ++bi) {
    Operand<T> oa = blas_operand(a + p.a_off[bi], p.M, p.K, p.sa_m, p.sa_k, sa);
    Operand<T> ob = blas_operand(b + p.b_off[bi], p.K, p.N, p.sb_k, p.sb_n, sb);
    blas_gemm(oa.t, ob.t, p.M, p.N, p.K, alpha, oa.p, oa.ld, ob.p, ob.ld, c ? 1.0f : 0.0f,
              out + bi * p.M * p.N, p.N);
  }
}

// ---------------------------------------------------------------- bf16/f16 GEMM

/// 16-bit values to float32: contiguous runs through the ISA kernel, strided ones element-wise.
template <typename T>
void to_f32(const T* src, int64_t stride, int64_t n, float* dst, const GemmKernels& kern) {
  if (stride == 1) {
    auto fn = std::is_same_v<T, bfloat16_t> ? kern.bf16_to_f32 : kern.f16_to_f32;
    fn(reinterpret_cast<const uint16_t*>(src), dst, n);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i * stride]);
  }
}

/// Converts panels to float32 and runs cblas_sgemm on them (OpenBLAS's tuned Zen kernel is
/// what a hand-written AVX2 micro-kernel would at best match; conversion is O(MK + KN) against
/// O(MKN) flops). B is converted in balanced column blocks so its float32 copy stays ~8 MB.
template <typename T>
void gemm_half(const MatmulPlan& p, const T* a, const T* b, T* out, const T* c, float alpha,
               float beta) {
  init_blas_threads();
  const GemmKernels& kern = cpu::active_kernels();
  const int64_t M = p.M, N = p.N, K = p.K;
  const int64_t nb_max = std::min(N, std::max<int64_t>(64, (int64_t{1} << 21) / K));
  const int64_t nblocks = (N + nb_max - 1) / nb_max;
  const int64_t nb = (N + nblocks - 1) / nblocks;
  // Uninitialised (every element is written before it is read): zeroing these buffers on every
  // call cost ~2% of a bf16 classification run.
  std::unique_ptr<float[]> af_buf(new float[static_cast<size_t>(M * K)]),
      bf_buf(new float[static_cast<size_t>(nb * K)]),
      cf_buf(new float[static_cast<size_t>(M * nb)]);
  float* const af = af_buf.get();
  float* const bf = bf_buf.get();
  float* const cf = cf_buf.get();
  const bool rows_layout = p.sb_k == 1;  // W stored [N, K]: convert rows of W, use B^T
  for (int64_t bi = 0; bi < p.batch; ++bi) {
    const T* ab = a + p.a_off[bi];
    const T* bb = b + p.b_off[bi];
    parallel_for(M, std::max<int64_t>(1, 16384 / K), [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; ++m) to_f32(ab + m * p.sa_m, p.sa_k, K, &af[m * K], kern);
    });
    for (int64_t n0 = 0; n0 < N; n0 += nb) {
      const int64_t w = std::min(nb, N - n0);
      if (rows_layout) {
        parallel_for(w, std::max<int64_t>(1, 16384 / K), [&](int64_t j0, int64_t j1) {
          for (int64_t j = j0; j < j1; ++j) to_f32(bb + (n0 + j) * p.sb_n, 1, K, &bf[j * K], kern);
        });
        blas_gemm(CblasNoTrans, CblasTrans, M, w, K, 1.0f, af, K, bf, K, 0.0f, cf, w);
      } else {
        parallel_for(K, std::max<int64_t>(1, 16384 / w), [&](int64_t k0, int64_t k1) {
          for (int64_t k = k0; k < k1; ++k)
            to_f32(bb + k * p.sb_k + n0 * p.sb_n, p.sb_n, w, &bf[k * w], kern);
        });
        blas_gemm(CblasNoTrans, CblasNoTrans, M, w, K, 1.0f, af, K, bf, w, 0.0f, cf, w);
      }
      parallel_for(M, std::max<int64_t>(1, 16384 / w), [&](int64_t m0, int64_t m1) {
        for (int64_t m = m0; m < m1; ++m)
          store_row(&cf[m * w], w, out + (bi * M + m) * N + n0, alpha,
                    c ? c + p.c_off[bi] + m * p.sc_m + n0 * p.sc_n : nullptr, p.sc_n, beta);
      });
    }
  }
}

// ---------------------------------------------------------------- bf16 GEMM (AVX512_BF16)

/// Where gemm_bf16 stores the float32 rows of one batch element.
struct Bf16Out {
  bfloat16_t* out;  // [M, N] contiguous
  int64_t N;
  const bfloat16_t* c;  // addmm bias of this batch element (or null)
  int64_t sc_m, sc_n;
  float alpha, beta;
};

void store_bf16(void* ctx, int64_t m, int64_t n0, const float* y, int64_t len) {
  const Bf16Out& o = *static_cast<const Bf16Out*>(ctx);
  if (!o.c && o.alpha == 1.0f)
    return cpu::round_to_bf16_avx512(y, reinterpret_cast<uint16_t*>(o.out + m * o.N + n0), len);
  store_row(y, len, o.out + m * o.N + n0, o.alpha, o.c ? o.c + m * o.sc_m + n0 * o.sc_n : nullptr,
            o.sc_n, o.beta);
}

void gemm_bf16(const MatmulPlan& p, const bfloat16_t* a, const bfloat16_t* b, bfloat16_t* out,
               const bfloat16_t* c, float alpha, float beta) {
  for (int64_t bi = 0; bi < p.batch; ++bi) {
    Bf16Out o{
        out + bi * p.M * p.N, p.N, c ? c + p.c_off[bi] : nullptr, p.sc_m, p.sc_n, alpha, beta};
    cpu::Bf16Gemm g;
    g.M = p.M;
    g.N = p.N;
    g.K = p.K;
    g.a = reinterpret_cast<const uint16_t*>(a + p.a_off[bi]);
    g.sa_m = p.sa_m;
    g.sa_k = p.sa_k;
    g.b = reinterpret_cast<const uint16_t*>(b + p.b_off[bi]);
    g.sb_k = p.sb_k;
    g.sb_n = p.sb_n;
    g.store = store_bf16;
    g.ctx = &o;
    cpu::gemm_bf16_avx512(g);
  }
}

// ---------------------------------------------------------------- dispatch

/// Rows up to which bf16/f16 products run as one GEMV per row (each streams the weights once)
/// rather than converting the weights to float32 for sgemm ...
constexpr int64_t kHalfGemvMaxRows = 4;
/// ... or, for bf16 where the AVX512_BF16 GEMM runs, rather than that GEMM (whose 16-row
/// panels of x waste most of their work below 9 rows: Zen 5, 1024 x 3072, 5 rows 0.36 ms as
/// GEMVs against 0.66 ms, 8 rows 0.57 against 0.65).
constexpr int64_t kBf16GemvMaxRows = 8;

template <typename T>
void eval_typed(const MatmulPlan& p, const Array& a, const Array& b, Array& out, const Array* c,
                float alpha, float beta) {
  const T* pa = a.raw_ptr<T>();
  const T* pb = b.raw_ptr<T>();
  const T* pc = c ? c->raw_ptr<T>() : nullptr;
  T* po = out.raw_ptr<T>();
  if (p.K == 0) return eval_empty_k(p, po, pc, alpha, beta);
  constexpr bool half = std::is_same_v<T, bfloat16_t> || std::is_same_v<T, float16_t>;
  bool direct = false;
  if constexpr (std::is_same_v<T, bfloat16_t>) direct = cpu::bf16_gemm_enabled();
  const int64_t gemv_rows = direct ? kBf16GemvMaxRows : half ? kHalfGemvMaxRows : 0;
  if (p.M == 1 || p.N == 1 || p.M <= gemv_rows)
    return run_gemv(gemv_jobs(p, pa, pb, po, pc), p.K, alpha, beta);
  if constexpr (std::is_same_v<T, bfloat16_t>)
    if (direct) return gemm_bf16(p, pa, pb, po, pc, alpha, beta);
  if constexpr (half)
    gemm_half(p, pa, pb, po, pc, alpha, beta);
  else
    gemm_blas(p, pa, pb, po, pc, alpha, beta);
}

void eval_matmul(const Array& a, const Array& b, Array& out, const Array* c, float alpha,
                 float beta) {
  backend::alloc_cpu(out);
  if (out.size() == 0) return;
  MatmulPlan p = cpu::make_matmul_plan(a, b, c, out);
  switch (out.dtype()) {
    case Dtype::float32:
      return eval_typed<float>(p, a, b, out, c, alpha, beta);
    case Dtype::float64:
      return eval_typed<double>(p, a, b, out, c, alpha, beta);
    case Dtype::bfloat16:
      return eval_typed<bfloat16_t>(p, a, b, out, c, alpha, beta);
    case Dtype::float16:
      return eval_typed<float16_t>(p, a, b, out, c, alpha, beta);
    default:
      raise("[matmul] unsupported dtype {} (floating-point only)", dtype_name(out.dtype()));
  }
}

}  // namespace

void Matmul::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  eval_matmul(inputs[0], inputs[1], out, nullptr, 1.0f, 0.0f);
}

namespace {
/// out = beta * c + out (out holds the rounded product), c broadcast to out's shape; the sum is
/// computed in float (double for float64) and rounded once, as the add op does.
template <typename T>
void add_broadcast(const Array& c, Array& out, float beta) {
  using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const Shape& shape = out.shape();
  const Strides cs = backend::broadcast_strides(c, shape);
  const T* cp = c.raw_ptr<T>();
  T* o = out.raw_ptr<T>();
  const int nd = static_cast<int>(shape.size());
  if (cs == row_major_strides(shape)) {  // a same-shape residual: one flat pass, in parallel
    parallel_for(out.size(), 16384, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        o[i] = static_cast<T>(static_cast<A>(beta) * static_cast<A>(cp[i]) + static_cast<A>(o[i]));
    });
    return;
  }
  std::vector<int64_t> idx(static_cast<size_t>(nd), 0);
  int64_t off = 0;
  for (int64_t i = 0; i < out.size(); ++i) {
    o[i] = static_cast<T>(static_cast<A>(beta) * static_cast<A>(cp[off]) + static_cast<A>(o[i]));
    for (int d = nd - 1; d >= 0; --d) {  // next index of the row-major walk
      off += cs[static_cast<size_t>(d)];
      if (++idx[static_cast<size_t>(d)] < shape[static_cast<size_t>(d)]) break;
      off -= cs[static_cast<size_t>(d)] * shape[static_cast<size_t>(d)];
      idx[static_cast<size_t>(d)] = 0;
    }
  }
}
}  // namespace

void AddMM::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  if (!round_product_) return eval_matmul(inputs[1], inputs[2], out, &inputs[0], alpha_, beta_);
  eval_matmul(inputs[1], inputs[2], out, nullptr, alpha_, 0.0f);  // the rounded product
  if (out.size() == 0) return;
  switch (out.dtype()) {
    case Dtype::float32:
      return add_broadcast<float>(inputs[0], out, beta_);
    case Dtype::float64:
      return add_broadcast<double>(inputs[0], out, beta_);
    case Dtype::bfloat16:
      return add_broadcast<bfloat16_t>(inputs[0], out, beta_);
    default:
      return add_broadcast<float16_t>(inputs[0], out, beta_);
  }
}

}  // namespace ingot
