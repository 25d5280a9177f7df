// AllSum / AllGather on the CPU: every rank sends its row-contiguous input to rank 0 over the
// group's TCP star; rank 0 reduces (in rank order, accumulating in float32 for 16-bit floats)
// or assembles, and sends the result back, so every rank holds the same bytes. Meant for tests
// and CPU-only clusters of a few processes, not for bandwidth.
#include <cstring>
#include <vector>

#include "backend/common/utils.h"
#include "core/cast.h"
#include "core/primitives/distributed.h"
#include "util/error.h"
#include "util/net.h"

namespace ingot {

namespace {

/// Input bytes in row-major order (the ops make inputs contiguous; a view is copied here).
const void* row_major_bytes(const Array& a) {
  INGOT_ASSERT(a.flags().row_contiguous, "collective input must be row contiguous");
  return a.raw_ptr();
}

template <typename T, typename Acc>
void sum_into(std::vector<Acc>& acc, const void* src, size_t n) {
  const T* p = static_cast<const T*>(src);
  for (size_t i = 0; i < n; ++i) acc[i] += static_cast<Acc>(p[i]);
}

/// acc[i] = sum over ranks r of bufs[r][i], added in rank order; written as T into out.
template <typename T, typename Acc>
void reduce_ranks(const std::vector<const void*>& bufs, size_t n, void* out) {
  std::vector<Acc> acc(n, Acc(0));
  for (const void* b : bufs) sum_into<T, Acc>(acc, b, n);
  T* o = static_cast<T*>(out);
  for (size_t i = 0; i < n; ++i) o[i] = static_cast<T>(acc[i]);
}

void reduce(Dtype t, const std::vector<const void*>& bufs, size_t n, void* out) {
  switch (t) {
    case Dtype::float32:
      return reduce_ranks<float, float>(bufs, n, out);
    case Dtype::float64:
      return reduce_ranks<double, double>(bufs, n, out);
    case Dtype::bfloat16:
      return reduce_ranks<bfloat16_t, float>(bufs, n, out);
    case Dtype::float16:
      return reduce_ranks<float16_t, float>(bufs, n, out);
    case Dtype::int32:
      return reduce_ranks<int32_t, int32_t>(bufs, n, out);
    default:
      raise<Unsupported>("[all_sum] dtype {} on the CPU", dtype_name(t));
  }
}

}  // namespace

void AllSum::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  backend::alloc_cpu(out);
  if (group_->size() == 1) {  // only when built by hand: the op returns its input
    std::memcpy(out.raw_ptr(), row_major_bytes(in), in.nbytes());
    return;
  }
  util::StarNetwork& net = group_->network();
  const size_t bytes = in.nbytes();
  if (net.rank() == 0) {
    std::vector<std::vector<uint8_t>> peers(static_cast<size_t>(net.size() - 1));
    std::vector<const void*> bufs{row_major_bytes(in)};
    for (int r = 1; r < net.size(); ++r) {
      auto& b = peers[static_cast<size_t>(r - 1)];
      b.resize(bytes);
      net.recv(r, b.data(), bytes);
      bufs.push_back(b.data());
    }
    reduce(in.dtype(), bufs, static_cast<size_t>(in.size()), out.raw_ptr());
  } else {
    net.send(0, row_major_bytes(in), bytes);
  }
  net.broadcast(out.raw_ptr(), bytes);
}

void AllGather::eval_cpu(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  backend::alloc_cpu(out);
  if (group_->size() == 1) {
    std::memcpy(out.raw_ptr(), row_major_bytes(in), in.nbytes());
    return;
  }
  util::StarNetwork& net = group_->network();
  const size_t bytes = in.nbytes();
  if (net.rank() == 0) {
    // The input is [outer, chunk] (chunk: axis and the axes after it); rank r's chunk goes to
    // columns [r * chunk, (r + 1) * chunk) of the output's [outer, size * chunk].
    int64_t outer = 1;
    for (int d = 0; d < axis_; ++d) outer *= in.shape(d);
    const size_t chunk = outer ? bytes / static_cast<size_t>(outer) : 0;
    const size_t size = static_cast<size_t>(net.size());
    std::vector<uint8_t> buf(bytes);
    auto place = [&](int r, const uint8_t* src) {
      uint8_t* dst = static_cast<uint8_t*>(out.raw_ptr()) + static_cast<size_t>(r) * chunk;
      for (int64_t o = 0; o < outer; ++o)
        std::memcpy(dst + static_cast<size_t>(o) * size * chunk,
                    src + static_cast<size_t>(o) * chunk, chunk);
    };
    place(0, static_cast<const uint8_t*>(row_major_bytes(in)));
    for (int r = 1; r < net.size(); ++r) {
      net.recv(r, buf.data(), bytes);
      place(r, buf.data());
    }
  } else {
    net.send(0, row_major_bytes(in), bytes);
  }
  net.broadcast(out.raw_ptr(), out.nbytes());
}

}  // namespace ingot
