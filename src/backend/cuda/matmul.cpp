// Matmul / AddMM on CUDA through cuBLASLt. Row-major products run as the column-major
// C^T = B^T A^T; batches that collapse to one stride per operand run as one strided-batched
// call (a batch sharing b folds into M), the rest loop on the host. Descriptors and the
// heuristic's algorithm are cached per problem, so a decode step never re-queries it.
#include <cublasLt.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "backend/cuda/matmul_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/elementwise.h"
#include "core/primitives/fast.h"
#include "core/primitives/linalg.h"
#include "util/env.h"

namespace ingot {
namespace {

[[noreturn]] void throw_cublas_error(cublasStatus_t st, const char* call, const char* file,
                                     int line) {
  raise<DeviceError>("[cuda] {} failed: {} ({}:{})", call, cublasLtGetStatusName(st), file, line);
}

/// Checks a cuBLASLt call; a failure throws DeviceError naming the call.
#define INGOT_CUBLAS_CHECK(call)                                \
  do {                                                          \
    cublasStatus_t ingot_st_ = (call);                          \
    if (ingot_st_ != CUBLAS_STATUS_SUCCESS)                     \
      throw_cublas_error(ingot_st_, #call, __FILE__, __LINE__); \
  } while (0)

/// INGOT_CUDA_TF32=1 lets float32 GEMMs use TF32 tensor cores (default: full float32). Read
/// once.
bool tf32_enabled() {
  static const bool on = env::flag("INGOT_CUDA_TF32", false);
  return on;
}

// Process-lifetime objects below are deliberately leaked: destroying cuBLASLt handles or
// device memory during static destruction races the CUDA runtime's own teardown.

cublasLtHandle_t lt_handle(int device) {
  static std::mutex mu;
  static auto* handles = new std::map<int, cublasLtHandle_t>;
  std::lock_guard<std::mutex> lock(mu);
  auto it = handles->find(device);
  if (it != handles->end()) return it->second;
  cublasLtHandle_t h = nullptr;
  INGOT_CUBLAS_CHECK(cublasLtCreate(&h));  // the caller made `device` current
  handles->emplace(device, h);
  return h;
}

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

struct Workspace {
  void* ptr = nullptr;
  size_t bytes = 0;
};

/// The workspace of one CUDA stream (work on a stream is ordered, so its GEMMs share it). A
/// device too full for it runs without one.
Workspace workspace(Device d, cudaStream_t s) {
  static std::mutex mu;
  static auto* spaces = new std::unordered_map<cudaStream_t, Workspace>;
  std::lock_guard<std::mutex> lock(mu);
  auto it = spaces->find(s);
  if (it != spaces->end()) return it->second;
  Workspace w;
  try {
    auto* scratch = new cu::Scratch(d, kWorkspaceBytes);
    w = {scratch->ptr(), kWorkspaceBytes};
  } catch (const OutOfMemory&) {
    w = {};
  }
  spaces->emplace(s, w);
  return w;
}

// ---------------------------------------------------------------- operand layouts

/// How cuBLAS can read a row-major R x C matrix with strides (rs, cs): as row-major with
/// leading dimension ld (= rs) or column-major (ld = cs). Strides of size-1 axes do not matter.
struct MatLayout {
  bool row_major;
  int64_t ld;
};
std::optional<MatLayout> mat_layout(int64_t R, int64_t C, int64_t rs, int64_t cs) {
  if ((C == 1 || cs == 1) && (R == 1 || rs >= std::max<int64_t>(C, 1)))
    return MatLayout{true, R == 1 ? std::max<int64_t>(C, 1) : rs};
  if ((R == 1 || rs == 1) && (C == 1 || cs >= std::max<int64_t>(R, 1)))
    return MatLayout{false, C == 1 ? std::max<int64_t>(R, 1) : cs};
  return std::nullopt;
}

/// An operand as a stack of matrices [..., R, C] (a 1-d a is [1, K], a 1-d b is [K, 1]).
struct MatView {
  const char* p;
  Shape shape;
  Strides strides;
};

MatView view_of(const Array& x, bool is_a) {
  MatView v{static_cast<const char*>(x.raw_ptr()), x.shape(), x.strides()};
  if (x.ndim() == 1) {
    if (is_a) {
      v.shape.insert(v.shape.begin(), 1);
      v.strides.insert(v.strides.begin(), 0);
    } else {
      v.shape.push_back(1);
      v.strides.push_back(0);
    }
  }
  return v;
}

/// True when cuBLASLt cannot read v in place: its matrices are neither row- nor
/// column-contiguous (with a valid leading dimension), or a batch stride is negative.
bool needs_copy(const MatView& v) {
  const size_t n = v.shape.size();
  if (!mat_layout(v.shape[n - 2], v.shape[n - 1], v.strides[n - 2], v.strides[n - 1])) return true;
  for (size_t d = 0; d + 2 < n; ++d)
    if (v.shape[d] > 1 && v.strides[d] < 0) return true;
  return false;
}

Strides row_major_strides(const Shape& shape) {
  Strides st(shape.size());
  int64_t s = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    st[d] = s;
    s *= std::max<int64_t>(shape[d], 1);
  }
  return st;
}

// ---------------------------------------------------------------- batch planning

/// One (maybe strided-batched) product; out is row-contiguous [batch, M, N] at `out`.
struct Call {
  const char* a;
  const char* b;
  char* out;
  int64_t M, N, K, batch;
  int64_t sa_m, sa_k, sa_b, sb_k, sb_n, sb_b;  // elements
};

constexpr int64_t kMaxBatch = 65535;

/// Splits out = a @ b into calls: batch dims collapse where every operand is evenly strided
/// (size-1 dims dropped); the innermost collapsed dim is the strided batch of each call (folded
/// into M when b is shared and a's rows stay evenly spaced), the others loop here.
std::vector<Call> plan_calls(const MatView& a, const MatView& b, char* out, size_t es) {
  const int na = static_cast<int>(a.shape.size()), nbd = static_cast<int>(b.shape.size());
  Call base{.a = a.p,
            .b = b.p,
            .out = out,
            .M = a.shape[na - 2],
            .N = b.shape[nbd - 1],
            .K = a.shape[na - 1],
            .batch = 1,
            .sa_m = a.strides[na - 2],
            .sa_k = a.strides[na - 1],
            .sa_b = 0,
            .sb_k = b.strides[nbd - 2],
            .sb_n = b.strides[nbd - 1],
            .sb_b = 0};
  struct Dim {
    int64_t n, sa, sb, so;
  };
  const int nb = std::max(na, nbd) - 2;
  std::vector<Dim> dims(static_cast<size_t>(nb));
  int64_t so = base.M * base.N;
  for (int d = nb - 1; d >= 0; --d) {
    const int da = d - (nb - (na - 2)), db = d - (nb - (nbd - 2));
    const int64_t n_a = da >= 0 ? a.shape[da] : 1, n_b = db >= 0 ? b.shape[db] : 1;
    dims[d] = {std::max(n_a, n_b), n_a > 1 ? a.strides[da] : 0, n_b > 1 ? b.strides[db] : 0, so};
    so *= dims[d].n;
  }
  std::vector<Dim> cd;
  for (const Dim& d : dims) {
    if (d.n == 1) continue;
    if (!cd.empty() && cd.back().sa == d.sa * d.n && cd.back().sb == d.sb * d.n &&
        cd.back().so == d.so * d.n) {
      cd.back() = {cd.back().n * d.n, d.sa, d.sb, d.so};
    } else {
      cd.push_back(d);
    }
  }
  if (!cd.empty()) {
    base.batch = cd.back().n;
    base.sa_b = cd.back().sa;
    base.sb_b = cd.back().sb;
    cd.pop_back();
  }
  if (base.batch > 1 && base.sb_b == 0) {  // b shared by the batch: one [batch * M, K] product
    const int64_t ra = base.M > 1 ? base.sa_m : base.sa_b;
    if (base.sa_b == base.M * ra && mat_layout(base.batch * base.M, base.K, ra, base.sa_k)) {
      base.M *= base.batch;
      base.sa_m = ra;
      base.batch = 1;
      base.sa_b = 0;
    }
  }
  int64_t outer = 1;
  for (const Dim& d : cd) outer *= d.n;
  std::vector<Call> calls;
  calls.reserve(static_cast<size_t>(outer));
  for (int64_t i = 0; i < outer; ++i) {
    int64_t rem = i, oa = 0, ob = 0, oo = 0;
    for (size_t d = cd.size(); d-- > 0;) {
      const int64_t k = rem % cd[d].n;
      rem /= cd[d].n;
      oa += k * cd[d].sa;
      ob += k * cd[d].sb;
      oo += k * cd[d].so;
    }
    // Batches beyond a grid dimension's 65535 go in chunks.
    for (int64_t j = 0; j < base.batch; j += kMaxBatch) {
      Call c = base;
      c.batch = std::min(kMaxBatch, base.batch - j);
      c.a += (oa + j * base.sa_b) * static_cast<int64_t>(es);
      c.b += (ob + j * base.sb_b) * static_cast<int64_t>(es);
      c.out += (oo + j * base.M * base.N) * static_cast<int64_t>(es);
      calls.push_back(c);
    }
  }
  return calls;
}

// ---------------------------------------------------------------- cuBLASLt plans

/// Descriptors and the chosen algorithm of one problem (shapes, dtypes, transposes, leading
/// dimensions, batch strides, alignments); has_algo false means the heuristic had none.
struct LtPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, ld = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool has_algo = false;
  LtPlan() = default;
  LtPlan(const LtPlan&) = delete;
  LtPlan& operator=(const LtPlan&) = delete;
  ~LtPlan() {
    if (op) cublasLtMatmulDescDestroy(op);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (ld) cublasLtMatrixLayoutDestroy(ld);
  }
};

/// The column-major problem cuBLASLt sees: D (n_lt x m_lt) = op(A) op(B), A = our b, B = our a.
struct LtProblem {
  cudaDataType_t type;
  cublasComputeType_t compute;
  cudaDataType_t scale;
  cublasOperation_t ta, tb;
  int64_t m, n, k;               // D is m x n (= N x M)
  int64_t a_rows, a_cols, a_ld;  // storage of A (our b)
  int64_t b_rows, b_cols, b_ld;  // storage of B (our a)
  int64_t batch, a_stride, b_stride;
  uint32_t align_a, align_b, align_d;
  uint64_t workspace;
};

using PlanKey = std::array<int64_t, 20>;

PlanKey key_of(int device, const LtProblem& p) {
  return {device,     p.type,    p.compute, p.scale,   p.ta,
          p.tb,       p.m,       p.n,       p.k,       p.a_rows,
          p.a_ld,     p.b_rows,  p.b_ld,    p.batch,   p.a_stride,
          p.b_stride, p.align_a, p.align_b, p.align_d, static_cast<int64_t>(p.workspace)};
}

cublasLtMatrixLayout_t lt_layout(cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld,
                                 int64_t batch, int64_t stride) {
  cublasLtMatrixLayout_t l = nullptr;
  INGOT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, t, static_cast<uint64_t>(rows),
                                                static_cast<uint64_t>(cols), ld));
  if (batch > 1) {
    const int32_t count = static_cast<int32_t>(batch);
    cublasStatus_t st = cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                         &count, sizeof(count));
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                            sizeof(stride));
    if (st != CUBLAS_STATUS_SUCCESS) {
      cublasLtMatrixLayoutDestroy(l);
      throw_cublas_error(st, "cublasLtMatrixLayoutSetAttribute", __FILE__, __LINE__);
    }
  }
  return l;
}

