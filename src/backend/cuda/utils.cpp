// CUDA backend plumbing: errors, per-(device, index) streams, device properties, output
// allocation through the caching allocator, and layouts.
#include "backend/cuda/utils.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "util/env.h"
#include "util/error.h"

namespace ingot::cu {

void throw_cuda_error(cudaError_t e, const char* call, const char* file, int line) {
  cudaGetLastError();  // clear a sticky launch error so the next call can proceed
  if (e == cudaErrorMemoryAllocation)
    raise<OutOfMemory>("[cuda] {} failed: {} ({}:{})", call, cudaGetErrorString(e), file, line);
  raise<DeviceError>("[cuda] {} failed: {} ({}:{})", call, cudaGetErrorString(e), file, line);
}

void check_launch(const char* kernel) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    raise<DeviceError>("[cuda] launch of {} failed: {}", kernel, cudaGetErrorString(e));
}

void set_device(Device d) {
  thread_local int current = -1;
  if (current == d.index) return;
  INGOT_CUDA_CHECK(cudaSetDevice(d.index));
  current = d.index;
}

cudaStream_t stream(Stream s) {
  static std::mutex mu;
  static std::map<std::pair<int, int>, cudaStream_t>* streams =
      new std::map<std::pair<int, int>, cudaStream_t>();  // never destroyed (outlives arrays)
  set_device(s.device);
  std::lock_guard<std::mutex> lk(mu);
  auto key = std::make_pair(s.device.index, s.index);
  auto it = streams->find(key);
  if (it != streams->end()) return it->second;
  cudaStream_t st = nullptr;
  INGOT_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  streams->emplace(key, st);
  return st;
}

const cudaDeviceProp& props(int index) {
  static std::mutex mu;
  static std::map<int, cudaDeviceProp> cache;
  std::lock_guard<std::mutex> lk(mu);
  auto it = cache.find(index);
  if (it != cache.end()) return it->second;
  cudaDeviceProp p{};
  INGOT_CUDA_CHECK(cudaGetDeviceProperties(&p, index));
  return cache.emplace(index, p).first->second;
}

bool pdl_enabled() {
  static const bool env_on = env::flag("INGOT_CUDA_PDL", true);
  if (!env_on) return false;
  thread_local int cached_device = -1;
  thread_local bool cached_on = false;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  if (dev != cached_device) {
    cached_on = props(dev).major >= 9;
    cached_device = dev;
  }
  return cached_on;
}

void alloc(Array& out) {
  Device d = out.device();
  out.set_data(std::make_shared<Data>(allocator(d).malloc(out.nbytes()), d));
}

Scratch::Scratch(Device d, size_t bytes) : device_(d), buf_(allocator(d).malloc(bytes)) {}
Scratch::~Scratch() {
  allocator(device_).free(buf_);
}

Layout make_layout(const Shape& shape, const Strides& strides) {
  if (shape.size() > static_cast<size_t>(kMaxDims))
    raise<Unsupported>("[cuda] arrays of {} dimensions are not supported (at most {})",
                       shape.size(), kMaxDims);
  Layout l;
  l.ndim = static_cast<int>(shape.size());
  for (int d = 0; d < l.ndim; ++d) {
    l.shape[d] = shape[d];
    l.strides[d] = strides[d];
  }
  return l;
}

Layout collapsed_layout(const Shape& shape, const Strides& strides, int ndim) {
  Shape sh;
  Strides st;
  for (int d = 0; d < ndim; ++d) {
    const int64_t n = shape[d], s = strides[d];
    if (n == 1) continue;
    if (!sh.empty() && st.back() == s * n) {
      sh.back() *= n;
      st.back() = s;
    } else {
      sh.push_back(n);
      st.push_back(s);
    }
  }
  return make_layout(sh, st);
}

void copy_to_row_major_device(const Array& a, void* dst, cudaStream_t s) {
  if (a.size() == 0) return;
  if (a.flags().row_contiguous) {
    INGOT_CUDA_CHECK(cudaMemcpyAsync(dst, a.raw_ptr(), a.nbytes(), cudaMemcpyDeviceToDevice, s));
    return;
  }
  // Merged axes: most views index with one or two dims.
  launch_copy_strided(a.raw_ptr(), collapsed_layout(a.shape(), a.strides(), a.ndim()), dst,
                      a.size(), static_cast<int>(a.itemsize()), s);
}

const void* row_major_ptr(const Array& a, cudaStream_t s,
                          std::vector<std::unique_ptr<Scratch>>& keep) {
  if (a.flags().row_contiguous) return a.raw_ptr();
  keep.push_back(std::make_unique<Scratch>(a.device(), a.nbytes()));
  copy_to_row_major_device(a, keep.back()->ptr(), s);
  return keep.back()->ptr();
}

void copy_or_donate(const Array& in, Array& out, cudaStream_t s, long holders) {
  if (in.is_donatable(holders) && in.dtype() == out.dtype() && in.size() == out.size()) {
    out.move_shared_buffer(in);
    return;
  }
  alloc(out);
  if (out.size() > 0) copy_to_row_major_device(in, out.raw_ptr(), s);
}

namespace {

/// A device's fault record (host-mapped pinned memory) and its claim word (device memory).
struct FaultSlot {
  IndexFault* host = nullptr;
  IndexFault* dev = nullptr;
  unsigned int* claim = nullptr;
};

FaultSlot* fault_slot(int index, bool create) {
  static std::mutex mu;
  static auto* slots = new std::map<int, FaultSlot>();  // never destroyed, like the streams
  std::lock_guard<std::mutex> lk(mu);
  auto it = slots->find(index);
  if (it != slots->end()) return &it->second;
  if (!create) return nullptr;
  FaultSlot s;
  set_device(Device{Device::Type::cuda, index});
  INGOT_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&s.host), sizeof(IndexFault),
                                 cudaHostAllocMapped | cudaHostAllocPortable));
  std::memset(s.host, 0, sizeof(IndexFault));
  INGOT_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&s.dev), s.host, 0));
  INGOT_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&s.claim), sizeof(unsigned int)));
  INGOT_CUDA_CHECK(cudaMemset(s.claim, 0, sizeof(unsigned int)));
  return &slots->emplace(index, s).first->second;
}

}  // namespace

FaultSite fault_site(Device d, int op, int axis) {
  const FaultSlot* s = fault_slot(d.index, true);
  return FaultSite{s->dev, s->claim, op, axis};
}

void check_index_fault(Device d) {
  if (d.type != Device::Type::cuda) return;
  FaultSlot* s = fault_slot(d.index, false);
  if (s == nullptr) return;
  volatile IndexFault* f = s->host;
  if (f->set == 0) return;
  const int op = f->op, axis = f->axis;
  const int64_t index = f->index, size = f->size;
  f->set = 0;
  INGOT_CUDA_CHECK(cudaMemsetAsync(s->claim, 0, sizeof(unsigned int), stream(default_stream(d))));
  raise("[{}] index {} is out of range for axis {} of size {}", index_op_name(op), index, axis,
        size);
}

}  // namespace ingot::cu
