// CUDA-graph capture and launch (core/transforms/graph.h). The capture runs in relaxed mode on
// the device's one stream; host constants uploaded while it records are copied at once through
// a side stream into blocks outside the graph's pool, and kept with the graph, because a
// recorded copy from pageable host memory would read it again at every replay.
#include "backend/cuda/graph.h"

#include <mutex>
#include <string>
#include <vector>

#include "backend/cuda/utils.h"
#include "core/allocator.h"
#include "core/transforms/graph.h"
#include "util/error.h"

namespace ingot {
namespace cu {
namespace {

struct Capture {
  Device device;
  std::vector<Array>* keep = nullptr;
  cudaEvent_t queued = nullptr;  // recorded on the stream just before the capture began
};
thread_local Capture* current = nullptr;

/// A non-blocking stream per device for uploads made while the main stream records.
cudaStream_t side_stream(Device d) {
  static std::mutex mu;
  static std::vector<cudaStream_t>* streams = new std::vector<cudaStream_t>();
  std::lock_guard<std::mutex> lk(mu);
  if (streams->size() <= static_cast<size_t>(d.index)) streams->resize(d.index + 1, nullptr);
  cudaStream_t& s = (*streams)[static_cast<size_t>(d.index)];
  if (!s) {
    set_device(d);
    INGOT_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  }
  return s;
}

}  // namespace

bool capturing(Device d) {
  return current && current->device == d;
}

void upload_during_capture(Array& out, const void* src, size_t bytes) {
  auto& pools = dynamic_cast<CachingAllocator&>(allocator(out.device()));
  const int pool = pools.route_to_pool(0);  // a block no recorded kernel ever writes
  try {
    alloc(out);
  } catch (...) {
    pools.route_to_pool(pool);
    throw;
  }
  pools.route_to_pool(pool);
  // The block may have been freed by work queued before the capture (stream-ordered reuse):
  // wait for that work before writing into it from another stream.
  INGOT_CUDA_CHECK(cudaEventSynchronize(current->queued));
  cudaStream_t side = side_stream(out.device());
  INGOT_CUDA_CHECK(cudaMemcpyAsync(out.raw_ptr(), src, bytes, cudaMemcpyHostToDevice, side));
  INGOT_CUDA_CHECK(cudaStreamSynchronize(side));
  current->keep->push_back(out);
}

}  // namespace cu

namespace gpu {

std::shared_ptr<void> capture_graph(Stream s, const std::function<void()>& body,
                                    std::vector<Array>& keep) {
  if (cu::current) raise("[graph] a capture is already running on this thread");
  cudaStream_t st = cu::stream(s);
  // Work queued before the capture must not be recorded: it has been queued already, so the
  // capture simply starts after it in stream order.
  cu::Capture cap{s.device, &keep};
  INGOT_CUDA_CHECK(cudaEventCreateWithFlags(&cap.queued, cudaEventDisableTiming));
  struct EventGuard {
    cudaEvent_t e;
    ~EventGuard() { cudaEventDestroy(e); }
  } guard{cap.queued};
  INGOT_CUDA_CHECK(cudaEventRecord(cap.queued, st));
  INGOT_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeRelaxed));
  cu::current = &cap;
  cudaGraph_t graph = nullptr;
  try {
    body();
  } catch (...) {
    cu::current = nullptr;
    if (cudaStreamEndCapture(st, &graph) == cudaSuccess && graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    throw;
  }
  cu::current = nullptr;
  const cudaError_t e = cudaStreamEndCapture(st, &graph);
  if (e != cudaSuccess || !graph) {
    cudaGetLastError();
    raise<DeviceError>(
        "[graph] CUDA graph capture failed: {} (a host read or synchronisation inside the "
        "captured function?)",
        cudaGetErrorString(e));
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t ie = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (ie != cudaSuccess) {
    cudaGetLastError();
    raise<DeviceError>("[graph] cudaGraphInstantiate failed: {}", cudaGetErrorString(ie));
  }
  return std::shared_ptr<void>(exec, [](void* p) {
    if (p) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(p));
  });
}

void launch_graph(const std::shared_ptr<void>& graph, Stream s) {
  INGOT_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph.get()), cu::stream(s)));
}

void copy_from_host(void* dst, const void* src, size_t bytes, Stream s) {
  INGOT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cu::stream(s)));
}

}  // namespace gpu
}  // namespace ingot
