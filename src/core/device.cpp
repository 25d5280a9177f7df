// Device parsing and the default-device policy.
#include "core/device.h"

#include <atomic>
#include <mutex>
#include <optional>

#include "util/env.h"
#include "util/error.h"

namespace ingot {

std::string Device::str() const {
  return type == Type::cpu ? "cpu" : "cuda:" + std::to_string(index);
}

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu_device;
  if (s == "cuda" || s == "gpu") return Device{Type::cuda, 0};
  if (s.rfind("cuda:", 0) == 0 && s.size() > 5) {
    size_t pos = 0;
    int idx = -1;
    try {
      idx = std::stoi(s.substr(5), &pos);
    } catch (...) {
      idx = -1;
    }
    if (idx >= 0 && pos == s.size() - 5) return Device{Type::cuda, idx};
  }
  raise("[device] cannot parse device '{}' (expected cpu, cuda or cuda:N)", s);
}

namespace {
std::mutex g_mu;
std::optional<Device> g_default;
}  // namespace

Device default_device() {
  std::lock_guard<std::mutex> lk(g_mu);
  if (!g_default) {
    if (auto e = env::device()) {
      Device d = Device::parse(*e);
      if (d.type == Device::Type::cuda && d.index >= gpu::device_count())
        raise("[device] INGOT_DEVICE={} but {} CUDA device(s) are available", *e,
              gpu::device_count());
      g_default = d;
    } else {
      g_default = gpu::device_count() > 0 ? Device{Device::Type::cuda, 0} : cpu_device;
    }
  }
  return *g_default;
}

void set_default_device(Device d) {
  if (d.type == Device::Type::cuda && d.index >= gpu::device_count())
    raise("[device] {} requested but {} CUDA device(s) are available", d.str(),
          gpu::device_count());
  std::lock_guard<std::mutex> lk(g_mu);
  g_default = d;
}

Stream default_stream(Device d) {
  return Stream{d, 0};
}

}  // namespace ingot