std::shared_ptr<LtPlan> build_plan(cublasLtHandle_t h, const LtProblem& p) {
  auto plan = std::make_shared<LtPlan>();
  INGOT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->op, p.compute, p.scale));
  INGOT_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSA, &p.ta, sizeof(p.ta)));
  INGOT_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSB, &p.tb, sizeof(p.tb)));
  plan->la = lt_layout(p.type, p.a_rows, p.a_cols, p.a_ld, p.batch, p.a_stride);
  plan->lb = lt_layout(p.type, p.b_rows, p.b_cols, p.b_ld, p.batch, p.b_stride);
  plan->ld = lt_layout(p.type, p.m, p.n, p.m, p.batch, p.m * p.n);

  cublasLtMatmulPreference_t pref = nullptr;
  INGOT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, cublasStatus_t (*)(cublasLtMatmulPreference_t)>
      pref_guard(pref, cublasLtMatmulPreferenceDestroy);
  const uint64_t ws = p.workspace;
  // Split-K partial sums stay in the compute type (never added up in a 16-bit output), so a
  // bf16/f16 result rounds once, as on the CPU; this also keeps results deterministic.
  const uint32_t schemes = CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
  INGOT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  INGOT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &schemes, sizeof(schemes)));
  INGOT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &p.align_a, sizeof(p.align_a)));
  INGOT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &p.align_b, sizeof(p.align_b)));
  INGOT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &p.align_d, sizeof(p.align_d)));
  INGOT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &p.align_d, sizeof(p.align_d)));

  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(
      h, plan->op, plan->la, plan->lb, plan->ld, plan->ld, pref, 1, &res, &found);
  if (st == CUBLAS_STATUS_SUCCESS && found > 0 && res.state == CUBLAS_STATUS_SUCCESS) {
    plan->algo = res.algo;
    plan->has_algo = true;
  } else if (st != CUBLAS_STATUS_SUCCESS && st != CUBLAS_STATUS_NOT_SUPPORTED) {
    throw_cublas_error(st, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
  }
  return plan;
}

