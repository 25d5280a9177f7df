// GGUF reader: metadata of every value type, tensor infos and loading, dequantization of
// Q8_0/Q4_0/Q4_K/Q6_K against float64 per-element formulas of the block layouts, and corrupt
// files (every truncation, magic, versions, offsets, types, counts) as FormatErrors.
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/half.h"
#include "core/io/gguf.h"
#include "core/ops/quantized.h"
#include "test_util.h"

namespace ingot::test {
namespace {

namespace fs = std::filesystem;

/// Little-endian GGUF bytes built field by field (independent of the reader).
struct Bytes {
  std::vector<uint8_t> b;
  template <typename T>
  Bytes& put(T v) {
    uint8_t tmp[sizeof(T)];
    std::memcpy(tmp, &v, sizeof(T));
    b.insert(b.end(), tmp, tmp + sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& raw(const std::vector<uint8_t>& r) {
    b.insert(b.end(), r.begin(), r.end());
    return *this;
  }
  void pad(size_t align) {
    while (b.size() % align) b.push_back(0);
  }
};

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> dims;
  uint32_t type;
  std::vector<uint8_t> data;
};

/// A version-3 file: `kv` holds already encoded key/values (count `n_kv`), tensors are laid out
/// in order with 32-byte alignment.
std::vector<uint8_t> build(const Bytes& kv, uint64_t n_kv, const std::vector<TensorSpec>& ts,
                           uint32_t version = 3) {
  Bytes f;
  f.put<uint32_t>(0x46554747).put<uint32_t>(version).put<uint64_t>(ts.size()).put<uint64_t>(n_kv);
  f.raw(kv.b);
  uint64_t off = 0;
  for (auto& t : ts) {
    f.str(t.name).put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
    for (auto d : t.dims) f.put<uint64_t>(d);
    f.put<uint32_t>(t.type).put<uint64_t>(off);
    off += (t.data.size() + 31) / 32 * 32;
  }
  f.pad(32);
  for (auto& t : ts) {
    f.raw(t.data);
    f.pad(32);
  }
  return f.b;
}

GgufHeader parse(const std::vector<uint8_t>& b) {
  return parse_gguf_header(b.data(), b.size(), "t.gguf");
}

/// Expects a FormatError whose message contains every fragment.
void expect_format_error(const std::vector<uint8_t>& b, std::vector<std::string> frags) {
  try {
    parse(b);
    ADD_FAILURE() << "no error; expected " << frags[0];
  } catch (const FormatError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("[gguf] t.gguf"), std::string::npos) << m;
    for (auto& f : frags) EXPECT_NE(m.find(f), std::string::npos) << m << " lacks " << f;
  }
}

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> r(v.size() * 4);
  std::memcpy(r.data(), v.data(), r.size());
  return r;
}

TEST(Gguf, MetadataOfEveryValueType) {
  Bytes kv;
  kv.str("u8").put<uint32_t>(0).put<uint8_t>(200);
  kv.str("i8").put<uint32_t>(1).put<int8_t>(-5);
  kv.str("u16").put<uint32_t>(2).put<uint16_t>(60000);
  kv.str("i16").put<uint32_t>(3).put<int16_t>(-30000);
  kv.str("u32").put<uint32_t>(4).put<uint32_t>(4000000000u);
  kv.str("i32").put<uint32_t>(5).put<int32_t>(-2000000000);
  kv.str("f32").put<uint32_t>(6).put<float>(0.5f);
  kv.str("bool").put<uint32_t>(7).put<uint8_t>(1);
  kv.str("str").put<uint32_t>(8).str("h\xc3\xa9llo");
  kv.str("arr").put<uint32_t>(9).put<uint32_t>(5).put<uint64_t>(3);
  kv.put<int32_t>(1).put<int32_t>(-2).put<int32_t>(3);
  kv.str("u64").put<uint32_t>(10).put<uint64_t>(1ull << 40);
  kv.str("i64").put<uint32_t>(11).put<int64_t>(-(1ll << 40));
  kv.str("f64").put<uint32_t>(12).put<double>(0.1);
  kv.str("strs").put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(2).str("a").str("");
  // An array of two arrays of UINT8 (nested elements carry no tag of their own).
  kv.str("nested").put<uint32_t>(9).put<uint32_t>(9).put<uint64_t>(2);
  kv.put<uint32_t>(0).put<uint64_t>(1).put<uint8_t>(7);
  kv.put<uint32_t>(0).put<uint64_t>(0);
  kv.str("general.alignment").put<uint32_t>(4).put<uint32_t>(64);
  auto b = build(kv, 16, {});
  GgufHeader h = parse(b);
  EXPECT_EQ(h.version, 3u);
  EXPECT_EQ(h.alignment, 64u);
  auto i = [&](const char* k) { return gguf_int(*h.find(k), "t", k); };
  EXPECT_EQ(i("u8"), 200);
  EXPECT_EQ(i("i8"), -5);
  EXPECT_EQ(i("u16"), 60000);
  EXPECT_EQ(i("i16"), -30000);
  EXPECT_EQ(i("u32"), 4000000000ll);
  EXPECT_EQ(i("i32"), -2000000000);
  EXPECT_EQ(i("u64"), 1ll << 40);
  EXPECT_EQ(i("i64"), -(1ll << 40));
  EXPECT_EQ(i("bool"), 1);
  EXPECT_EQ(gguf_float(*h.find("f32"), "t", "f32"), 0.5);
  EXPECT_EQ(gguf_float(*h.find("f64"), "t", "f64"), 0.1);
  EXPECT_EQ(gguf_string(*h.find("str"), "t", "str"), "h\xc3\xa9llo");
  const GgufValue* arr = h.find("arr");
  ASSERT_TRUE(arr && arr->is_array());
  EXPECT_EQ(arr->element_type, GgufValueType::INT32);
  EXPECT_EQ(arr->ints, (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(h.find("strs")->strings, (std::vector<std::string>{"a", ""}));
  const GgufValue* n = h.find("nested");
  ASSERT_EQ(n->arrays.size(), 2u);
  EXPECT_EQ(n->arrays[0].ints, (std::vector<int64_t>{7}));
  EXPECT_EQ(n->arrays[1].size(), 0u);
  EXPECT_EQ(h.metadata[0].first, "u8");  // file order kept
  EXPECT_EQ(h.find("missing"), nullptr);
  // Wrong-type access names the key.
  try {
    gguf_string(*h.find("u8"), "t.gguf", "u8");
    ADD_FAILURE();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("key 'u8' is UINT8, expected a STRING"),
              std::string::npos);
  }
  EXPECT_THROW(gguf_int(*h.find("arr"), "t", "arr"), FormatError);
}

// ---- dequantization: float64 per-element formulas of the block layouts ----

double f16d(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return static_cast<double>(float16_t::to_float(h));
}

/// Element i of one block, straight from the layout description.
double ref_elem(GgufTensorType t, const uint8_t* b, int i) {
  switch (t) {
    case GgufTensorType::Q8_0:
      return f16d(b) * static_cast<int8_t>(b[2 + i]);
    case GgufTensorType::Q4_0: {
      const int nib = i < 16 ? (b[2 + i] & 15) : (b[2 + i - 16] >> 4);
      return f16d(b) * (nib - 8);
    }
    case GgufTensorType::Q4_K: {
      const uint8_t* s = b + 4;
      const int j = i / 32;  // sub-block
      int sc, m;
      if (j < 4) {
        sc = s[j] % 64;
        m = s[4 + j] % 64;
      } else {  // low 4 bits in byte 8+(j-4), high 2 bits on top of bytes j-4 and j
        sc = (s[8 + j - 4] % 16) + 16 * (s[j - 4] / 64);
        m = (s[8 + j - 4] / 16) + 16 * (s[j] / 64);
      }
      const int byte = b[16 + 32 * (i / 64) + i % 32];
      const int q = (j % 2 == 0) ? byte % 16 : byte / 16;
      return f16d(b) * sc * q - f16d(b + 2) * m;
    }
    case GgufTensorType::Q6_K: {
      const int h = i / 128, k = (i % 128) / 32, l = i % 32;
      const int lo_byte = b[64 * h + l + 32 * (k % 2)];
      const int lo = k < 2 ? lo_byte % 16 : lo_byte / 16;
      const int hi = (b[128 + 32 * h + l] >> (2 * k)) % 4;
      const double sc = static_cast<int8_t>(b[192 + i / 16]);
      return f16d(b + 208) * sc * (lo + 16 * hi - 32);
    }
    default:
      ADD_FAILURE();
      return 0;
  }
}

/// Random block bytes with finite float16 scale fields in [-2, 2].
std::vector<uint8_t> random_blocks(GgufTensorType t, int nblocks, std::mt19937& rng) {
  const int64_t bb = gguf_block_bytes(t);
  std::vector<uint8_t> r(static_cast<size_t>(bb * nblocks));
  for (auto& x : r) x = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> u(-2, 2);
  auto set_f16 = [&](size_t at) {
    const uint16_t h = float16_t::from_float(u(rng));
    std::memcpy(&r[at], &h, 2);
  };
  for (int k = 0; k < nblocks; ++k) {
    const size_t o = static_cast<size_t>(k * bb);
    if (t == GgufTensorType::Q4_K) {
      set_f16(o);
      set_f16(o + 2);
    } else if (t == GgufTensorType::Q6_K) {
      set_f16(o + 208);
    } else {
      set_f16(o);
    }
  }
  return r;
}

TEST(Gguf, DequantizeMatchesFloat64Reference) {
  std::mt19937 rng(14);
  for (auto t :
       {GgufTensorType::Q8_0, GgufTensorType::Q4_0, GgufTensorType::Q4_K, GgufTensorType::Q6_K}) {
    const int nb = 40;
    const int64_t bs = gguf_block_size(t);
    auto blocks = random_blocks(t, nb, rng);
    std::vector<float> got(static_cast<size_t>(nb * bs));
    gguf_dequantize(t, blocks.data(), got.data(), nb * bs);
    double worst = 0;
    for (int k = 0; k < nb; ++k) {
      const uint8_t* b = blocks.data() + k * gguf_block_bytes(t);
      for (int i = 0; i < bs; ++i) {
        const double ref = ref_elem(t, b, i);
        const double g = got[static_cast<size_t>(k * bs + i)];
        // One float32 rounding of the last product or difference at most.
        EXPECT_LE(std::abs(g - ref), std::ldexp(std::abs(ref) + 64.0, -23))
            << gguf_tensor_type_name(t) << " block " << k << " element " << i;
        worst = std::max(worst, std::abs(g - ref));
      }
    }
    EXPECT_GT(std::abs(got[5]) + std::abs(got[100 % got.size()]), 0.0);
  }
  EXPECT_THROW(gguf_dequantize(GgufTensorType::Q5_K, nullptr, nullptr, 256), Unsupported);
}

/// Code j of a row of packed words (value j of a word at bits [j * bits, (j + 1) * bits)).
uint32_t code_at(const uint32_t* words, int bits, int64_t j) {
  const int64_t per = 32 / bits;
  return (words[j / per] >> ((j % per) * bits)) & ((1u << bits) - 1);
}

TEST(Gguf, AffineFormDequantizesBitEqualToTheBlockDecoder) {
  std::mt19937 rng(15);
  for (auto [t, bits] : {std::pair{GgufTensorType::Q8_0, 8}, std::pair{GgufTensorType::Q4_0, 4},
                         std::pair{GgufTensorType::Q4_K, 4}}) {
    SCOPED_TRACE(gguf_tensor_type_name(t));
    EXPECT_EQ(gguf_affine_bits(t), bits);
    const int nb = 24;
    const int64_t n = nb * gguf_block_size(t);
    auto blocks = random_blocks(t, nb, rng);
    std::vector<float> ref(static_cast<size_t>(n));
    gguf_dequantize(t, blocks.data(), ref.data(), n);
    std::vector<uint32_t> words(static_cast<size_t>(n * bits / 32));
    std::vector<float> sc(static_cast<size_t>(n / 32)), bi(sc.size());
    gguf_to_affine(t, blocks.data(), n, words.data(), sc.data(), bi.data());
    // Unpacked here from the layout's definition: scale * q + bias in float32, bit for bit.
    for (int64_t j = 0; j < n; ++j) {
      const auto g = static_cast<size_t>(j / 32);
      const float v = sc[g] * static_cast<float>(code_at(words.data(), bits, j)) + bi[g];
      ASSERT_EQ(v, ref[static_cast<size_t>(j)]) << "element " << j;
    }
    // And through the dequantize op (one row of n values).
    Array d = dequantize(
        Array(words, {1, std::ssize(words)}, uint32), Array(sc, {1, std::ssize(sc)}, float32),
        Array(bi, {1, std::ssize(bi)}, float32), {.group_size = 32, .bits = bits}, cpu_device);
    EXPECT_EQ(d.to_vector<float>(), ref);
  }
  for (auto t : {GgufTensorType::Q6_K, GgufTensorType::F16, GgufTensorType::Q5_K}) {
    EXPECT_EQ(gguf_affine_bits(t), 0);
    EXPECT_THROW(gguf_to_affine(t, nullptr, 256, nullptr, nullptr, nullptr), Unsupported);
  }
}

// ---- files: loading and errors ----

struct TmpFile {
  std::string path;
  explicit TmpFile(const std::vector<uint8_t>& b) {
    static int n = 0;
    path = (fs::temp_directory_path() /
            ("ingot_gguf_" + std::to_string(::getpid()) + "_" + std::to_string(n++) + ".gguf"))
               .string();
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  }
  ~TmpFile() { std::remove(path.c_str()); }
};

TEST(Gguf, LoadsPlainAndQuantizedTensors) {
  std::vector<float> m = {1, 2, 3, 4, 5, 6};  // ggml dims {3, 2}: 2 rows of 3
  std::vector<uint8_t> h16(6 * 2);
  for (int i = 0; i < 6; ++i) {
    uint16_t v = float16_t::from_float(m[static_cast<size_t>(i)] / 4);
    std::memcpy(&h16[static_cast<size_t>(2 * i)], &v, 2);
  }
  std::mt19937 rng(3);
  auto q8 = random_blocks(GgufTensorType::Q8_0, 4, rng);  // dims {64, 2}
  auto q6 = random_blocks(GgufTensorType::Q6_K, 2, rng);  // dims {256, 2}
  Bytes kv;
  kv.str("general.architecture").put<uint32_t>(8).str("none");
  auto b = build(kv, 1,
                 {{"m", {3, 2}, 0, f32_bytes(m)},
                  {"h", {3, 2}, 1, h16},
                  {"q8", {64, 2}, 8, q8},
                  {"q6", {256, 2}, 14, q6}});
  TmpFile tf(b);
  GgufFile f(tf.path);
  EXPECT_EQ(f.info("m").shape(), (Shape{2, 3}));
  Array a = f.load("m");
  EXPECT_EQ(a.shape(), (Shape{2, 3}));
  EXPECT_EQ(a.to_vector<float>(), m);
  Array h = f.load("h");
  EXPECT_EQ(h.dtype(), float16);
  auto hv = astype(h, float32).to_vector<float>();
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(hv[i], m[i] / 4);
  for (auto [name, t, blocks] :
       {std::tuple{"q8", GgufTensorType::Q8_0, &q8}, std::tuple{"q6", GgufTensorType::Q6_K, &q6}}) {
    Array q = f.load(name);
    EXPECT_EQ(q.dtype(), float32);
    auto v = q.to_vector<float>();
    const int64_t bs = gguf_block_size(t);
    for (size_t i = 0; i < v.size(); ++i) {
      const uint8_t* blk = blocks->data() + (i / static_cast<size_t>(bs)) * gguf_block_bytes(t);
      const double ref = ref_elem(t, blk, static_cast<int>(i % static_cast<size_t>(bs)));
      EXPECT_LE(std::abs(v[i] - ref), std::ldexp(std::abs(ref) + 64.0, -23)) << name << i;
    }
    // To bfloat16: the float32 values rounded once.
    auto vb = astype(f.load(name, bfloat16), float32).to_vector<float>();
    for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(vb[i], static_cast<float>(bfloat16_t(v[i])));
  }
  // The affine form of the Q8_0 matrix: 2 rows of 64 codes in 16 words, 2 groups per row.
  GgufAffineTensor af = f.load_affine("q8");
  EXPECT_EQ(af.bits, 8);
  EXPECT_EQ(af.words.shape(), (Shape{2, 16}));
  EXPECT_EQ(af.scales.shape(), (Shape{2, 2}));
  EXPECT_EQ(af.biases.dtype(), float32);
  EXPECT_EQ(dequantize(af.words, af.scales, af.biases, {.group_size = 32, .bits = 8}, cpu_device)
                .to_vector<float>(),
            f.load("q8").to_vector<float>());
  for (const char* name : {"q6", "m"}) EXPECT_THROW(f.load_affine(name), Unsupported) << name;
  try {
    f.info("nope");
    ADD_FAILURE();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("no tensor 'nope'"), std::string::npos);
  }
}

TEST(Gguf, ZeroElementQuantizedTensorAllocatesNothing) {
  // A zero dimension with a huge row length (found by fuzzing: the row buffer was sized by it).
  auto b = build({}, 0, {{"z", {1ull << 40, 0}, 8, {}}});
  TmpFile tf(b);
  GgufFile f(tf.path);
  Array z = f.load("z", bfloat16);
  EXPECT_EQ(z.shape(), (Shape{0, int64_t{1} << 40}));
  EXPECT_EQ(z.size(), 0);
  GgufAffineTensor az = f.load_affine("z");
  EXPECT_EQ(az.words.shape(), (Shape{0, (int64_t{1} << 40) / 4}));
  EXPECT_EQ(az.scales.shape(), (Shape{0, (int64_t{1} << 40) / 32}));
}

TEST(Gguf, UnsupportedTypeLoadsAsClearError) {
  std::vector<uint8_t> q5(176, 0);
  auto b = build({}, 0, {{"w", {256}, 13, q5}});
  TmpFile tf(b);
  GgufFile f(tf.path);
  try {
    f.load("w");
    ADD_FAILURE();
  } catch (const Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'w' has type Q5_K"), std::string::npos);
  }
}

std::vector<uint8_t> good_file() {
  Bytes kv;
  kv.str("general.architecture").put<uint32_t>(8).str("none");
  kv.str("a").put<uint32_t>(9).put<uint32_t>(4).put<uint64_t>(2).put<uint32_t>(1).put<uint32_t>(2);
  return build(kv, 2, {{"w", {32, 2}, 8, std::vector<uint8_t>(68, 0)}});
}

TEST(Gguf, EveryTruncationIsAFormatError) {
  auto b = good_file();
  ASSERT_NO_THROW(parse(b));
  // The last 28 bytes pad the 68-byte tensor to the alignment: nothing needs them.
  for (size_t n = 0; n < b.size() - 28; ++n) {
    std::vector<uint8_t> cut(b.begin(), b.begin() + static_cast<long>(n));
    EXPECT_THROW(parse(cut), FormatError) << "prefix of " << n << " bytes";
  }
  std::vector<uint8_t> unpadded(b.begin(), b.end() - 28);
  EXPECT_NO_THROW(parse(unpadded));
}

TEST(Gguf, CorruptHeadersNameTheProblem) {
  auto b = good_file();
  auto patched = [&](size_t at, std::vector<uint8_t> bytes) {
    auto c = b;
    std::copy(bytes.begin(), bytes.end(), c.begin() + static_cast<long>(at));
    return c;
  };
  expect_format_error(patched(0, {'G', 'G', 'U', 'X'}), {"not a GGUF file"});
  expect_format_error(patched(4, {1, 0, 0, 0}), {"unsupported GGUF version 1"});
  expect_format_error(patched(4, {4, 0, 0, 0}), {"unsupported GGUF version 4"});
  expect_format_error(patched(4, {0, 0, 0, 3}), {"big-endian"});
  // Absurd counts (tensor count, kv count) are rejected before anything is allocated.
  expect_format_error(patched(8, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}),
                      {"tensor count"});
  expect_format_error(patched(16, {0, 0, 0, 0, 0, 0, 1, 0}), {"key/value count"});

