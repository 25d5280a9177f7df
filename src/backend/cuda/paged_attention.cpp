// PagedAttention::eval_cuda: q, k, v are read row-major (copied to scratch when they are
// strided views), the pools donated to the outputs when nothing else holds them, then the write
// and attention kernels of paged_attention.cu.
#include <memory>

#include "backend/cuda/paged_attention_kernels.h"
#include "backend/cuda/utils.h"
#include "core/primitives/paged_attention.h"
#include "util/error.h"

namespace ingot {

namespace {

bool row_major(const Array& a) {
  int64_t expect = 1;
  for (int d = a.ndim() - 1; d >= 0; --d) {
    if (a.shape(d) != 1 && a.strides()[static_cast<size_t>(d)] != expect) return false;
    expect *= a.shape(d);
  }
  return true;
}

}  // namespace

void PagedAttention::eval_cuda(const std::vector<Array>& inputs, std::vector<Array>& outputs) {
  const cudaStream_t s = cu::stream(stream());
  const Device dev = outputs[0].device();
  const Array &q = inputs[0], &table = inputs[5], &qpos = inputs[6];
  if (q.dtype() == Dtype::float64)
    raise<Unsupported>("[paged_attention] float64 is not supported on CUDA");
  std::unique_ptr<cu::Scratch> tmp[6];
  const void* ptr[6] = {};
  for (int i : {0, 1, 2, 5, 6, 7}) {
    if (i == 7 && !has_padding_) continue;
    const Array& a = inputs[static_cast<size_t>(i)];
    const int slot = i < 3 ? i : i - 2;
    if (row_major(a)) {
      ptr[slot] = a.raw_ptr();
    } else {
      tmp[slot] = std::make_unique<cu::Scratch>(dev, a.nbytes());
      cu::copy_to_row_major_device(a, tmp[slot]->ptr(), s);
      ptr[slot] = tmp[slot]->ptr();
    }
  }
  // Three outputs hold the inputs: the pools are free to donate when held only so.
  const long holders = static_cast<long>(outputs.size());
  cu::copy_or_donate(inputs[3], outputs[1], s, holders);
  cu::copy_or_donate(inputs[4], outputs[2], s, holders);
  cu::alloc(outputs[0]);
  cu::PagedAttentionArgs a;
  a.q = ptr[0];
  a.k = ptr[1];
  a.v = ptr[2];
  a.table = static_cast<const int32_t*>(ptr[3]);
  a.q_pos = static_cast<const int32_t*>(ptr[4]);
  a.padding = static_cast<const int32_t*>(ptr[5]);
  a.k_pool = outputs[1].raw_ptr();
  a.v_pool = outputs[2].raw_ptr();
  a.out = outputs[0].raw_ptr();
  a.B = q.shape(0);
  a.H = q.shape(1);
  a.L = q.shape(2);
  a.D = q.shape(3);
  a.Hkv = inputs[1].shape(1);
  a.N = inputs[3].shape(0);
  a.P = inputs[3].shape(2);
  a.M = table.shape(1);
  a.scale = scale_;
  a.window = window_;
  a.softcap = softcap_;
  a.dtype = q.dtype();
  if (a.D > 256) raise<Unsupported>("[paged_attention] head dimension {} > 256 on CUDA", a.D);
  (void)qpos;
  cu::launch_paged_attention(a, s);
}

}  // namespace ingot
