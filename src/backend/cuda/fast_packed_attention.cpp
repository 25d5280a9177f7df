// PackedAttention::eval_cuda: the cos/sin table of the sequences' positions
// (launch_rope_table), then the packed attention kernel (packed_attention.cu), reading qkv, the
// norm weights and the prefix in place; operands the kernel cannot read in place (a strided or
// misaligned layout) are copied row-major first. fast::packed_attention sends the problems the
// kernel does not take (float32, other head dims) to its reference composition instead.
#include <memory>
#include <optional>

#include "backend/cuda/fast_rope_kernels.h"
#include "backend/cuda/packed_attention_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/fast.h"
#include "util/env.h"

namespace ingot {

namespace {

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

/// x's buffer when it is row-contiguous along its last axis with 16-byte aligned rows (row
/// stride `*row_stride`, elements), else a row-major copy in `copy`.
const void* rows_in_place(const Array& x, int64_t* row_stride, std::unique_ptr<cu::Scratch>& copy,
                          cudaStream_t s) {
  const int64_t es = static_cast<int64_t>(x.itemsize());
  const int nd = x.ndim();
  const Strides& st = x.strides();
  bool ok = aligned16(x.raw_ptr()) && (x.shape(nd - 1) <= 1 || st[nd - 1] == 1);
  if (nd == 2) ok = ok && (x.shape(0) <= 1 || (st[0] * es) % 16 == 0);
  if (ok && nd == 2) {
    *row_stride = x.shape(0) <= 1 ? x.shape(1) : st[0];
    return x.raw_ptr();
  }
  if (ok && nd == 1) {
    *row_stride = x.shape(0);
    return x.raw_ptr();
  }
  copy = std::make_unique<cu::Scratch>(x.device(), x.nbytes());
  cu::copy_to_row_major_device(x, copy->ptr(), s);
  *row_stride = x.shape(nd - 1);
  return copy->ptr();
}

/// A prefix operand [1, Hkv, P, D]: its pointer and (head, position) strides when D is
/// unit-stride and everything is 16-byte aligned, else a row-major copy.
const void* prefix_in_place(const Array& x, int64_t st[2], std::unique_ptr<cu::Scratch>& copy,
                            cudaStream_t s) {
  const int64_t es = static_cast<int64_t>(x.itemsize());
  for (int d = 0; d < 2; ++d) st[d] = x.shape(d + 1) == 1 ? 0 : x.strides()[d + 1];
  bool ok = aligned16(x.raw_ptr()) && (x.shape(3) <= 1 || x.strides()[3] == 1);
  for (int d = 0; d < 2; ++d) ok = ok && (st[d] * es) % 16 == 0;
  if (ok) return x.raw_ptr();
  copy = std::make_unique<cu::Scratch>(x.device(), x.nbytes());
  cu::copy_to_row_major_device(x, copy->ptr(), s);
  st[1] = x.shape(3);
  st[0] = x.shape(2) * st[1];
  return copy->ptr();
}

}  // namespace

void PackedAttention::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Slots sl = slots();
  const Array& qkv = inputs[static_cast<size_t>(sl.qkv)];
  const Dtype t = qkv.dtype();
  const int64_t heads = n_heads_ + 2 * int64_t{n_kv_heads_};
  const int64_t d = qkv.shape(1) / heads;
  if (!cu::packed_attention_supported(t, d))
    raise<Unsupported>(
        "[packed_attention] the CUDA kernel takes bfloat16/float16 with head_dim 64, 128 or "
        "256, got {} with head_dim {} (fast::packed_attention composes these from other ops)",
        dtype_name(t), d);
  cu::alloc(out);
  if (out.size() == 0) return;
  const cudaStream_t s = cu::stream(stream());
  const Device dev = out.device();
  cu::PackedAttentionArgs a;
  a.H = n_heads_;
  a.Hkv = n_kv_heads_;
  a.D = d;
  std::unique_ptr<cu::Scratch> copies[6];
  a.qkv = rows_in_place(qkv, &a.row_stride, copies[0], s);
  int64_t unused = 0;
  if (has_qk_norm_) {
    a.q_norm = rows_in_place(inputs[static_cast<size_t>(sl.q_norm)], &unused, copies[1], s);
    a.k_norm = rows_in_place(inputs[static_cast<size_t>(sl.k_norm)], &unused, copies[2], s);
  }
  a.eps = qk_eps_;
  a.add_unit_offset = qk_add_unit_offset_;
  a.weight_in_float32 = qk_weight_in_float32_;
  a.traditional = traditional_;
  const Array& starts = inputs[static_cast<size_t>(sl.starts)];
  a.N = starts.size() - 1;
  a.starts = static_cast<const int32_t*>(rows_in_place(starts, &unused, copies[3], s));
  if (has_prefix_) {
    const Array& pk = inputs[static_cast<size_t>(sl.prefix_keys)];
    a.P = pk.shape(2);
    a.prefix_k = prefix_in_place(pk, a.pk_st, copies[4], s);
    a.prefix_v =
        prefix_in_place(inputs[static_cast<size_t>(sl.prefix_values)], a.pv_st, copies[5], s);
  }
  a.scale = scale_;
  a.softcap = softcap_;
  a.window = window_;
  a.max_len = max_len_;
  a.out = out.raw_ptr();
  // INGOT_CUDA_PACKED_KERNEL=streaming: never the resident variant (for comparisons).
  a.kernel = env::get("INGOT_CUDA_PACKED_KERNEL").value_or("") == "streaming" ? 1 : 0;
  // cos/sin of positions P .. P + max_len - 1.
  cu::RopeArgs r;
  r.D = r.dims = d;
  r.base = base_;
  r.scale = rope_scale_;
  if (has_freqs_) {
    const Array& f = inputs[static_cast<size_t>(sl.freqs)];
    r.freqs = f.raw_ptr();
    r.freqs_dtype = f.dtype();
    r.freqs_stride = f.strides()[0];
  }
  const cu::RopeInvFreqs inv = cu::host_inv_freqs(static_cast<int>(d), base_, has_freqs_);
  const size_t table = static_cast<size_t>(max_len_ * (d / 2)) * sizeof(float);
  cu::Scratch tables(dev, 2 * table);
  a.cs = static_cast<const float*>(tables.ptr());
  a.sn = a.cs + max_len_ * (d / 2);
  cu::launch_rope_table(t, r, inv, a.P, max_len_, const_cast<float*>(a.cs),
                        const_cast<float*>(a.sn), s);
  cu::launch_packed_attention(t, a, cu::props(dev.index).multiProcessorCount, s);
}

}  // namespace ingot
