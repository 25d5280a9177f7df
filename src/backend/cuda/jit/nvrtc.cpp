// NVRTC compilation and the process-wide cache of generated kernels. A key's first use on a
// device compiles (SASS for the device's architecture, or PTX for the newest one NVRTC knows
// when the device is newer), loads the image into the device's primary context and keeps the
// module for the life of the process.
#include "backend/cuda/jit/nvrtc.h"

#include <cuda.h>
#include <cuda_runtime.h>
#include <nvrtc.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "backend/cuda/utils.h"
#include "util/error.h"

namespace ingot::cu {
namespace {

// Driver-API functions come through the runtime's entry-point query, not by linking libcuda:
// binaries must start (and skip their GPU work) on machines without a driver, like CI.
template <typename F>
F driver_entry(const char* symbol) {
  void* p = nullptr;
  cudaDriverEntryPointQueryResult q{};
  INGOT_CUDA_CHECK(cudaGetDriverEntryPointByVersion(symbol, &p, 12000, cudaEnableDefault, &q));
  if (q != cudaDriverEntryPointSuccess || !p)
    raise<DeviceError>("[jit] the CUDA driver has no {}", symbol);
  return reinterpret_cast<F>(p);
}

#define INGOT_DRIVER_FN(name) decltype(&::name) p_##name = driver_entry<decltype(&::name)>(#name)
struct Driver {
  INGOT_DRIVER_FN(cuGetErrorName);
  INGOT_DRIVER_FN(cuGetErrorString);
  INGOT_DRIVER_FN(cuModuleLoadData);
  INGOT_DRIVER_FN(cuModuleGetFunction);
  INGOT_DRIVER_FN(cuModuleUnload);
  INGOT_DRIVER_FN(cuLaunchKernel);
  INGOT_DRIVER_FN(cuLaunchKernelEx);
};
#undef INGOT_DRIVER_FN

const Driver& driver() {
  static const Driver* d = new Driver();  // never destroyed: modules outlive static destruction
  return *d;
}

void check_cu(CUresult r, const char* call) {
  if (r == CUDA_SUCCESS) return;
  const char* name = nullptr;
  const char* text = nullptr;
  driver().p_cuGetErrorName(r, &name);
  driver().p_cuGetErrorString(r, &text);
  raise<DeviceError>("[jit] {} failed: {} ({})", call, name ? name : "unknown error",
                     text ? text : "no description");
}

void check_nvrtc(nvrtcResult r, const char* call) {
  if (r != NVRTC_SUCCESS) raise<DeviceError>("[jit] {} failed: {}", call, nvrtcGetErrorString(r));
}

/// Makes the primary context of `device` current on this thread: the context the runtime
/// (streams, allocations) uses, so modules loaded here can run on runtime streams.
void ensure_context(int device) {
  set_device(Device{Device::Type::cuda, device});
  INGOT_CUDA_CHECK(cudaFree(nullptr));  // initialises the runtime's context if needed
}

/// NVRTC's target for `device`: its own sm_XY (a cubin) when NVRTC supports it, else PTX for
/// the newest older architecture NVRTC knows (the driver compiles it on load).
struct Target {
  int arch = 0;
  bool cubin = true;
};
Target target_for(int device) {
  const cudaDeviceProp& p = props(device);
  const int want = p.major * 10 + p.minor;
  int n = 0;
  check_nvrtc(nvrtcGetNumSupportedArchs(&n), "nvrtcGetNumSupportedArchs");
  std::vector<int> archs(static_cast<size_t>(n));
  if (n > 0) check_nvrtc(nvrtcGetSupportedArchs(archs.data()), "nvrtcGetSupportedArchs");
  if (std::find(archs.begin(), archs.end(), want) != archs.end()) return {want, true};
  int best = -1;
  for (int a : archs)
    if (a <= want) best = std::max(best, a);
  if (best < 0)
    raise<Unsupported>("[jit] NVRTC cannot target compute capability {}.{} of cuda:{}", p.major,
                       p.minor, device);
  return {best, false};
}

/// 1-based line of `src` at which the generated part starts (after the prelude), for errors.
int generated_line(const std::string& src, size_t& pos) {
  pos = src.rfind("\n// ---- generated ----");
  if (pos == std::string::npos) {
    pos = 0;
    return 1;
  }
  ++pos;
  return 1 + static_cast<int>(std::count(src.begin(), src.begin() + static_cast<long>(pos), '\n'));
}

/// Compiles `src` for `device`; returns the cubin or the NUL-terminated PTX.
std::vector<char> compile(const std::string& src, int device, const char* name) {
  const Target t = target_for(device);
  const std::string arch =
      std::string("--gpu-architecture=") + (t.cubin ? "sm_" : "compute_") + std::to_string(t.arch);
  nvrtcProgram prog = nullptr;
  check_nvrtc(nvrtcCreateProgram(&prog, src.c_str(), "ingot_jit.cu", 0, nullptr, nullptr),
              "nvrtcCreateProgram");
  std::unique_ptr<nvrtcProgram, void (*)(nvrtcProgram*)> guard(
      &prog, [](nvrtcProgram* p) { nvrtcDestroyProgram(p); });
  // No FMA contraction and IEEE division/sqrt: each step rounds as the unfused kernels do.
  const char* opts[] = {arch.c_str(),  "--std=c++17",     "-default-device", "--fmad=false",
                        "--ftz=false", "--prec-div=true", "--prec-sqrt=true"};
  const nvrtcResult r = nvrtcCompileProgram(prog, static_cast<int>(std::size(opts)), opts);
  if (r != NVRTC_SUCCESS) {
    size_t log_size = 0;
    std::string log;
    if (nvrtcGetProgramLogSize(prog, &log_size) == NVRTC_SUCCESS && log_size > 1) {
      log.resize(log_size);
      nvrtcGetProgramLog(prog, log.data());
      log.resize(log_size - 1);
    }
    size_t pos = 0;
    const int line = generated_line(src, pos);
    raise<DeviceError>(
        "[jit] NVRTC could not compile kernel {} for {} (cuda:{}): {}\n{}\n"
        "generated source (from line {} of ingot_jit.cu):\n{}",
        name, arch.substr(arch.find('=') + 1), device, nvrtcGetErrorString(r), log, line,
        src.substr(pos));
  }
  size_t size = 0;
  std::vector<char> image;
  if (t.cubin) {
    check_nvrtc(nvrtcGetCUBINSize(prog, &size), "nvrtcGetCUBINSize");
    image.resize(size);
    check_nvrtc(nvrtcGetCUBIN(prog, image.data()), "nvrtcGetCUBIN");
  } else {
    check_nvrtc(nvrtcGetPTXSize(prog, &size), "nvrtcGetPTXSize");
    image.resize(size + 1, '\0');
    check_nvrtc(nvrtcGetPTX(prog, image.data()), "nvrtcGetPTX");
  }
  return image;
}

/// One cached kernel; `once` compiles it (a throw leaves it to be retried).
struct Slot {
  std::once_flag once;
  CUmodule module = nullptr;
  CUfunction fn = nullptr;
};

struct Cache {
  std::mutex mu;
  std::unordered_map<std::string, std::shared_ptr<Slot>> slots;
  std::atomic<size_t> compiled{0};
};
// Never destroyed: modules stay loaded until the process (and its contexts) ends.
Cache& cache() {
  static Cache* c = new Cache;
  return *c;
}

}  // namespace

CUfunc_st* jit_function(int device, const std::string& key,
                        const std::function<std::string()>& make_source, const char* name) {
  Cache& c = cache();
  std::string full = std::to_string(device);
  full += '|';
  full += name;
  full += '|';
  full += key;
  std::shared_ptr<Slot> slot;
  {
    std::lock_guard<std::mutex> lk(c.mu);
    std::shared_ptr<Slot>& s = c.slots[full];
    if (!s) s = std::make_shared<Slot>();
    slot = s;
  }
  // Other keys stay usable while this one compiles; callers of the same key wait for it.
  std::call_once(slot->once, [&] {
    ensure_context(device);
    const std::vector<char> image = compile(make_source(), device, name);
    CUmodule module = nullptr;
    check_cu(driver().p_cuModuleLoadData(&module, image.data()), "cuModuleLoadData");
    CUfunction fn = nullptr;
    const CUresult r = driver().p_cuModuleGetFunction(&fn, module, name);
    if (r != CUDA_SUCCESS) {
      driver().p_cuModuleUnload(module);
      check_cu(r, "cuModuleGetFunction");
    }
    slot->module = module;
    slot->fn = fn;
    c.compiled.fetch_add(1, std::memory_order_relaxed);
  });
  return slot->fn;
}

void jit_launch(CUfunc_st* f, int device, unsigned grid, unsigned block, void** args,
                CUstream_st* s) {
  ensure_context(device);
  // Generated kernels begin with griddepcontrol.wait (compiled.cpp), so they may launch with
  // programmatic stream serialization like launch_pdl's kernels.
  CUlaunchConfig cfg = {};
  cfg.gridDimX = grid;
  cfg.gridDimY = cfg.gridDimZ = 1;
  cfg.blockDimX = block;
  cfg.blockDimY = cfg.blockDimZ = 1;
  cfg.sharedMemBytes = 0;
  cfg.hStream = s;
  CUlaunchAttribute attr[1] = {};
  attr[0].id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
  attr[0].value.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  check_cu(driver().p_cuLaunchKernelEx(&cfg, f, args, nullptr), "cuLaunchKernelEx");
}

size_t jit_cache_size() {
  return cache().compiled.load(std::memory_order_relaxed);
}

}  // namespace ingot::cu