/// The cached plan of a problem (built on first use). The cache is dropped whole when it
/// grows past kMaxPlans (shapes that change every step, e.g. attention over a growing cache).
std::shared_ptr<LtPlan> plan_for(cublasLtHandle_t h, int device, const LtProblem& p) {
  constexpr size_t kMaxPlans = 4096;
  static std::mutex mu;
  static auto* cache = new std::map<PlanKey, std::shared_ptr<LtPlan>>;
  const PlanKey key = key_of(device, p);
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache->find(key);
    if (it != cache->end()) return it->second;
  }
  std::shared_ptr<LtPlan> plan = build_plan(h, p);
  std::lock_guard<std::mutex> lock(mu);
  if (cache->size() >= kMaxPlans) cache->clear();
  cache->emplace(key, plan);
  return plan;
}

/// Largest power of two (<= 256) dividing the address and, for a batch, the batch stride.
uint32_t alignment(const void* p, int64_t batch, int64_t stride, size_t es) {
  uintptr_t v = reinterpret_cast<uintptr_t>(p);
  if (batch > 1) v |= static_cast<uintptr_t>(stride) * es;
  uint32_t al = 256;
  while (al > 1 && v % al != 0) al >>= 1;
  return al;
}

struct TypeInfo {
  cudaDataType_t type;
  cublasComputeType_t compute;
  cudaDataType_t scale;
};
TypeInfo type_info(Dtype t) {
  switch (t) {
    case Dtype::float16:
      return {CUDA_R_16F, CUBLAS_COMPUTE_32F, CUDA_R_32F};
    case Dtype::bfloat16:
      return {CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUDA_R_32F};
    case Dtype::float64:
      return {CUDA_R_64F, CUBLAS_COMPUTE_64F, CUDA_R_64F};
    default:
      return {CUDA_R_32F, tf32_enabled() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F,
              CUDA_R_32F};
  }
}