  // Field offsets of good_file(): header 24; key 1: 8+20 name, 4 type, 8+4 value.
  const size_t kv2 = 24 + 8 + 20 + 4 + 8 + 4;            // "a"
  const size_t arr_len = kv2 + 8 + 1 + 4 + 4;            // array length field
  const size_t tinfo = arr_len + 8 + 8;                  // tensor info "w"
  const size_t ndims = tinfo + 8 + 1, dim0 = ndims + 4;  // n_dims, dims
  const size_t type = dim0 + 16, offset = type + 4;      // type id, data offset
  expect_format_error(patched(kv2 + 9, {13, 0, 0, 0}), {"key 'a'", "unknown value type 13"});
  expect_format_error(patched(kv2 + 13, {77, 0, 0, 0}), {"key 'a'", "unknown array element"});
  expect_format_error(patched(arr_len, {0, 0, 0, 0, 0, 0, 0, 1}), {"key 'a'", "array length"});
  expect_format_error(patched(kv2, {0, 0, 0, 0, 0, 0, 0, 1}), {"runs past the end"});
  expect_format_error(patched(ndims, {5, 0, 0, 0}), {"tensor 'w' has 5 dimensions"});
  expect_format_error(patched(ndims, {0, 0, 0, 0}), {"tensor 'w' has 0 dimensions"});
  expect_format_error(patched(dim0, {48, 0, 0, 0, 0, 0, 0, 0}),
                      {"tensor 'w'", "not a multiple of the Q8_0 block size 32"});
  expect_format_error(patched(dim0 + 8, {0, 0, 0, 0, 0, 0, 0, 0x40}), {"tensor 'w'", "overflows"});
  expect_format_error(patched(type, {99, 0, 0, 0}), {"tensor 'w'", "unknown tensor type id 99"});
  expect_format_error(patched(type, {0, 0, 0, 0}), {"tensor 'w'", "runs past the end"});
  expect_format_error(patched(offset, {64, 0, 0, 0}), {"tensor 'w'", "runs past the end"});
  expect_format_error(patched(offset, {0, 0, 0, 0, 0, 0, 0, 0x80}), {"tensor 'w'", "past"});
  expect_format_error(patched(offset, {8, 0, 0, 0}), {"tensor 'w'",
                                                      "not a multiple of the "
                                                      "alignment 32"});
}

