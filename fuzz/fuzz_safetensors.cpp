// libFuzzer target: the safetensors header parser on arbitrary bytes, and for inputs it accepts,
// loading every tensor through the mmapped reader (conversions, alignment, bool normalisation).
// Every rejection must be an ingot::Error; anything else (crash, other exception) is a bug.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto h = ingot::parse_safetensors_header(data, size, size, "fuzz.safetensors");
    if (size > (1u << 20) || h.tensors.empty()) return 0;
    // Accepted: load it through a real file so the mmap path and conversions run too.
    int fd = memfd_create("fuzz", 0);
    if (fd < 0) return 0;
    if (write(fd, data, size) == static_cast<ssize_t>(size)) {
      ingot::SafetensorsFile f("/proc/self/fd/" + std::to_string(fd));
      for (const auto& t : h.tensors) {
        ingot::Array a = f.load(t.name);
        if (a.size() > 0 && a.size() < 4096) (void)a.to_vector<float>();
      }
    }
    close(fd);
  } catch (const ingot::Error&) {
  }
  return 0;
}
