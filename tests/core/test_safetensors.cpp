// safetensors reader/writer: round trips of every dtype and layout, deterministic bytes,
// zero-copy mapping lifetime, widened and fp8 stored types, casts on load, header errors.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/io/safetensors.h"
#include "core/ops/elementwise.h"
#include "test_util.h"
#include "util/mmap.h"

namespace ingot::test {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path dir;
  TempDir() {
    dir = fs::temp_directory_path() /
          ("ingot_st_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::create_directories(dir);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  static int& counter() {
    static int c = 0;
    return c;
  }
  std::string file(const std::string& n) const { return (dir / n).string(); }
};

std::vector<uint8_t> read_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

/// Writes a raw safetensors file: 8-byte length, `header` verbatim, then `data`.
void write_raw(const std::string& p, const std::string& header, const std::vector<uint8_t>& data) {
  std::ofstream f(p, std::ios::binary);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) f.put(static_cast<char>(n >> (8 * i)));
  f << header;
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}

template <typename T>
std::vector<uint8_t> bytes_of(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

TEST(Safetensors, RoundTripEveryDtypeAndLayout) {
  TempDir td;
  std::map<std::string, Array> arrays;
  std::map<std::string, std::vector<double>> want;
  uint32_t seed = 1;
  for (Dtype t : kAllDtypes) {
    for (Layout l : kAllLayouts) {
      Shape shape = l == Layout::broadcast ? Shape{3, 7} : Shape{5, 3};
      auto vals = random_values(shape_size(shape), t, seed++);
      std::string name = std::string(dtype_name(t)) + "." + layout_name(l);
      arrays[name] = make_array(vals, shape, t, l);
      want[name] = vals;
    }
    std::string s = std::string(dtype_name(t)) + ".scalar";
    auto v = random_values(1, t, seed++);
    arrays[s] = Array(v, {}, t);
    want[s] = v;
    arrays[std::string(dtype_name(t)) + ".empty"] = Array(std::vector<double>{}, {0, 3}, t);
    want[std::string(dtype_name(t)) + ".empty"] = {};
  }
  std::string p = td.file("all.safetensors");
  save_safetensors(p, arrays, {{"format", "pt"}, {"note", "quote \" and ünïcode"}});
  std::map<std::string, std::string> meta;
  auto loaded = load_safetensors(p, {}, &meta);
  EXPECT_EQ(meta.size(), 2u);
  EXPECT_EQ(meta["note"], "quote \" and ünïcode");
  ASSERT_EQ(loaded.size(), arrays.size());
  for (auto& [name, a] : arrays) {
    const Array& b = loaded.at(name);
    EXPECT_EQ(b.dtype(), a.dtype()) << name;
    EXPECT_EQ(b.shape(), a.shape()) << name;
    EXPECT_EQ(values_of(b), want[name]) << name;
  }
}

TEST(Safetensors, DeterministicAlignedOutput) {
  TempDir td;
  std::map<std::string, Array> m;
  m["b"] = Array(std::vector<float>{1, 2, 3}, {3}, bfloat16);  // 6 bytes: would misalign
  m["a"] = Array(std::vector<double>{1, 2, 3}, {3}, float64);
  m["c"] = Array(std::vector<int32_t>{7}, {1}, int8);
  m["d"] = Array(std::vector<float>{4, 5}, {2}, float32);
  save_safetensors(td.file("1.safetensors"), m, {{"k", "v"}});
  save_safetensors(td.file("2.safetensors"), m, {{"k", "v"}});
  auto b1 = read_bytes(td.file("1.safetensors")), b2 = read_bytes(td.file("2.safetensors"));
  EXPECT_EQ(b1, b2);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | b1[i];
  EXPECT_EQ(n % 8, 0u);
  std::string header(b1.begin() + 8, b1.begin() + 8 + static_cast<long>(n));
  EXPECT_EQ(header.front(), '{');
  EXPECT_EQ(header.rfind("__metadata__"), 2u);  // metadata first
  SafetensorsFile f(td.file("1.safetensors"));
  for (auto& t : f.header().tensors) {  // every tensor aligned for its type: zero-copy
    Array a = f.load(t.name);
    EXPECT_TRUE(a.data_shared()->deleter != nullptr) << t.name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.raw_ptr()) % a.itemsize(), 0u) << t.name;
  }
  EXPECT_EQ(f.header().tensors.front().name, "a");  // widest first
}