TEST(Gguf, BadKeysAndValues) {
  auto one = [](const Bytes& kv, uint64_t n = 1) { return build(kv, n, {}); };
  Bytes dup;
  dup.str("k").put<uint32_t>(4).put<uint32_t>(1).str("k").put<uint32_t>(4).put<uint32_t>(2);
  expect_format_error(one(dup, 2), {"duplicate metadata key 'k'"});
  Bytes bad_bool;
  bad_bool.str("b").put<uint32_t>(7).put<uint8_t>(2);
  expect_format_error(one(bad_bool), {"key 'b'", "bool byte is 2"});
  Bytes align;
  align.str("general.alignment").put<uint32_t>(4).put<uint32_t>(24);
  expect_format_error(one(align), {"general.alignment", "not a power of two"});
  Bytes align_t;
  align_t.str("general.alignment").put<uint32_t>(8).str("32");
  expect_format_error(one(align_t), {"general.alignment", "expected UINT32"});
  Bytes deep;  // arrays of arrays nested 9 deep
  deep.str("d").put<uint32_t>(9);
  for (int i = 0; i < 9; ++i) deep.put<uint32_t>(9).put<uint64_t>(1);
  deep.put<uint32_t>(0).put<uint64_t>(0);
  expect_format_error(one(deep), {"key 'd'", "nested deeper"});
  Bytes long_str;
  long_str.str("s").put<uint32_t>(8).put<uint64_t>(1000).put<uint32_t>(0);
  expect_format_error(one(long_str), {"key 's'", "runs past the end"});
  auto dup_t = build(
      {}, 0, {{"w", {4}, 0, std::vector<uint8_t>(16)}, {"w", {4}, 0, std::vector<uint8_t>(16)}});
  expect_format_error(dup_t, {"duplicate tensor 'w'"});
}

TEST(Gguf, MissingFileIsIoError) {
  EXPECT_THROW(GgufFile("/nonexistent/x.gguf"), IoError);
}

}  // namespace
}  // namespace ingot::test
