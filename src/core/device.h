// Devices ("cpu", "cuda:N") and streams. The default device is CUDA when a GPU is present,
// else the CPU; INGOT_DEVICE overrides.
#pragma once

#include <string>

namespace ingot {

/// A place where arrays live and primitives run.
struct Device {
  enum class Type { cpu, cuda };
  Type type = Type::cpu;
  int index = 0;
  bool operator==(const Device& o) const = default;
  std::string str() const;
  /// Parses "cpu", "cuda", "cuda:N", "gpu"; throws InvalidArgument otherwise.
  static Device parse(const std::string& s);
};

inline const Device cpu_device{Device::Type::cpu, 0};

/// The device ops use when none is given.
Device default_device();
void set_default_device(Device d);

/// An ordered queue of work on a device (CUDA stream; the CPU runs inline).
struct Stream {
  Device device = cpu_device;
  int index = 0;
  bool operator==(const Stream& o) const = default;
};
Stream default_stream(Device d);

/// Optional trailing argument of every op: where its primitive runs. Empty means the default
/// device's default stream.
struct StreamOrDevice {
  StreamOrDevice() = default;
  StreamOrDevice(Device d) : device_(d), has_(true) {}  // NOLINT: implicit by design
  StreamOrDevice(Stream s) : stream_(s), is_stream_(true), has_(true) {}  // NOLINT
  Stream resolve() const {
    if (is_stream_) return stream_;
    return default_stream(has_ ? device_ : default_device());
  }
  /// True when a stream or device was given (ops then ignore where their inputs live).
  bool is_set() const { return has_; }

 private:
  Device device_ = cpu_device;
  Stream stream_{};
  bool is_stream_ = false;
  bool has_ = false;
};

/// Hooks the GPU backend (cuda or no_cuda) defines: chosen at link time.
namespace gpu {
/// Number of usable CUDA devices (0 without a driver/GPU or in a no-CUDA build).
int device_count();
/// Waits for all work queued on the stream; surfaces asynchronous errors as DeviceError.
void synchronize(Stream s);
}  // namespace gpu

}  // namespace ingot
