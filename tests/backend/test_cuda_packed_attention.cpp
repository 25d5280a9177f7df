// fast::packed_attention on CUDA (the fused norms + rotary + attention kernel of
// packed_attention.cu) against its reference composition (fast::ref::packed_attention: the
// separate rms_norm, rope and flash attention kernels, one sequence at a time) on CUDA, and
// against the CPU backend. q and k are rope_kv_update's values; the attention sums in another
// order than the flash kernel (and the CPU), so outputs agree within bf16/f16 rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda_test_util.h"
#include "core/fast/fast.h"

namespace ingot::test {
namespace {

struct Case {
  int64_t H, Hkv, D;
  std::vector<int64_t> lens;
  int64_t P = 0;
  bool qk_norm = true;
  bool unit_offset = false;
  bool weight_f32 = false;
  bool traditional = false;
  bool freqs = false;
  int window = 0;
  float softcap = 0.0f;
  Dtype t = bfloat16;
  bool strided = false;  // qkv and the prefix as views into larger arrays
  std::string name;
};

struct Inputs {
  Array qkv, q_norm, k_norm, pk, pv, freqs;
};

Inputs make_inputs(const Case& c, uint32_t seed) {
  const int64_t T = std::accumulate(c.lens.begin(), c.lens.end(), int64_t{0});
  const int64_t F = (c.H + 2 * c.Hkv) * c.D;
  Inputs in;
  if (c.strided) {
    // Rows of a wider matrix (an extra 8 columns on each side).
    Array wide = normal_host({T, F + 16}, c.t, seed);
    in.qkv = slice(wide, {0, 8}, {T, F + 8});
  } else {
    in.qkv = normal_host({T, F}, c.t, seed);
  }
  in.q_norm = normal_host({c.D}, c.t, seed + 1, 0.1, c.unit_offset ? 0.0 : 1.0);
  in.k_norm = normal_host({c.D}, c.t, seed + 2, 0.1, c.unit_offset ? 0.0 : 1.0);
  if (c.strided) {
    // The first P columns of a larger cache buffer.
    Array k = normal_host({1, c.Hkv, c.P + 9, c.D}, c.t, seed + 3);
    Array v = normal_host({1, c.Hkv, c.P + 9, c.D}, c.t, seed + 4);
    in.pk = slice(k, {0, 0, 0, 0}, {1, c.Hkv, c.P, c.D});
    in.pv = slice(v, {0, 0, 0, 0}, {1, c.Hkv, c.P, c.D});
  } else {
    in.pk = normal_host({1, c.Hkv, c.P, c.D}, c.t, seed + 3);
    in.pv = normal_host({1, c.Hkv, c.P, c.D}, c.t, seed + 4);
  }
  std::vector<float> f(static_cast<size_t>(c.D / 2));
  for (size_t i = 0; i < f.size(); ++i)
    f[i] = 0.9f / std::pow(5000.0f, 2.0f * float(i) / float(c.D));
  in.freqs = Array(f, {c.D / 2}, float32);
  return in;
}

Inputs to_cuda(const Inputs& h) {
  Inputs d{on_cuda(h.qkv), on_cuda(h.q_norm), on_cuda(h.k_norm),
           on_cuda(h.pk),  on_cuda(h.pv),     on_cuda(h.freqs)};
  eval({d.qkv, d.q_norm, d.k_norm, d.pk, d.pv, d.freqs});
  return d;
}

fast::PackedAttentionOptions options(const Case& c, const Inputs& in) {
  fast::PackedAttentionOptions o;
  o.n_heads = static_cast<int>(c.H);
  o.n_kv_heads = static_cast<int>(c.Hkv);
  o.starts.push_back(0);
  for (int64_t l : c.lens) o.starts.push_back(o.starts.back() + l);
  o.qk_norm = {.eps = 1e-6f, .add_unit_offset = c.unit_offset, .weight_in_float32 = c.weight_f32};
  o.rope.traditional = c.traditional;
  o.rope.base = 10000.0f;
  o.rope.scale = 1.0f;
  if (c.freqs) o.rope.freqs = in.freqs;
  o.scale = 1.0f / std::sqrt(static_cast<float>(c.D));
  o.window = c.window;
  o.softcap = c.softcap;
  return o;
}

template <typename F>
Array run(const Case& c, const Inputs& in, F&& fn) {
  std::optional<Array> qn, kn, pk, pv;
  if (c.qk_norm) {
    qn = in.q_norm;
    kn = in.k_norm;
  }
  if (c.P > 0) {
    pk = in.pk;
    pv = in.pv;
  }
  Array r = fn(in.qkv, qn, kn, pk, pv, options(c, in));
  eval({r});
  return r;
}

// Sets INGOT_CUDA_PACKED_KERNEL for its lifetime ("" unsets it).
class KernelChoice {
 public:
  explicit KernelChoice(const std::string& v) {
    if (v.empty())
      unsetenv("INGOT_CUDA_PACKED_KERNEL");
    else
      setenv("INGOT_CUDA_PACKED_KERNEL", v.c_str(), 1);
  }
  ~KernelChoice() { unsetenv("INGOT_CUDA_PACKED_KERNEL"); }
};

// Both CUDA kernels (the default choice: the resident kernel where P + the longest sequence fits
// in 128 keys; and the streaming kernel, forced) against the composition and the CPU.
void check_case(const Case& c) {
  const Inputs host = make_inputs(c, 11);
  const Inputs dev = to_cuda(host);
  auto fused = [](auto&&... a) { return fast::packed_attention(a...); };
  auto composed = [](auto&&... a) { return fast::ref::packed_attention(a...); };
  const Array want = run(c, dev, composed);
  const Array cpu = run(c, host, fused);
  const int64_t T = std::accumulate(c.lens.begin(), c.lens.end(), int64_t{0});
  std::optional<Array> first;
  for (const std::string kernel : {"", "streaming"}) {
    const std::string name = c.name + (kernel.empty() ? " (default kernel)" : " (" + kernel + ")");
    SCOPED_TRACE(name);
    KernelChoice choice(kernel);
    const Array got = run(c, dev, fused);
    ASSERT_EQ(got.shape(), (Shape{T, c.H * c.D}));
    ASSERT_EQ(got.dtype(), c.t);
    const double tol = c.t == bfloat16 ? 1.6e-2 : c.t == float16 ? 2e-3 : 2e-5;
    expect_close(got, want, tol, tol, name + " vs the CUDA composition");
    expect_close(got, cpu, tol, tol, name + " vs the CPU");
    // Not a trivial output (zeros, or v copied through).
    const auto o = astype(got, float32).to_vector<float>();
    double mx = 0;
    for (float x : o) mx = std::max<double>(mx, std::fabs(x));
    if (T > 0) {
      EXPECT_GT(mx, 0.1);
    }
    // The two kernels round q and k alike and differ only in how they group key tiles.
    if (first) expect_close(got, *first, tol, tol, name + " vs the default kernel");
    first = got;
  }
}

TEST(CudaPackedAttention, MatchesTheCompositionAndTheCpu) {
  INGOT_REQUIRE_CUDA();
  // Lengths with an empty sequence, a single row, a tile boundary and more rows than a key tile.
  const std::vector<int64_t> lens{7, 1, 0, 33, 64, 100, 5};
  check_case({.H = 16, .Hkv = 8, .D = 128, .lens = lens, .name = "qwen3-like d128"});
  check_case({.H = 8,
              .Hkv = 2,
              .D = 64,
              .lens = lens,
              .qk_norm = false,
              .freqs = true,
              .name = "llama-like d64, custom freqs, no norms"});
  check_case({.H = 4,
              .Hkv = 1,
              .D = 256,
              .lens = lens,
              .unit_offset = true,
              .weight_f32 = true,
              .window = 16,
              .name = "gemma3-like d256, (1 + w) norms, window 16"});
  check_case({.H = 4,
              .Hkv = 4,
              .D = 128,
              .lens = lens,
              .traditional = true,
              .softcap = 5.0f,
              .t = float16,
              .name = "f16 MHA, traditional rope, softcap"});
}

TEST(CudaPackedAttention, SharedPrefix) {
  INGOT_REQUIRE_CUDA();
  const std::vector<int64_t> lens{24, 1, 17, 70, 3};
  check_case({.H = 16, .Hkv = 8, .D = 128, .lens = lens, .P = 40, .name = "prefix 40"});
  check_case({.H = 4,
              .Hkv = 1,
              .D = 256,
              .lens = lens,
              .P = 40,
              .unit_offset = true,
              .weight_f32 = true,
              .window = 32,
              .name = "d256 prefix 40, window 32 (the window cuts into the prefix)"});
  check_case({.H = 8,
              .Hkv = 2,
              .D = 64,
              .lens = lens,
              .P = 3,
              .t = float16,
              .strided = true,
              .name = "f16 d64, strided qkv and prefix"});
}

TEST(CudaPackedAttention, KeysBeyondSharedMemory) {
  INGOT_REQUIRE_CUDA();
  // Longer than the resident kernel's 128 keys (the streaming kernel by default), and sequences
  // of at most 64 keys with a prefix (the resident kernel's 64-key variant).
  check_case({.H = 16, .Hkv = 8, .D = 128, .lens = {150, 3, 0, 200, 64}, .name = "d128 to 200"});
  check_case({.H = 4,
              .Hkv = 1,
              .D = 256,
              .lens = {130, 7},
              .unit_offset = true,
              .weight_f32 = true,
              .window = 48,
              .name = "d256 window 48, to 130"});
  check_case({.H = 8, .Hkv = 2, .D = 64, .lens = {24, 1, 17, 3}, .P = 40, .name = "d64 40 + 24"});
  check_case({.H = 12,
              .Hkv = 4,
              .D = 128,
              .lens = {64, 9, 33},
              .traditional = true,
              .name = "G = 3 (no shift), traditional"});
}

TEST(CudaPackedAttention, ManySequences) {
  INGOT_REQUIRE_CUDA();
  // Enough units that every persistent CTA takes several.
  std::mt19937 g(5);
  std::uniform_int_distribution<int64_t> len(1, 80);
  std::vector<int64_t> lens(300);
  for (auto& l : lens) l = len(g);
  check_case({.H = 16, .Hkv = 8, .D = 128, .lens = lens, .name = "300 sequences"});
}

TEST(CudaPackedAttention, OtherProblemsRunAsTheComposition) {
  INGOT_REQUIRE_CUDA();
  // float32 and head dims the kernel does not take: the op composes them on the GPU.
  check_case({.H = 4, .Hkv = 2, .D = 64, .lens = {5, 9}, .t = float32, .name = "f32"});
  check_case({.H = 4, .Hkv = 2, .D = 32, .lens = {5, 0, 9}, .name = "bf16 d32"});
}

}  // namespace
}  // namespace ingot::test