TEST(Safetensors, MappingOutlivesFileObjectAndUnlink) {
  TempDir td;
  std::string p = td.file("w.safetensors");
  std::vector<float> v(1000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) * 0.5f;
  save_safetensors(p, {{"w", Array(v, {10, 100})}});
  Array a;
  {
    SafetensorsFile f(p);
    a = f.load("w");
  }
  fs::remove(p);
  EXPECT_EQ(a.to_vector<float>(), v);
  Array s = a * 2.0f;  // usable as an op input
  EXPECT_FLOAT_EQ(s.to_vector<float>()[999], 999.f);
}

TEST(Safetensors, CastOnLoad) {
  TempDir td;
  std::string p = td.file("c.safetensors");
  save_safetensors(p, {{"f", Array(std::vector<float>{1.5f, -2.25f, 3.0f}, {3})},
                       {"i", Array(std::vector<int32_t>{1, 2, 3}, {3})}});
  SafetensorsFile f(p);
  Array h = f.load("f", {.dtype = bfloat16});
  EXPECT_EQ(h.dtype(), bfloat16);
  EXPECT_EQ(values_of(h), (std::vector<double>{1.5, -2.25, 3.0}));
  EXPECT_EQ(f.load("i", {.dtype = bfloat16}).dtype(), int32);  // integers keep their type
  Array c = f.load("f", {.copy = true});
  EXPECT_TRUE(c.data_shared()->deleter == nullptr);
  EXPECT_EQ(values_of(c), (std::vector<double>{1.5, -2.25, 3.0}));
}

TEST(Safetensors, WidenedIntegerTypes) {
  TempDir td;
  std::string p = td.file("ints.safetensors");
  std::vector<int16_t> i16 = {-32768, -1, 0, 1, 32767};
  std::vector<uint16_t> u16 = {0, 1, 65535};
  std::vector<uint64_t> u64 = {0, 5, (1ull << 63) - 1};
  std::vector<uint8_t> data = bytes_of(u64);
  auto a = bytes_of(i16), b = bytes_of(u16);
  std::string h = R"({"u64":{"dtype":"U64","shape":[3],"data_offsets":[0,24]},)"
                  R"("i16":{"dtype":"I16","shape":[5],"data_offsets":[24,34]},)"
                  R"("u16":{"dtype":"U16","shape":[3],"data_offsets":[34,40]}})";
  data.insert(data.end(), a.begin(), a.end());
  data.insert(data.end(), b.begin(), b.end());
  write_raw(p, h, data);
  SafetensorsFile f(p);
  EXPECT_EQ(f.load("i16").dtype(), int32);
  EXPECT_EQ(f.load("i16").to_vector<int32_t>(), (std::vector<int32_t>{-32768, -1, 0, 1, 32767}));
  EXPECT_EQ(f.load("u16").to_vector<int32_t>(), (std::vector<int32_t>{0, 1, 65535}));
  EXPECT_EQ(f.load("u64").dtype(), int64);
  EXPECT_EQ(f.load("u64").to_vector<int64_t>()[2], INT64_MAX);
  // a U64 value that does not fit int64
  std::string p2 = td.file("big.safetensors");
  write_raw(p2, R"({"big":{"dtype":"U64","shape":[1],"data_offsets":[0,8]}})",
            bytes_of(std::vector<uint64_t>{1ull << 63}));
  SafetensorsFile f2(p2);
  expect_error<FormatError>([&] { f2.load("big"); }, "'big': U64 value does not fit int64");
}

/// Reference decoding of the fp8 formats, written from their definitions.
double ref_fp8(uint8_t b, int ebits, int mbits, int bias, bool fn) {
  int sign = b >> 7, e = (b >> mbits) & ((1 << ebits) - 1), m = b & ((1 << mbits) - 1);
  int emax = (1 << ebits) - 1;
  if (fn && e == emax && m == (1 << mbits) - 1) return NAN;
  if (!fn && e == emax) return m ? NAN : (sign ? -INFINITY : INFINITY);
  double v =
      e == 0 ? std::ldexp(m, 1 - bias - mbits) : std::ldexp(1.0 + std::ldexp(m, -mbits), e - bias);
  return sign ? -v : v;
}