struct GemmContext {
  Device device;
  Dtype dtype;
  cudaStream_t stream;
  float alpha, beta;
  bool accumulate;     // D = alpha * a @ b + beta * c, c in out (or at c below, GEMV only)
  bool round_product;  // GEMV only: the product rounds to the dtype before the add
  const Array* c;      // GEMV only: c read in place, element (m, n) at m * sc_m + n * sc_n
  int64_t sc_m, sc_n;
};

/// INGOT_CUDA_GEMV=0 sends few-row products to cuBLASLt too (default: the GEMV kernel). Read once.
bool gemv_enabled() {
  static const bool on = env::flag("INGOT_CUDA_GEMV", true);
  return on;
}

/// Blocks of a GEMV that prefetch its weights into L2 before waiting for the previous kernel
/// (the multiprocessor count) with INGOT_CUDA_GEMV_PREFETCH=1; none by default: on the H200
/// it gained Qwen3-0.6B decode 1% and cost Llama-3.2-1B and Gemma3-1B 5-6% (BENCHMARKS.md).
int gemv_prefetch_sms(const Device& d) {
  static const bool on = env::flag("INGOT_CUDA_GEMV_PREFETCH", false);
  return on ? cu::props(d.index).multiProcessorCount : 0;
}

/// Runs c on the GEMV kernel when it is a few rows of a against b read as weight rows (b[k, n]
/// at n * sb_n + k: a transposed row-major weight, as nn::Linear multiplies); false otherwise.
bool try_gemv(const GemmContext& g, const Call& c) {
  if (!gemv_enabled() || c.batch != 1 || c.M > cu::kGemvMaxRows) return false;
  if (c.K > 1 && (c.sb_k != 1 || c.sa_k != 1)) return false;
  cu::GemvProblem p;
  p.M = c.M;
  p.N = c.N;
  p.K = c.K;
  p.x = c.a;
  p.sx_m = c.M > 1 ? c.sa_m : c.K;
  p.w = c.b;
  p.sw_n = c.N > 1 ? c.sb_n : c.K;  // a size-1 axis's stride is arbitrary
  p.out = c.out;
  p.alpha = g.alpha;
  p.beta = g.beta;
  p.accumulate = g.accumulate;
  p.round_product = g.round_product;
  if (g.c) {
    p.c = g.c->raw_ptr();
    p.sc_m = g.sc_m;
    p.sc_n = g.sc_n;
  }
  if (!cu::gemv_supported(g.dtype, p)) return false;
  cu::launch_gemv(g.dtype, p, g.stream, gemv_prefetch_sms(g.device));
  return true;
}

