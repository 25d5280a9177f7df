// CPU kernels of the copying shape ops (slice_update, concatenate, pad) and the typed strided
// copy they share with the indexing and random kernels.
#include <algorithm>
#include <cstring>

#include "backend/common/utils.h"
#include "backend/cpu/strided_copy.h"
#include "core/cast.h"
#include "core/primitives/shape.h"
#include "util/thread_pool.h"

namespace ingot::backend {

namespace {

constexpr int64_t kCopyChunk = 1 << 16;  // elements per parallel task

template <typename S, typename D>
void copy_runs(const S* sp, D* dp, const StridedRuns& runs) {
  const int64_t len = runs.run_length();
  const int64_t ss = runs.inner_strides()[0], ds = runs.inner_strides()[1];
  auto run = [&](const int64_t* off, int64_t b, int64_t e) {
    const S* s = sp + off[0];
    D* d = dp + off[1];
    if (ss == 1 && ds == 1) {
      if constexpr (std::is_same_v<S, D>) {
        std::memcpy(d + b, s + b, static_cast<size_t>(e - b) * sizeof(S));
      } else {
        for (int64_t i = b; i < e; ++i) d[i] = cast_value<D>(s[i]);
      }
    } else {
      for (int64_t i = b; i < e; ++i) d[i * ds] = cast_value<D>(s[i * ss]);
    }
  };
  const int64_t nruns = runs.num_runs();
  if (nruns * len <= kCopyChunk) {
    runs.for_runs(0, nruns, [&](const int64_t* off, int64_t m) { run(off, 0, m); });
  } else if (len >= kCopyChunk / 2) {  // long runs: split each run into chunks
    const int64_t nch = (len + kCopyChunk - 1) / kCopyChunk;
    parallel_for(nruns * nch, 1, [&](int64_t b, int64_t e) {
      for (int64_t u = b; u < e; ++u) {
        const int64_t c = u % nch;
        runs.for_runs(u / nch, u / nch + 1, [&](const int64_t* off, int64_t m) {
          run(off, c * kCopyChunk, std::min(m, (c + 1) * kCopyChunk));
        });
      }
    });
  } else {
    parallel_for(nruns, std::max<int64_t>(1, kCopyChunk / len), [&](int64_t b, int64_t e) {
      runs.for_runs(b, e, [&](const int64_t* off, int64_t m) { run(off, 0, m); });
    });
  }
}

template <typename T>
void copy_same(const void* src, void* dst, const StridedRuns& runs) {
  copy_runs(static_cast<const T*>(src), static_cast<T*>(dst), runs);
}

}  // namespace

void strided_copy(const void* src, Dtype src_type, const Strides& src_strides, void* dst,
                  Dtype dst_type, const Strides& dst_strides, const Shape& shape) {
  if (shape_size(shape) == 0) return;
  StridedRuns runs(shape, {src_strides, dst_strides});
  if (src_type == dst_type) {  // a plain byte copy: dispatch on the element size only
    switch (size_of(src_type)) {
      case 1:
        return copy_same<uint8_t>(src, dst, runs);
      case 2:
        return copy_same<uint16_t>(src, dst, runs);
      case 4:
        return copy_same<uint32_t>(src, dst, runs);
      default:
        return copy_same<uint64_t>(src, dst, runs);
    }
  }
  dispatch_dtype(src_type, [&](auto s0) {
    using S = decltype(s0);
    dispatch_dtype(dst_type, [&](auto d0) {
      using D = decltype(d0);
      copy_runs(static_cast<const S*>(src), static_cast<D*>(dst), runs);
    });
  });
}

void copy_array(const Array& a, void* dst, Dtype dst_type, const Strides& dst_strides) {
  strided_copy(a.raw_ptr(), a.dtype(), a.strides(), dst, dst_type,
               dst_strides.empty() ? row_major_strides(a.shape()) : dst_strides, a.shape());
}

void copy_or_donate(const Array& in, Array& out, long holders) {
  if (in.is_donatable(holders) && in.dtype() == out.dtype() && in.size() == out.size()) {
    out.move_shared_buffer(in);
    return;
  }
  alloc_cpu(out);
  copy_array(in, out.raw_ptr(), out.dtype(), out.strides());
}

namespace {

char* byte_ptr(const Array& a, int64_t elem_offset) {
  return static_cast<char*>(a.raw_ptr()) + elem_offset * static_cast<int64_t>(a.itemsize());
}

/// Fills n elements of `itemsize` bytes at dst with the value at `value`.
void fill_bytes(void* dst, const void* value, size_t itemsize, int64_t n) {
  auto fill = [&](auto tag) {
    using T = decltype(tag);
    T v;
    std::memcpy(&v, value, sizeof(T));
    T* d = static_cast<T*>(dst);
    parallel_for(n, kCopyChunk, [&](int64_t b, int64_t e) { std::fill(d + b, d + e, v); });
  };
  switch (itemsize) {
    case 1:
      return fill(uint8_t{});
    case 2:
      return fill(uint16_t{});
    case 4:
      return fill(uint32_t{});
    default:
      return fill(uint64_t{});
  }
}

}  // namespace

}  // namespace ingot::backend

namespace ingot {

using backend::alloc_cpu;
using backend::strided_copy;

void SliceUpdate::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Array& a = inputs[0];
  const Array& u = inputs[1];
  backend::copy_or_donate(a, out);
  SliceSpec sp = normalize_slice(a.shape(), start_, stop_, strides_);
  const Strides& ost = out.strides();
  int64_t off = 0;
  Strides dst(ost.size());
  for (size_t d = 0; d < ost.size(); ++d) {
    off += sp.start[d] * ost[d];
    dst[d] = sp.step[d] * ost[d];
  }
  strided_copy(u.raw_ptr(), u.dtype(), backend::broadcast_strides(u, sp.count),
               backend::byte_ptr(out, off), out.dtype(), dst, sp.count);
}

void Concatenate::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  alloc_cpu(out);
  int64_t off = 0;
  for (const Array& x : inputs) {
    strided_copy(x.raw_ptr(), x.dtype(), x.strides(),
                 backend::byte_ptr(out, off * out.strides()[axis_]), out.dtype(), out.strides(),
                 x.shape());
    off += x.shape()[axis_];
  }
}

void Pad::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Array& a = inputs[0];
  const Array& v = inputs[1];
  alloc_cpu(out);
  backend::fill_bytes(out.raw_ptr(), v.raw_ptr(), out.itemsize(), out.size());
  int64_t off = 0;
  for (size_t d = 0; d < low_.size(); ++d) off += low_[d] * out.strides()[d];
  strided_copy(a.raw_ptr(), a.dtype(), a.strides(), backend::byte_ptr(out, off), out.dtype(),
               out.strides(), a.shape());
}

}  // namespace ingot