TEST(Safetensors, Fp8ConvertExactly) {
  TempDir td;
  std::string p = td.file("fp8.safetensors");
  std::vector<uint8_t> all(256);
  for (int i = 0; i < 256; ++i) all[i] = static_cast<uint8_t>(i);
  std::vector<uint8_t> data = all;
  data.insert(data.end(), all.begin(), all.end());
  data.insert(data.end(), all.begin(), all.end());
  write_raw(p,
            R"({"e4m3":{"dtype":"F8_E4M3","shape":[256],"data_offsets":[0,256]},)"
            R"("e5m2":{"dtype":"F8_E5M2","shape":[16,16],"data_offsets":[256,512]},)"
            R"("e8m0":{"dtype":"F8_E8M0","shape":[256],"data_offsets":[512,768]}})",
            data);
  SafetensorsFile f(p);
  std::vector<double> w4(256), w5(256), w8(256);
  for (int b = 0; b < 256; ++b) {
    w4[b] = ref_fp8(static_cast<uint8_t>(b), 4, 3, 7, true);
    w5[b] = ref_fp8(static_cast<uint8_t>(b), 5, 2, 15, false);
    w8[b] = b == 255 ? NAN : std::ldexp(1.0, b - 127);
  }
  EXPECT_EQ(f.load("e4m3").dtype(), bfloat16);
  expect_close(values_of(f.load("e4m3")), w4, 0, 0, "e4m3");
  expect_close(values_of(f.load("e5m2")), w5, 0, 0, "e5m2");
  expect_close(values_of(f.load("e8m0")), w8, 0, 0, "e8m0");
  EXPECT_EQ(f.load("e4m3", {.dtype = float32}).dtype(), float32);
  EXPECT_EQ(w4[0x7E], 448.0);  // the E4M3 maximum
}

TEST(Safetensors, MisalignedDataIsCopiedAndBoolNormalised) {
  TempDir td;
  std::string p = td.file("odd.safetensors");
  // A 3-byte header padding makes the data section start at an odd offset.
  std::vector<float> v = {1.f, 2.f, -3.5f};
  auto data = bytes_of(v);
  data.push_back(2);  // a bool byte that is neither 0 nor 1
  data.push_back(0);
  write_raw(p,
            R"({"f":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
            R"("b":{"dtype":"BOOL","shape":[2],"data_offsets":[12,14]}}   )",
            data);
  SafetensorsFile f(p);
  Array a = f.load("f");
  EXPECT_TRUE(a.data_shared()->deleter == nullptr);  // copied: not aligned for float
  EXPECT_EQ(a.to_vector<float>(), v);
  EXPECT_EQ(f.load("b").to_vector<bool>(), (std::vector<bool>{true, false}));
}

TEST(Safetensors, EmptyFileAndNoTensors) {
  TempDir td;
  save_safetensors(td.file("e.safetensors"), {});
  EXPECT_TRUE(SafetensorsFile(td.file("e.safetensors")).names().empty());
  expect_error<InvalidArgument>(
      [&] {
        save_safetensors(td.file("x.safetensors"), {{"__metadata__", Array(1.f)}});
      },
      "'__metadata__'");
  expect_error<IoError>([&] { SafetensorsFile(td.file("missing.safetensors")); },
                        "missing.safetensors");
  expect_error<IoError>([&] { save_safetensors(td.file("no/such/dir.safetensors"), {}); },
                        "no/such/dir.safetensors");
  expect_error<FormatError>([&] { SafetensorsFile(td.file("e.safetensors")).info("w"); },
                            "no tensor named 'w'");
}

struct BadHeader {
  const char* what;
  std::string header;
  size_t data_bytes;
  std::string needle;
};

