// Dequantization of ggml block formats (written from the block layouts of the GGUF/ggml
// documentation): Q8_0 and Q4_0 (32 elements, one float16 scale), Q4_K (256 elements in 8
// sub-blocks with 6-bit scales and mins) and Q6_K (256 elements in 16 sub-blocks, int8 scales);
// and the exact rewrite of Q8_0, Q4_0 and Q4_K as the affine groups of core/ops/quantized.h.
#include <cstring>

#include "core/half.h"
#include "core/io/gguf.h"
#include "util/error.h"

namespace ingot {

namespace {

float f16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return float16_t::to_float(h);
}

// Q8_0: [d: f16][q: int8 x 32]; x = d * q.
void dequant_q8_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(static_cast<int8_t>(b[2 + j]));
}

// Q4_0: [d: f16][16 bytes]; element j < 16 is the low nibble of byte j, element j + 16 its
// high nibble; x = d * (nibble - 8).
void dequant_q4_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const uint8_t* q = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>((q[j] & 0x0F) - 8);
    y[j + 16] = d * static_cast<float>((q[j] >> 4) - 8);
  }
}

// The 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes of a Q4_K block:
// sub-blocks 0..3 keep theirs in the low 6 bits of bytes j (scale) and j + 4 (min); sub-blocks
// 4..7 keep their low 4 bits in the nibbles of byte j + 4 and their top 2 bits in the top bits
// of bytes j - 4 (scale) and j (min).
void q4k_scale_min(int j, const uint8_t* s, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 63;
    m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q4_K: [d: f16][dmin: f16][scales: 12][qs: 128]. Each 64-element chunk c uses 32 bytes of qs:
// low nibbles are sub-block 2c, high nibbles sub-block 2c + 1; x = d*sc*q - dmin*m.
void dequant_q4_k(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const float dmin = f16_at(b + 2);
  const uint8_t* s = b + 4;
  const uint8_t* q = b + 16;
  for (int c = 0; c < 4; ++c) {
    int sc0, m0, sc1, m1;
    q4k_scale_min(2 * c, s, sc0, m0);
    q4k_scale_min(2 * c + 1, s, sc1, m1);
    const float d0 = d * static_cast<float>(sc0), mm0 = dmin * static_cast<float>(m0);
    const float d1 = d * static_cast<float>(sc1), mm1 = dmin * static_cast<float>(m1);
    for (int l = 0; l < 32; ++l) {
      y[64 * c + l] = d0 * static_cast<float>(q[32 * c + l] & 0x0F) - mm0;
      y[64 * c + 32 + l] = d1 * static_cast<float>(q[32 * c + l] >> 4) - mm1;
    }
  }
}

// Q6_K: [ql: 128][qh: 64][scales: int8 x 16][d: f16]. Two halves of 128 elements; in half h,
// element 32*k + l (k = 0..3, l = 0..31) takes 4 low bits from ql[64h + l + 32*(k&1)] (low
// nibble for k < 2, high for k >= 2) and 2 high bits from qh[32h + l] bits 2k..2k+1; its value
// is d * scales[8h + 2k + l/16] * (q - 32).
void dequant_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = f16_at(b + 208);
  for (int h = 0; h < 2; ++h) {
    for (int k = 0; k < 4; ++k) {
      for (int l = 0; l < 32; ++l) {
        const uint8_t lo_byte = ql[64 * h + l + 32 * (k & 1)];
        const int lo = k < 2 ? (lo_byte & 0x0F) : (lo_byte >> 4);
        const int hi = (qh[32 * h + l] >> (2 * k)) & 3;
        const int q = (lo | (hi << 4)) - 32;
        y[128 * h + 32 * k + l] =
            d * static_cast<float>(sc[8 * h + 2 * k + l / 16]) * static_cast<float>(q);
      }
    }
  }
}

// ---- the affine form: value = scale * q + bias per group of 32, q packed in uint32 words
// (value j of a word at bits [j * bits, (j + 1) * bits), consecutive elements) ----

/// Packs 32 codes of `bits` bits into 32 * bits / 32 words.
void pack32(const uint8_t* q, int bits, uint32_t* w) {
  const int per = 32 / bits;
  for (int i = 0; i < bits; ++i) {
    uint32_t word = 0;
    for (int j = 0; j < per; ++j) word |= static_cast<uint32_t>(q[i * per + j]) << (j * bits);
    w[i] = word;
  }
}

