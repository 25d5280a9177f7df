// GPU hooks of a build without CUDA: no devices; any GPU request throws Unsupported.
#include "core/device.h"
#include "core/allocator.h"
#include "core/array.h"
#include "core/transforms/graph.h"
#include "util/error.h"

namespace ingot::gpu {

int device_count() {
  return 0;
}

void synchronize(Stream) {}

void copy_to_host(const Array&, void*) {
  raise<Unsupported>("[cuda] a GPU array was read but ingot was built without CUDA");
}

std::shared_ptr<void> start_host_read(const Array&) {
  raise<Unsupported>("[cuda] a GPU array was read but ingot was built without CUDA");
}

const void* finish_host_read(const std::shared_ptr<void>&) {
  raise<Unsupported>("[cuda] a GPU array was read but ingot was built without CUDA");
}

std::shared_ptr<void> capture_graph(Stream, const std::function<void()>&, std::vector<Array>&) {
  raise<Unsupported>("[graph] device graphs need CUDA; ingot was built without it");
}

void launch_graph(const std::shared_ptr<void>&, Stream) {
  raise<Unsupported>("[graph] device graphs need CUDA; ingot was built without it");
}

void copy_from_host(void*, const void*, size_t, Stream) {
  raise<Unsupported>("[cuda] a GPU array was written but ingot was built without CUDA");
}

Allocator& allocator(int index) {
  raise<Unsupported>("[cuda] cuda:{} requested but ingot was built without CUDA", index);
}

}  // namespace ingot::gpu
