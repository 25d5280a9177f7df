// Device graphs (see graph.h): the capture's memory pool and kept host constants live with the
// recorded graph; the GPU backend records and launches it.
#include "core/transforms/graph.h"

#include <cstring>

#include "core/allocator.h"
#include "core/transforms/eval.h"
#include "util/error.h"

namespace ingot {

struct DeviceGraph::State {
  Device device;
  int pool = 0;
  std::shared_ptr<void> exec;
  std::vector<Array> outputs;
  std::vector<Array> keep;  // host constants uploaded for the capture
  ~State() {
    exec.reset();
    outputs.clear();
    keep.clear();
    if (pool) dynamic_cast<CachingAllocator&>(allocator(device)).release_pool(pool);
  }
};

DeviceGraph DeviceGraph::capture(Device device, const std::function<std::vector<Array>()>& fn) {
  if (device.type != Device::Type::cuda)
    raise<Unsupported>("[graph] device graphs need a GPU, got {}", device.str());
  auto* alloc = dynamic_cast<CachingAllocator*>(&allocator(device));
  if (!alloc) raise<Unsupported>("[graph] {} has no pooling allocator", device.str());
  auto st = std::make_shared<State>();
  st->device = device;
  st->pool = alloc->create_pool();
  const int previous = alloc->route_to_pool(st->pool);
  try {
    st->exec = gpu::capture_graph(
        default_stream(device),
        [&] {
          st->outputs = fn();
          for (const Array& o : st->outputs)
            if (o.device() != device)
              raise("[graph] an output lives on {}, not on the captured {}", o.device().str(),
                    device.str());
          eval(st->outputs);
        },
        st->keep);
  } catch (...) {
    alloc->route_to_pool(previous);
    throw;
  }
  alloc->route_to_pool(previous);
  DeviceGraph g;
  g.state_ = std::move(st);
  return g;
}

void DeviceGraph::replay() const {
  if (!state_) raise("[graph] replay of an empty graph");
  gpu::launch_graph(state_->exec, default_stream(state_->device));
}

const std::vector<Array>& DeviceGraph::outputs() const {
  if (!state_) raise("[graph] outputs of an empty graph");
  return state_->outputs;
}

size_t DeviceGraph::pool_bytes() const {
  if (!state_) return 0;
  return dynamic_cast<CachingAllocator&>(allocator(state_->device)).pool_memory(state_->pool);
}

void write_from_host(const Array& dst, const void* src, size_t bytes) {
  if (!dst.is_evaluated() || !dst.flags().row_contiguous)
    raise("[graph] write_from_host needs an evaluated row-contiguous array");
  if (bytes != dst.nbytes())
    raise("[graph] write_from_host: {} bytes for an array of {} bytes", bytes, dst.nbytes());
  if (bytes == 0) return;
  if (dst.device().type == Device::Type::cpu)
    std::memcpy(dst.raw_ptr(), src, bytes);
  else
    gpu::copy_from_host(dst.raw_ptr(), src, bytes, default_stream(dst.device()));
}

}  // namespace ingot
