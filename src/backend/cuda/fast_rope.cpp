// Rope on CUDA: validate, give out storage (x's buffer when donatable, as the CPU backend
// does), compute the inverse frequencies on the host exactly as the CPU does and launch the
// kernel of fast_rope.cu. Offsets and custom frequencies are read on the device.
#include <cmath>
#include <memory>

#include "backend/cuda/fast_rope_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/fast.h"

namespace ingot::cu {

RopeInvFreqs host_inv_freqs(int dims, float base, bool has_freqs) {
  RopeInvFreqs inv;
  const int half = dims / 2;
  if (!has_freqs && half <= kRopeMaxInvFreqs) {
    inv.n = half;
    for (int i = 0; i < half; ++i)  // the CPU backend's expression (powf), for bitwise parity
      inv.v[i] = 1.0f / std::pow(base, static_cast<float>(2 * i) / static_cast<float>(dims));
  }
  return inv;
}

}  // namespace ingot::cu

namespace ingot {
namespace {

/// Offsets input o (per-row start positions [B] or one [1]) into a.
void set_offsets(cu::RopeArgs& a, const Array& o) {
  a.offsets = o.raw_ptr();
  a.offsets_dtype = o.dtype();
  a.offsets_stride = o.ndim() && o.size() > 1 ? o.strides()[0] : 0;
  a.nb = o.size();
}

void set_freqs(cu::RopeArgs& a, const Array& f) {
  a.freqs = f.raw_ptr();
  a.freqs_dtype = f.dtype();
  a.freqs_stride = f.strides()[0];
}

}  // namespace

void Rope::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  if (!is_floating(out.dtype())) raise("[rope] unsupported dtype {}", dtype_name(out.dtype()));
  const Array& x = inputs[0];
  cu::RopeArgs a;
  a.x = x.raw_ptr();
  a.rows = cu::row_layout(x);
  a.sx = x.strides().back();
  a.D = x.shape(-1);
  a.L = x.shape(-2);
  a.n_rows = a.D ? x.size() / a.D : 0;
  a.dims = dims_;
  a.traditional = traditional_;
  a.base = base_;
  a.scale = scale_;
  a.offset = offset_;
  if (has_offsets_) set_offsets(a, inputs[1]);
  a.rows_per_b = a.nb > 1 ? a.n_rows / a.nb : a.n_rows;
  if (has_freqs_) set_freqs(a, inputs.back());
  const cu::RopeInvFreqs inv = cu::host_inv_freqs(dims_, base_, has_freqs_);
  const cudaStream_t s = cu::stream(stream());
  // Each element is read before it is written, by the same thread: x's buffer can be reused.
  if (x.is_donatable() && x.dtype() == out.dtype())
    out.move_shared_buffer(x);
  else
    cu::alloc(out);
  if (a.n_rows == 0) return;
  a.out = out.raw_ptr();
  cu::launch_rope(out.dtype(), a, inv, s);
}

// One kernel: q/k norms, rotation and the key/value writes (fast_rope.cu). qkv is copied to a
// row-major scratch first when its rows are not contiguous 16-byte aligned runs.
void RopeKvUpdate::eval_cuda(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const Array& qkv = inputs[0];
  const Array& keys = inputs[inputs.size() - 3];
  const Array& values = inputs[inputs.size() - 2];
  const Array& column = inputs.back();
  const cudaStream_t s = cu::stream(stream());
  const Device dev = outputs[0].device();
  cu::RopeKvArgs a;
  a.B = qkv.shape(0);
  a.L = qkv.shape(1);
  a.D = keys.shape(3);
  a.C = keys.shape(2);
  a.H = n_heads_;
  a.Hkv = n_kv_heads_;
  const int64_t es = static_cast<int64_t>(qkv.itemsize());
  const Strides& st = qkv.strides();
  const bool aligned = reinterpret_cast<uintptr_t>(qkv.raw_ptr()) % 16 == 0 &&
                       (a.B == 1 || (st[0] * es) % 16 == 0) && (a.L == 1 || (st[1] * es) % 16 == 0);
  std::unique_ptr<cu::Scratch> tmp;
  if (st[2] == 1 && aligned) {
    a.qkv = qkv.raw_ptr();
    a.sb = st[0];
    a.sl = st[1];
  } else {
    tmp = std::make_unique<cu::Scratch>(dev, qkv.nbytes());
    cu::copy_to_row_major_device(qkv, tmp->ptr(), s);
    a.qkv = tmp->ptr();
    a.sl = qkv.shape(2);
    a.sb = a.L * a.sl;
  }
  size_t i = 1;
  // Norm weights: contiguous 16-byte aligned [D] (else a contiguous copy).
  std::unique_ptr<cu::Scratch> wtmp[2];
  if (has_norm_) {
    const void** dst[2] = {&a.q_norm, &a.k_norm};
    for (int w = 0; w < 2; ++w, ++i) {
      const Array& nw = inputs[i];
      if ((a.D == 1 || nw.strides()[0] == 1) &&
          reinterpret_cast<uintptr_t>(nw.raw_ptr()) % 16 == 0) {
        *dst[w] = nw.raw_ptr();
      } else {
        wtmp[w] = std::make_unique<cu::Scratch>(dev, nw.nbytes());
        cu::copy_to_row_major_device(nw, wtmp[w]->ptr(), s);
        *dst[w] = wtmp[w]->ptr();
      }
    }
  }
  a.eps = eps_;
  a.add_unit_offset = add_unit_offset_;
  a.weight_in_float32 = weight_in_float32_;
  cu::RopeArgs& r = a.rope;
  r.D = r.dims = a.D;
  r.L = a.L;
  r.traditional = traditional_;
  r.base = base_;
  r.scale = scale_;
  r.offset = offset_;
  if (has_offsets_) set_offsets(r, inputs[i++]);
  if (has_freqs_) set_freqs(r, inputs[i++]);
  const cu::RopeInvFreqs inv = cu::host_inv_freqs(static_cast<int>(a.D), base_, has_freqs_);
  cu::alloc(outputs[0]);
  // Each of the three outputs holds the inputs: the buffers are free when held only so.
  const long holders = static_cast<long>(outputs.size());
  cu::copy_or_donate(keys, outputs[1], s, holders);
  cu::copy_or_donate(values, outputs[2], s, holders);
  a.q_out = outputs[0].raw_ptr();
  a.keys = outputs[1].raw_ptr();
  a.values = outputs[2].raw_ptr();
  a.column = column.raw_ptr();
  a.column_dtype = column.dtype();
  a.site = cu::fault_site(dev, cu::kPutAlongAxis, 2);
  cu::launch_rope_kv(qkv.dtype(), a, inv, s);
}

}  // namespace ingot
