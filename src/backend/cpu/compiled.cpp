// CPU evaluation of Compiled: the fused elementwise program runs block by block through the
// same kernels as the unfused ops (so results agree bitwise), intermediates in per-block
// scratch buffers.
#include <algorithm>
#include <cstring>

#include "backend/common/utils.h"
#include "backend/cpu/elementwise_kernels.h"
#include "core/primitives/compiled.h"
#include "util/thread_pool.h"

namespace ingot {
namespace {

constexpr int64_t kBlock = 1024;

// Copies elements [start, start + len) (row-major order) of a strided array into dst.
void gather_block(const Array& a, int64_t start, int64_t len, char* dst) {
  const int nd = a.ndim();
  const size_t es = a.itemsize();
  const auto& sh = a.shape();
  const auto& st = a.strides();
  std::vector<int64_t> idx(nd);
  int64_t rem = start, off = 0;
  for (int d = nd - 1; d >= 0; --d) {
    idx[d] = rem % sh[d];
    rem /= sh[d];
    off += idx[d] * st[d];
  }
  const char* base = static_cast<const char*>(a.raw_ptr());
  for (int64_t i = 0; i < len; ++i) {
    std::memcpy(dst + i * es, base + off * static_cast<int64_t>(es), es);
    for (int d = nd - 1; d >= 0; --d) {
      off += st[d];
      if (++idx[d] < sh[d]) break;
      off -= idx[d] * st[d];
      idx[d] = 0;
    }
  }
}

}  // namespace

void Compiled::eval_cpu(const std::vector<Array>& in, std::vector<Array>& out) {
  for (auto& o : out) backend::alloc_cpu(o);
  const int64_t n = out[0].size();
  if (n == 0) return;
  std::vector<cpu::EwKernel> ks;
  for (const auto& s : steps_) ks.push_back(cpu::ew_kernel(s.op, s.in_dtype, s.out_dtype));
  // Input access: 0 contiguous, 1 broadcast scalar, 2 strided (gathered per block).
  std::vector<int> mode(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const Array& a = in[i];
    bool all_zero = true;
    for (auto s : a.strides()) all_zero = all_zero && s == 0;
    mode[i] = a.flags().row_contiguous ? 0 : (all_zero ? 1 : 2);
  }
  std::vector<int> out_slot(steps_.size(), -1);
  for (size_t k = 0; k < outputs_.size(); ++k) out_slot[outputs_[k]] = static_cast<int>(k);
  const int64_t nblocks = (n + kBlock - 1) / kBlock;
  parallel_for(nblocks, 16, [&](int64_t b0, int64_t b1) {
    std::vector<std::vector<char>> scratch(steps_.size()), gathered(in.size());
    for (size_t s = 0; s < steps_.size(); ++s)
      if (out_slot[s] < 0) scratch[s].resize(kBlock * size_of(steps_[s].out_dtype));
    for (size_t i = 0; i < in.size(); ++i)
      if (mode[i] == 2) gathered[i].resize(kBlock * in[i].itemsize());
    std::vector<cpu::EwArg> ext(in.size());
    std::vector<void*> val(steps_.size());
    cpu::EwArg args[3];
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t start = b * kBlock, len = std::min(kBlock, n - start);
      for (size_t i = 0; i < in.size(); ++i) {
        const char* base = static_cast<const char*>(in[i].raw_ptr());
        if (mode[i] == 0) {
          ext[i] = {base + start * static_cast<int64_t>(in[i].itemsize()), 1};
        } else if (mode[i] == 1) {
          ext[i] = {base, 0};
        } else {
          gather_block(in[i], start, len, gathered[i].data());
          ext[i] = {gathered[i].data(), 1};
        }
      }
      for (size_t s = 0; s < steps_.size(); ++s) {
        const FusedStep& st = steps_[s];
        for (size_t a = 0; a < st.args.size(); ++a) {
          int r = st.args[a];
          args[a] = r >= 0 ? ext[r] : cpu::EwArg{val[-r - 1], 1};
        }
        void* dst = out_slot[s] >= 0 ? static_cast<char*>(out[out_slot[s]].raw_ptr()) +
                                           start * static_cast<int64_t>(size_of(st.out_dtype))
                                     : static_cast<void*>(scratch[s].data());
        ks[s](args, dst, len);
        val[s] = dst;
      }
    }
  });
}

}  // namespace ingot
