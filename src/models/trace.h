// Named intermediates for layer-by-layer comparison with transformers: models call
// trace(x, "attn_out", layer), a no-op unless a hook is installed (TraceDump writes every traced
// array to a directory as .npy files or one safetensors file).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "core/array.h"

namespace ingot::models {

/// Receives a traced array, its name and its layer (-1 outside layers).
using TraceHook = std::function<void(const Array& x, const std::string& name, int layer)>;

/// Installs (or with an empty function removes) the process-wide trace hook.
void set_trace_hook(TraceHook hook);
/// True when a hook is installed.
bool trace_enabled();
/// Hands x to the hook if one is installed; returns x. Names used by the models: "embed",
/// "attn_out", "mlp_out", "layer_out" (per layer), "final_norm", "logits".
const Array& trace(const Array& x, const char* name, int layer = -1);
/// "name" or "name.<layer>": the key a traced array is dumped under.
std::string trace_key(const std::string& name, int layer);

/// File format of a TraceDump.
enum class TraceFormat { npy, safetensors };

/// While alive, dumps every traced array (evaluated, as float32) into `dir` (created if
/// needed): one `<key>.npy` per array, or `trace.safetensors` written when the dump is
/// destroyed or flushed. A key traced twice (e.g. two forward passes) gets a `#2`, `#3` suffix.
class TraceDump {
 public:
  explicit TraceDump(std::string dir, TraceFormat format = TraceFormat::npy);
  ~TraceDump();
  TraceDump(const TraceDump&) = delete;
  TraceDump& operator=(const TraceDump&) = delete;
  /// Writes the safetensors file now (no-op for npy).
  void flush();
  /// Keys dumped so far, in order.
  std::vector<std::string> keys() const;

 private:
  void add(const Array& x, const std::string& name, int layer);
  std::string dir_;
  TraceFormat format_;
  mutable std::mutex mu_;
  std::map<std::string, Array> arrays_;  // safetensors: collected until flush
  std::map<std::string, int> seen_;
  std::vector<std::string> keys_;
};

/// Writes a float32 array as a NumPy .npy file (format 1.0, little-endian, C order).
void save_npy(const std::string& path, const Array& x);

}  // namespace ingot::models