void run_call(const GemmContext& g, const Call& c) {
  if (try_gemv(g, c)) return;
  const size_t es = size_of(g.dtype);
  const MatLayout la = *mat_layout(c.M, c.K, c.sa_m, c.sa_k);
  const MatLayout lb = *mat_layout(c.K, c.N, c.sb_k, c.sb_n);
  const TypeInfo ti = type_info(g.dtype);
  const Workspace ws = workspace(g.device, g.stream);
  LtProblem p{};
  p.type = ti.type;
  p.compute = ti.compute;
  p.scale = ti.scale;
  p.m = c.N;
  p.n = c.M;
  p.k = c.K;
  // A = b^T (N x K): b row-major is column-major b^T; b column-major is b^T transposed.
  p.ta = lb.row_major ? CUBLAS_OP_N : CUBLAS_OP_T;
  p.a_rows = lb.row_major ? c.N : c.K;
  p.a_cols = lb.row_major ? c.K : c.N;
  p.a_ld = lb.ld;
  // B = a^T (K x M), likewise.
  p.tb = la.row_major ? CUBLAS_OP_N : CUBLAS_OP_T;
  p.b_rows = la.row_major ? c.K : c.M;
  p.b_cols = la.row_major ? c.M : c.K;
  p.b_ld = la.ld;
  p.batch = c.batch;
  p.a_stride = c.batch > 1 ? c.sb_b : 0;
  p.b_stride = c.batch > 1 ? c.sa_b : 0;
  p.align_a = alignment(c.b, c.batch, c.sb_b, es);
  p.align_b = alignment(c.a, c.batch, c.sa_b, es);
  p.align_d = alignment(c.out, c.batch, c.M * c.N, es);
  p.workspace = ws.bytes;

  const cublasLtHandle_t h = lt_handle(g.device.index);
  const std::shared_ptr<LtPlan> plan = plan_for(h, g.device.index, p);
  if (!plan->has_algo) {
    cu::GemmProblem fp;
    fp.M = c.M;
    fp.N = c.N;
    fp.K = c.K;
    fp.batch = c.batch;
    fp.a = c.a;
    fp.sa_m = c.sa_m;
    fp.sa_k = c.sa_k;
    fp.sa_b = c.sa_b;
    fp.b = c.b;
    fp.sb_k = c.sb_k;
    fp.sb_n = c.sb_n;
    fp.sb_b = c.sb_b;
    fp.out = c.out;
    fp.alpha = g.alpha;
    fp.beta = g.beta;
    fp.accumulate = g.accumulate;
    cu::launch_gemm_fallback(g.dtype, fp, g.stream);
    return;
  }
  const float alpha_f = g.alpha, beta_f = g.accumulate ? g.beta : 0.0f;
  const double alpha_d = alpha_f, beta_d = beta_f;
  const bool dbl = g.dtype == Dtype::float64;
  INGOT_CUBLAS_CHECK(
      cublasLtMatmul(h, plan->op, dbl ? static_cast<const void*>(&alpha_d) : &alpha_f, c.b,
                     plan->la, c.a, plan->lb, dbl ? static_cast<const void*>(&beta_d) : &beta_f,
                     c.out, plan->ld, c.out, plan->ld, &plan->algo, ws.ptr, ws.bytes, g.stream));
}

