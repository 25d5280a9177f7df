// Device graphs: the kernels a function queues on a GPU, recorded once and replayed without the
// host (CUDA graphs). For decode steps whose shapes and buffers stay fixed: the caller writes
// new values into the same input buffers before each replay and reads the same outputs after.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "core/array.h"

namespace ingot {

/// A recorded sequence of device work.
///
/// Capture evaluates the arrays `fn` returns with the device's stream recording instead of
/// running: nothing is computed until the first replay(). Every block the recorded kernels use
/// comes from a memory pool owned by the graph (never handed to anyone else while it lives), and
/// host values the function uses are uploaded once and kept with it. Arrays that were evaluated
/// before capture (weights, caches, input buffers) are read and written where they are, so a
/// replay sees the values written into them since.
///
/// Rules for `fn`: its inputs must be evaluated beforehand; it must not read device values on
/// the host or synchronise (that breaks the capture: DeviceError); nothing else may use the
/// device while it runs. Outputs keep their buffers: each replay overwrites them.
class DeviceGraph {
 public:
  DeviceGraph() = default;
  /// Records fn on `device` (a GPU). Unsupported on the CPU or without CUDA; DeviceError when
  /// the capture fails (nothing has run then).
  static DeviceGraph capture(Device device, const std::function<std::vector<Array>()>& fn);
  /// Queues the recorded work on the device's stream (asynchronous, like eval).
  void replay() const;
  /// The arrays fn returned (their buffers are rewritten by every replay).
  const std::vector<Array>& outputs() const;
  bool valid() const { return state_ != nullptr; }
  /// Device memory owned by the graph's pool (intermediate and output buffers).
  size_t pool_bytes() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

/// Copies `bytes` of host memory into the buffer of an evaluated, row-contiguous array, in the
/// order of its device's stream (a graph's inputs between replays). InvalidArgument when the
/// sizes differ.
void write_from_host(const Array& dst, const void* src, size_t bytes);

namespace gpu {
/// Records what `body` queues on s into an executable graph (defined by the GPU backend). Host
/// constants uploaded during the capture are appended to `keep`.
std::shared_ptr<void> capture_graph(Stream s, const std::function<void()>& body,
                                    std::vector<Array>& keep);
void launch_graph(const std::shared_ptr<void>& graph, Stream s);
/// cudaMemcpyAsync of host memory into a device buffer on s.
void copy_from_host(void* dst, const void* src, size_t bytes, Stream s);
}  // namespace gpu

}  // namespace ingot
