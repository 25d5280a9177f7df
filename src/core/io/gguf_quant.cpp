// Dequantization of ggml block formats (written from the block layouts of the GGUF/ggml
// documentation): Q8_0 and Q4_0 (32 elements, one float16 scale), Q4_K (256 elements in 8
// sub-blocks with 6-bit scales and mins) and Q6_K (256 elements in 16 sub-blocks, int8 scales).
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

}  // namespace ingot