// ---------------------------------------------------------------- eval

/// Layout of x broadcast to `shape` (0 strides on broadcast axes), axes collapsed.
cu::Layout broadcast_layout(const Array& x, const Shape& shape) {
  const int off = static_cast<int>(shape.size()) - x.ndim();
  Shape sh;
  Strides st;
  for (int d = 0; d < static_cast<int>(shape.size()); ++d) {
    if (shape[d] == 1) continue;
    const int64_t s = d < off || x.shape()[d - off] == 1 ? 0 : x.strides()[d - off];
    if (!sh.empty() && st.back() == s * shape[d]) {
      sh.back() *= shape[d];
      st.back() = s;
    } else {
      sh.push_back(shape[d]);
      st.push_back(s);
    }
  }
  return cu::make_layout(sh, st);
}

/// Strides (sc_m, sc_n) that address c broadcast to out_shape [..., M, N] as a matrix whose
/// rows are out's leading axes flattened; false when the leading axes do not flatten.
bool row_strides(const Array& c, const Shape& out_shape, int64_t& sc_m, int64_t& sc_n) {
  const int nd = static_cast<int>(out_shape.size()), off = nd - c.ndim();
  auto stride = [&](int d) {  // c's stride along out axis d, 0 where broadcast
    return d < off || c.shape()[d - off] == 1 ? int64_t(0) : c.strides()[d - off];
  };
  sc_n = stride(nd - 1);
  bool have = false;
  int64_t span = 1;  // rows per step of axis d
  for (int d = nd - 2; d >= 0; --d) {
    if (out_shape[d] > 1) {
      const int64_t st = stride(d);
      if (!have) {
        if (st % span != 0) return false;
        sc_m = st / span;
        have = true;
      } else if (st != sc_m * span) {
        return false;
      }
    }
    span *= out_shape[d];
  }
  if (!have) sc_m = 0;
  return true;
}

/// out = c broadcast to out's shape (out row-contiguous).
void fill_from(const Array& c, Array& out, cudaStream_t s) {
  if (c.shape() == out.shape() && c.flags().row_contiguous) {
    INGOT_CUDA_CHECK(
        cudaMemcpyAsync(out.raw_ptr(), c.raw_ptr(), out.nbytes(), cudaMemcpyDeviceToDevice, s));
    return;
  }
  cu::launch_copy_strided(c.raw_ptr(), broadcast_layout(c, out.shape()), out.raw_ptr(), out.size(),
                          static_cast<int>(out.itemsize()), s);
}