TEST(Safetensors, HeaderErrors) {
  const std::string T = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  std::vector<BadHeader> cases = {
      {"not json", "{not json", 0, "header is not valid JSON"},
      {"array", "[1,2]", 0, "must start with '{'"},
      {"duplicate tensor", "{" + T + "," + T + "}", 8, "duplicate tensor name 'w'"},
      {"duplicate key", R"({"w":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})",
       8, "tensor 'w': duplicate key 'dtype'"},
      {"entry not object", R"({"w":5})", 0, "tensor 'w': entry is the number 5"},
      {"unknown dtype", R"({"w":{"dtype":"F7","shape":[2],"data_offsets":[0,8]}})", 8,
       "tensor 'w': unknown dtype 'F7'"},
      {"dtype not string", R"({"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", 8,
       "tensor 'w': \"dtype\" is the number 4"},
      {"missing dtype", R"({"w":{"shape":[2],"data_offsets":[0,8]}})", 8,
       "tensor 'w': missing \"dtype\""},
      {"missing shape", R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", 8,
       "tensor 'w': missing \"shape\""},
      {"negative dim", R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8,
       "tensor 'w': shape [-2] has the number -2"},
      {"float dim", R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8,
       "non-integer number"},
      {"missing offsets", R"({"w":{"dtype":"F32","shape":[2]}})", 8,
       "tensor 'w': missing \"data_offsets\""},
      {"offsets arity", R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8,
       "expected [begin, end]"},
      {"reversed offsets", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8,
       "end before they begin"},
      {"size mismatch", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8,
       "shape [3] of F32 needs 12 bytes but data_offsets [0,8] hold 8"},
      {"huge shape",
       R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})", 8,
       "more than 2^64"},
      {"past end", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8,
       "run past the end of the data section (8 bytes"},
      {"overlap",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       12, "tensors 'a' [0, 8] and 'b' [4, 12] overlap"},
      {"gap",
       R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
       12, "gap of 4 bytes between tensor 'a'"},
      {"trailing", "{" + T + "}", 12, "4 unused bytes after the last tensor 'w'"},
      {"metadata type", R"({"__metadata__":{"a":1}})", 0, "\"__metadata__\" key 'a' is the number"},
      {"deep nesting", "{\"w\":" + std::string(40, '[') + std::string(40, ']') + "}", 0,
       "nests deeper"},
  };
  TempDir td;
  for (auto& c : cases) {
    std::string p = td.file("bad.safetensors");
    write_raw(p, c.header, std::vector<uint8_t>(c.data_bytes, 0));
    try {
      SafetensorsFile f(p);
      ADD_FAILURE() << c.what << ": no error";
    } catch (const FormatError& e) {
      std::string m = e.what();
      EXPECT_EQ(m.rfind("[safetensors] " + p, 0), 0u) << c.what << ": " << m;
      EXPECT_NE(m.find(c.needle), std::string::npos) << c.what << ": " << m;
    }
  }
}

TEST(Safetensors, LengthPrefixErrors) {
  TempDir td;
  std::string p = td.file("short.safetensors");
  {
    std::ofstream f(p, std::ios::binary);
    f << "abc";
  }
  expect_error<FormatError>([&] { SafetensorsFile f(p); }, "file is 3 bytes, too short");
  write_raw(p, "{}", {});
  {  // rewrite the length as larger than the file
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    f.put(static_cast<char>(200));
  }
  expect_error<FormatError>([&] { SafetensorsFile f(p); },
                            "header length 200 bytes is larger than the file (10 bytes");
  {
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3);
    f.put(static_cast<char>(0x10));  // 0x10000000 + ... > 100 MB
  }
  expect_error<FormatError>([&] { SafetensorsFile f(p); }, "exceeds the 100 MB limit");
}

TEST(Safetensors, ParseFromMemoryNeverCrashesOnPrefixes) {
  // Every prefix of a valid file is rejected cleanly (the fuzz target covers the rest).
  TempDir td;
  std::string p = td.file("v.safetensors");
  save_safetensors(p, {{"x", Array(std::vector<float>{1, 2, 3, 4}, {2, 2})}}, {{"a", "b"}});
  auto bytes = read_bytes(p);
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_THROW(parse_safetensors_header(bytes.data(), n, n, "mem"), FormatError) << n;
  EXPECT_EQ(
      parse_safetensors_header(bytes.data(), bytes.size(), bytes.size(), "mem").tensors.size(), 1u);
}

}  // namespace
}  // namespace ingot::test
