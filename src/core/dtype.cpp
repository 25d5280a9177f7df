// Dtype names, sizes and the promotion table.
#include "core/dtype.h"

#include "util/error.h"

namespace ingot {

size_t size_of(Dtype t) {
  switch (t) {
    case Dtype::bool_:
    case Dtype::uint8:
    case Dtype::int8:
      return 1;
    case Dtype::float16:
    case Dtype::bfloat16:
      return 2;
    case Dtype::int32:
    case Dtype::uint32:
    case Dtype::float32:
      return 4;
    case Dtype::int64:
    case Dtype::float64:
      return 8;
  }
  return 0;
}

std::string_view dtype_name(Dtype t) {
  switch (t) {
    case Dtype::bool_:
      return "bool";
    case Dtype::uint8:
      return "uint8";
    case Dtype::int8:
      return "int8";
    case Dtype::int32:
      return "int32";
    case Dtype::uint32:
      return "uint32";
    case Dtype::int64:
      return "int64";
    case Dtype::float16:
      return "float16";
    case Dtype::bfloat16:
      return "bfloat16";
    case Dtype::float32:
      return "float32";
    case Dtype::float64:
      return "float64";
  }
  return "?";
}

Dtype dtype_from_name(std::string_view n) {
  for (int i = 0; i < kNumDtypes; ++i)
    if (dtype_name(static_cast<Dtype>(i)) == n) return static_cast<Dtype>(i);
  if (n == "bf16") return Dtype::bfloat16;
  if (n == "f16" || n == "fp16" || n == "half") return Dtype::float16;
  if (n == "f32" || n == "fp32" || n == "float") return Dtype::float32;
  if (n == "f64" || n == "fp64" || n == "double") return Dtype::float64;
  raise(
      "[dtype] unknown dtype '{}' (expected bool, uint8, int8, int32, uint32, int64, "
      "float16, bfloat16, float32 or float64)",
      n);
}

bool is_floating(Dtype t) {
  return t == Dtype::float16 || t == Dtype::bfloat16 || t == Dtype::float32 || t == Dtype::float64;
}
bool is_integral(Dtype t) {
  return !is_floating(t);
}
bool is_signed_int(Dtype t) {
  return t == Dtype::int8 || t == Dtype::int32 || t == Dtype::int64;
}
bool is_unsigned_int(Dtype t) {
  return t == Dtype::uint8 || t == Dtype::uint32;
}

Dtype promote_types(Dtype a, Dtype b) {
  if (a == b) return a;
  // Order: bool < ints < floats. Mixed int/float -> the float. Floats: f16+bf16 -> f32.
  if (a == Dtype::bool_) return b;
  if (b == Dtype::bool_) return a;
  bool fa = is_floating(a), fb = is_floating(b);
  if (fa && fb) {
    if (a == Dtype::float64 || b == Dtype::float64) return Dtype::float64;
    return Dtype::float32;  // f16/bf16 mixes and anything with f32
  }
  if (fa) return a;
  if (fb) return b;
  // both integers
  auto bits = [](Dtype t) { return static_cast<int>(size_of(t)) * 8; };
  bool sa = is_signed_int(a), sb = is_signed_int(b);
  if (sa == sb) return bits(a) >= bits(b) ? a : b;
  Dtype s = sa ? a : b, u = sa ? b : a;
  if (bits(s) > bits(u)) return s;
  // unsigned at least as wide as signed: next wider signed
  if (bits(u) == 8) return Dtype::int32;  // uint8+int8: NumPy says int16, which we lack
  return Dtype::int64;                    // uint32 with int8/int32/int64 -> int64
}

}  // namespace ingot