void eval_matmul(const Array& a, const Array& b, Array& out, const Array* c, float alpha,
                 float beta, bool round_product, Stream stream) {
  const Dtype t = out.dtype();
  if (!is_floating(t)) raise("[matmul] unsupported dtype {} (floating-point only)", dtype_name(t));
  const cudaStream_t s = cu::stream(stream);
  cu::alloc(out);
  if (out.size() == 0) return;
  if (a.shape().back() == 0) {  // empty sums
    if (c) fill_from(*c, out, s);
    if (c)
      cu::launch_scale_empty_k(t, out.raw_ptr(), out.size(), alpha, beta, s);
    else
      INGOT_CUDA_CHECK(cudaMemsetAsync(out.raw_ptr(), 0, out.nbytes(), s));
    return;
  }
  MatView av = view_of(a, true), bv = view_of(b, false);
  // Operands cuBLASLt cannot read in place go through row-major scratch copies, which live
  // until the GEMMs reading them are queued.
  std::unique_ptr<cu::Scratch> sa, sb;
  auto contiguous = [&](const Array& x, MatView& v, std::unique_ptr<cu::Scratch>& scratch) {
    if (!needs_copy(v)) return;
    scratch = std::make_unique<cu::Scratch>(out.device(), x.nbytes());
    cu::copy_to_row_major_device(x, scratch->ptr(), s);
    v.p = static_cast<const char*>(scratch->ptr());
    v.strides = row_major_strides(v.shape);
  };
  contiguous(a, av, sa);
  contiguous(b, bv, sb);
  std::vector<Call> calls = plan_calls(av, bv, static_cast<char*>(out.raw_ptr()), out.itemsize());
  // A GEMV reads c itself in its epilogue (no copy of c into out first).
  int64_t sc_m = 0, sc_n = 0;
  if (c && calls.size() == 1 && row_strides(*c, out.shape(), sc_m, sc_n)) {
    const GemmContext gc{out.device(), t, s, alpha, beta, true, round_product, c, sc_m, sc_n};
    if (try_gemv(gc, calls[0])) return;
  }
  if (round_product && c) {
    // beta * c + round(alpha * a @ b): the product into scratch, then an add pass that reads c
    // in place when it has out's shape and is row-contiguous (else from a broadcast copy in out).
    cu::Scratch prod(out.device(), out.nbytes());
    const GemmContext gp{out.device(), t, s, alpha, 0.0f, false, false, nullptr, 0, 0};
    for (const Call& call : plan_calls(av, bv, static_cast<char*>(prod.ptr()), out.itemsize()))
      run_call(gp, call);
    const bool direct = c->shape() == out.shape() && c->flags().row_contiguous;
    if (!direct) fill_from(*c, out, s);
    cu::launch_add_product(t, out.raw_ptr(), direct ? c->raw_ptr() : nullptr, prod.ptr(),
                           out.size(), beta, s);
    return;
  }
  // c's buffer becomes out's when nothing else holds it (an accumulated gradient: autodiff folds
  // g + a @ b into AddMM); the GEMM then updates it in place. Else out = c first.
  if (c && c->dtype() == t && c->shape() == out.shape() && c->is_donatable()) {
    out.move_shared_buffer(*c);  // the calls write into the new buffer
    calls = plan_calls(av, bv, static_cast<char*>(out.raw_ptr()), out.itemsize());
  } else if (c) {
    fill_from(*c, out, s);
  }
  const GemmContext g{out.device(), t, s, alpha, beta, c != nullptr, false, nullptr, 0, 0};
  for (const Call& call : calls) run_call(g, call);
}

/// The norm and residual add before the norm prologue (RmsNormAddProduct): h = residual +
/// add(x, [post_weight]) into h.
struct NormAddPrologue {
  const RmsNorm& add;
  const Array& residual;
  const Array* post_weight;
  Array& h;
};

/// rms_norm(x) @ wt on the GEMV with its norm prologue when x is a few contiguous rows, wt a
/// transposed weight [K, N] and the norm weight (if any) a contiguous vector of x's dtype;
/// false otherwise. With pre: x is first replaced by h = pre's residual + norm(x) (written to
/// pre->h), as the residual and post weight allow (contiguous, of x's dtype).
bool try_norm_gemv(const RmsNormLinear& op, const std::vector<Array>& in, Array& out,
                   const cu::GemvProblem* pair = nullptr, const NormAddPrologue* pre = nullptr) {
  const Array& x = in[0];
  const Array& wt = in.back();
  const Dtype t = out.dtype();
  const int64_t K = x.shape().back(), N = pair ? pair->pair : wt.shape(1);
  if (!gemv_enabled() || K == 0 || out.size() == 0 || !x.flags().row_contiguous) return false;
  const int64_t M = x.size() / K;
  if (M > cu::kGemvMaxRows || (K > 1 && wt.strides()[0] != 1)) return false;
  if (op.has_weight_) {
    const Array& nw = in[1];
    if (nw.dtype() != t || nw.ndim() != 1 || (K > 1 && nw.strides()[0] != 1)) return false;
  }
  cu::GemvProblem p;
  p.M = M;
  p.N = N;
  p.K = K;
  p.x = x.raw_ptr();
  p.sx_m = K;
  p.w = wt.raw_ptr();
  p.sw_n = wt.shape(1) > 1 ? wt.strides()[1] : K;
  p.norm = true;
  p.norm_w = op.has_weight_ ? in[1].raw_ptr() : nullptr;
  p.eps = op.eps_;
  p.add_unit_offset = op.add_unit_offset_;
  p.weight_in_float32 = op.weight_in_float32_;
  if (pair) {
    p.pair = pair->pair;
    p.gate = pair->gate;
  }
  if (pre) {
    const Array& r = pre->residual;
    const Array* pw = pre->post_weight;
    if (r.dtype() != t || r.shape() != x.shape() || !r.flags().row_contiguous ||
        (pw && (pw->dtype() != t || pw->ndim() != 1 || (K > 1 && pw->strides()[0] != 1))))
      return false;
    p.pre_res = r.raw_ptr();
    p.pre_norm_w = pw ? pw->raw_ptr() : nullptr;
    p.pre_eps = pre->add.eps_;
    p.pre_unit_offset = pre->add.add_unit_offset_;
    p.pre_weight_in_float32 = pre->add.weight_in_float32_;
  }
  if (!cu::gemv_supported(t, p)) return false;
  if (pre) {
    cu::alloc(pre->h);
    p.pre_out = pre->h.raw_ptr();
  }
  cu::alloc(out);
  p.out = out.raw_ptr();
  cu::launch_gemv(t, p, cu::stream(op.stream()), gemv_prefetch_sms(out.device()));
  return true;
}

}  // namespace

