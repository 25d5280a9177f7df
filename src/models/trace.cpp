// Trace hook (see trace.h): a process-wide hook behind an atomic flag, and TraceDump writing
// .npy / safetensors files.
#include "models/trace.h"

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "core/io/safetensors.h"
#include "core/ops/ops.h"
#include "util/error.h"

namespace ingot::models {

namespace {

struct HookState {
  std::mutex mu;
  TraceHook hook;
  std::atomic<bool> on{false};
};
HookState& state() {
  static HookState s;
  return s;
}

}  // namespace

void set_trace_hook(TraceHook hook) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.on = static_cast<bool>(hook);
  s.hook = std::move(hook);
}

bool trace_enabled() {
  return state().on.load(std::memory_order_relaxed);
}

const Array& trace(const Array& x, const char* name, int layer) {
  auto& s = state();
  if (!s.on.load(std::memory_order_relaxed)) return x;
  TraceHook hook;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    hook = s.hook;
  }
  if (hook) hook(x, name, layer);
  return x;
}

std::string trace_key(const std::string& name, int layer) {
  return layer < 0 ? name : fmt::format("{}.{}", name, layer);
}

void save_npy(const std::string& path, const Array& x) {
  Array f = x.dtype() == float32 ? x : astype(x, float32);
  const float* data = f.data<float>();
  std::string shape = "(";
  for (int i = 0; i < f.ndim(); ++i) shape += (i ? ", " : "") + std::to_string(f.shape(i));
  shape += f.ndim() == 1 ? ",)" : ")";
  std::string header =
      fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': {}, }}", shape);
  // magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::ofstream out(path, std::ios::binary);
  if (!out) raise<IoError>("[trace] {}: cannot open for writing", path);
  const uint16_t len = static_cast<uint16_t>(header.size());
  out.write("\x93NUMPY\x01\x00", 8);
  out.put(static_cast<char>(len & 0xff));
  out.put(static_cast<char>(len >> 8));
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(reinterpret_cast<const char*>(data),
            static_cast<std::streamsize>(f.size() * sizeof(float)));
  if (!out) raise<IoError>("[trace] {}: write failed", path);
}

TraceDump::TraceDump(std::string dir, TraceFormat format) : dir_(std::move(dir)), format_(format) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) raise<IoError>("[trace] {}: cannot create directory: {}", dir_, ec.message());
  set_trace_hook(
      [this](const Array& x, const std::string& name, int layer) { add(x, name, layer); });
}

TraceDump::~TraceDump() {
  set_trace_hook({});
  try {
    flush();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[trace] warning: %s\n", e.what());
  }
}

void TraceDump::add(const Array& x, const std::string& name, int layer) {
  std::string key = trace_key(name, layer);
  std::lock_guard<std::mutex> lock(mu_);
  int n = ++seen_[key];
  if (n > 1) key += fmt::format("#{}", n);
  keys_.push_back(key);
  // Host copies: the dump outlives the forward pass and is written from host memory.
  Array f = to_device(astype(x, float32), cpu_device);
  f.eval();
  if (format_ == TraceFormat::npy)
    save_npy((std::filesystem::path(dir_) / (key + ".npy")).string(), f);
  else
    arrays_.emplace(key, f);
}

void TraceDump::flush() {
  std::lock_guard<std::mutex> lock(mu_);
  if (format_ != TraceFormat::safetensors || arrays_.empty()) return;
  save_safetensors((std::filesystem::path(dir_) / "trace.safetensors").string(), arrays_,
                   {{"format", "ingot-trace"}});
}

std::vector<std::string> TraceDump::keys() const {
  std::lock_guard<std::mutex> lock(mu_);
  return keys_;
}

}  // namespace ingot::models