// Q8_0: q + 128 in 0..255, scale d, bias -128 d (exact: d is a float16 and 128 a power of two;
// d * (q + 128) has at most 19 significant bits, so scale * q + bias is d * q exactly).
void affine_q8_0(const uint8_t* b, uint32_t* w, float* s, float* z) {
  const float d = f16_at(b);
  uint8_t q[32];
  for (int j = 0; j < 32; ++j) q[j] = static_cast<uint8_t>(static_cast<int8_t>(b[2 + j]) + 128);
  pack32(q, 8, w);
  s[0] = d;
  z[0] = -128.0f * d;
}

// Q4_0: the nibble as stored, scale d, bias -8 d (same argument).
void affine_q4_0(const uint8_t* b, uint32_t* w, float* s, float* z) {
  const float d = f16_at(b);
  uint8_t q[32];
  for (int j = 0; j < 16; ++j) {
    q[j] = b[2 + j] & 0x0F;
    q[j + 16] = b[2 + j] >> 4;
  }
  pack32(q, 4, w);
  s[0] = d;
  z[0] = -8.0f * d;
}

// Q4_K: each 32-element sub-block is one group with scale d * sc (exact in float32: 11 + 6
// bits) and bias -dmin * m; scale * q is exact (21 bits), so scale * q + bias rounds once, as
// dequant_q4_k's d * sc * q - dmin * m does.
void affine_q4_k(const uint8_t* b, uint32_t* w, float* s, float* z) {
  const float d = f16_at(b);
  const float dmin = f16_at(b + 2);
  const uint8_t* sm = b + 4;
  const uint8_t* qs = b + 16;
  for (int c = 0; c < 4; ++c) {
    uint8_t lo[32], hi[32];
    for (int l = 0; l < 32; ++l) {
      lo[l] = qs[32 * c + l] & 0x0F;
      hi[l] = qs[32 * c + l] >> 4;
    }
    for (int h = 0; h < 2; ++h) {
      int sc, m;
      q4k_scale_min(2 * c + h, sm, sc, m);
      pack32(h ? hi : lo, 4, w + 4 * (2 * c + h));
      s[2 * c + h] = d * static_cast<float>(sc);
      z[2 * c + h] = -(dmin * static_cast<float>(m));
    }
  }
}

}  // namespace

void gguf_dequantize(GgufTensorType t, const uint8_t* src, float* dst, int64_t n) {
  void (*block)(const uint8_t*, float*) = nullptr;
  switch (t) {
    case GgufTensorType::Q8_0:
      block = dequant_q8_0;
      break;
    case GgufTensorType::Q4_0:
      block = dequant_q4_0;
      break;
    case GgufTensorType::Q4_K:
      block = dequant_q4_k;
      break;
    case GgufTensorType::Q6_K:
      block = dequant_q6_k;
      break;
    default:
      raise<Unsupported>("[gguf] cannot dequantize tensor type {}", gguf_tensor_type_name(t));
  }
  const int64_t bs = gguf_block_size(t), bb = gguf_block_bytes(t);
  if (n % bs != 0)
    raise("[gguf] {} dequantization of {} elements: not a whole number of {}-element blocks",
          gguf_tensor_type_name(t), n, bs);
  for (int64_t i = 0; i < n / bs; ++i) block(src + i * bb, dst + i * bs);
}

int gguf_affine_bits(GgufTensorType t) {
  switch (t) {
    case GgufTensorType::Q8_0:
      return 8;
    case GgufTensorType::Q4_0:
    case GgufTensorType::Q4_K:
      return 4;
    default:
      return 0;
  }
}

void gguf_to_affine(GgufTensorType t, const uint8_t* src, int64_t n, uint32_t* words, float* scales,
                    float* biases) {
  void (*block)(const uint8_t*, uint32_t*, float*, float*) = nullptr;
  if (t == GgufTensorType::Q8_0) block = affine_q8_0;
  if (t == GgufTensorType::Q4_0) block = affine_q4_0;
  if (t == GgufTensorType::Q4_K) block = affine_q4_k;
  if (!block)
    raise<Unsupported>("[gguf] tensor type {} has no exact affine form", gguf_tensor_type_name(t));
  const int64_t bs = gguf_block_size(t), bb = gguf_block_bytes(t);
  if (n % bs != 0)
    raise("[gguf] {} of {} elements: not a whole number of {}-element blocks",
          gguf_tensor_type_name(t), n, bs);
  const int bits = gguf_affine_bits(t);
  const int64_t groups = bs / 32, words_per_block = bs * bits / 32;
  for (int64_t i = 0; i < n / bs; ++i)
    block(src + i * bb, words + i * words_per_block, scales + i * groups, biases + i * groups);
}

}  // namespace ingot