// Few rows: one GEMV with the norm in its prologue whose warps each compute a gate column and
// its up column and write act(gate) * up. Otherwise the stacked product into a temporary
// (RmsNormLinear), then the gated-rows kernel over its two column halves.
void RmsNormGlu::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const std::shared_ptr<RmsNormLinear> nl = norm_linear();
  cu::GemvProblem pair;
  pair.pair = out.shape().back();
  pair.gate = act_ + 1;
  if (try_norm_gemv(*nl, inputs, out, &pair)) return;
  Shape ys = out.shape();
  ys.back() *= 2;
  Array y(ys, out.dtype(), nl, inputs);
  nl->eval_cuda(inputs, y);
  cu::alloc(out);
  const int64_t n = out.shape().back();
  cu::launch_gated_rows(out.dtype(), act_ + 1, y.raw_ptr(), 2 * n,
                        static_cast<const char*>(y.raw_ptr()) + n * out.itemsize(), 2 * n,
                        out.raw_ptr(), n == 0 ? 0 : out.size() / n, n, cu::stream(stream()));
}

// Few rows: one GEMV whose prologue computes h (the norm and residual add) and then the
// product's norm of it; block 0 writes h. Otherwise the two primitives' own evaluations.
void RmsNormAddProduct::eval_cuda(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const auto split = inputs.begin() + static_cast<long>(add_inputs());
  const std::vector<Array> add_in(inputs.begin(), split);
  std::vector<Array> pin{inputs[0]};  // the product's inputs with y in h's place (its shape)
  pin.insert(pin.end(), split, inputs.end());
  const NormAddPrologue pre{*add_, add_in.back(), add_->has_weight_ ? &add_in[1] : nullptr,
                            outputs[0]};
  const std::shared_ptr<RmsNormLinear> nl = norm_linear();
  const RmsNormGlu* g = glu();
  cu::GemvProblem pair;
  if (g) {
    pair.pair = outputs[1].shape().back();
    pair.gate = g->act_ + 1;
  }
  if (try_norm_gemv(*nl, pin, outputs[1], g ? &pair : nullptr, &pre)) return;
  add_->eval_cuda(add_in, outputs[0]);
  pin[0] = outputs[0];
  product_->eval_cuda(pin, outputs[1]);
}

// Few rows: the norm in the GEMV's prologue (one launch). Otherwise the norm into a temporary,
// then the product (the separate ops' kernels).
void RmsNormLinear::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  if (try_norm_gemv(*this, inputs, out)) return;
  const std::vector<Array> norm_in(inputs.begin(), inputs.end() - 1);
  // The temporary carries the norm primitive, so it lives on this primitive's device.
  const std::shared_ptr<RmsNorm> np = norm();
  Array n(inputs[0].shape(), inputs[0].dtype(), np, norm_in);
  np->eval_cuda(norm_in, n);
  eval_matmul(n, inputs.back(), out, nullptr, 1.0f, 0.0f, false, stream());
}

void Matmul::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  eval_matmul(inputs[0], inputs[1], out, nullptr, 1.0f, 0.0f, false, stream());
}

void AddMM::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  eval_matmul(inputs[1], inputs[2], out, &inputs[0], alpha_, beta_, round_product_, stream());
}

}  // namespace ingot
