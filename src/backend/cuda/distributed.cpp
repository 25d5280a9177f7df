// AllSum / AllGather on CUDA through NCCL (DESIGN.md §3), queued on the primitive's stream.
// libnccl.so.2 (in the CUDA toolkit) is opened on first use, so binaries start and run
// single-GPU work where it is missing. Each group gets one communicator, made on its first
// collective: rank 0's ncclUniqueId travels over the group's TCP rendezvous, then
// ncclCommInitRank, with NVLink multicast off (NCCL_NVLS_ENABLE=0 unless set).
#include <dlfcn.h>

#include <cstdlib>
#include <memory>
#include <mutex>

#include "backend/cuda/utils.h"
#include "core/primitives/distributed.h"
#include "util/error.h"
#include "util/net.h"

#if __has_include(<nccl.h>)
#include <nccl.h>
#define INGOT_HAS_NCCL_HEADER 1
#endif

namespace ingot {

#ifdef INGOT_HAS_NCCL_HEADER

namespace {

/// The NCCL entry points ingot uses, resolved from libnccl.so.2.
struct Nccl {
  decltype(&ncclGetVersion) get_version = nullptr;
  decltype(&ncclGetUniqueId) get_unique_id = nullptr;
  decltype(&ncclCommInitRank) comm_init_rank = nullptr;
  decltype(&ncclCommDestroy) comm_destroy = nullptr;
  decltype(&ncclAllReduce) all_reduce = nullptr;
  decltype(&ncclAllGather) all_gather = nullptr;
  decltype(&ncclGetErrorString) error_string = nullptr;
  decltype(&ncclGetLastError) last_error = nullptr;
};

const Nccl& nccl() {
  static std::once_flag once;
  static Nccl lib;
  static std::string failure;
  std::call_once(once, [] {
    void* h = ::dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h) h = ::dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      const char* e = ::dlerror();
      failure = e ? e : "not found";
      return;
    }
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(h, name));
      if (!fn && failure.empty()) failure = std::string("missing symbol ") + name;
    };
    sym(lib.get_version, "ncclGetVersion");
    sym(lib.get_unique_id, "ncclGetUniqueId");
    sym(lib.comm_init_rank, "ncclCommInitRank");
    sym(lib.comm_destroy, "ncclCommDestroy");
    sym(lib.all_reduce, "ncclAllReduce");
    sym(lib.all_gather, "ncclAllGather");
    sym(lib.error_string, "ncclGetErrorString");
    sym(lib.last_error, "ncclGetLastError");
  });
  if (!failure.empty())
    raise<Unsupported>(
        "[dist] cannot load NCCL (libnccl.so.2, from the CUDA toolkit; add its directory to "
        "LD_LIBRARY_PATH): {}",
        failure);
  return lib;
}

void check(ncclResult_t r, const char* call, ncclComm_t comm = nullptr) {
  if (r == ncclSuccess || r == ncclInProgress) return;
  const Nccl& n = nccl();
  const char* detail = n.last_error ? n.last_error(comm) : nullptr;
  raise<DeviceError>("[dist] {} failed: {}{}{}", call, n.error_string(r),
                     detail && *detail ? ": " : "", detail ? detail : "");
}

/// The communicator of a group on this process's device.
struct NcclState : dist::Group::BackendState {
  ncclComm_t comm = nullptr;
  int device = -1;
  ~NcclState() override {
    if (comm) nccl().comm_destroy(comm);
  }
};

ncclComm_t communicator(const dist::Group& g, Device d) {
  std::lock_guard<std::mutex> lock(g.state_mutex());
  auto& state = g.gpu_state();
  if (state) {
    auto* s = dynamic_cast<NcclState*>(state.get());
    INGOT_ASSERT(s, "group state is not NCCL's");
    if (s->device != d.index)
      raise<Unsupported>(
          "[dist] rank {} runs its collectives on cuda:{}, now asked for cuda:{}: one device "
          "per process",
          g.rank(), s->device, d.index);
    return s->comm;
  }
  const Nccl& n = nccl();
  ::setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
  ncclUniqueId id{};
  if (g.rank() == 0) check(n.get_unique_id(&id), "ncclGetUniqueId");
  if (g.size() > 1) g.network().broadcast(&id, sizeof id);
  cu::set_device(d);
  auto s = std::make_unique<NcclState>();
  s->device = d.index;
  check(n.comm_init_rank(&s->comm, g.size(), id, g.rank()), "ncclCommInitRank");
  ncclComm_t comm = s->comm;
  state = std::move(s);
  return comm;
}

ncclDataType_t nccl_type(Dtype t) {
  switch (t) {
    case Dtype::float32:
      return ncclFloat32;
    case Dtype::float64:
      return ncclFloat64;
    case Dtype::bfloat16:
      return ncclBfloat16;
    case Dtype::float16:
      return ncclFloat16;
    case Dtype::int32:
      return ncclInt32;
    default:
      raise<Unsupported>("[all_sum] dtype {} through NCCL", dtype_name(t));
  }
}

/// The input's bytes in row-major order on the device (the ops make inputs contiguous; a
/// strided input is copied to `tmp`).
const void* row_major(const Array& a, std::unique_ptr<cu::Scratch>& tmp, cudaStream_t s) {
  if (a.flags().row_contiguous) return a.raw_ptr();
  tmp = std::make_unique<cu::Scratch>(a.device(), a.nbytes());
  cu::copy_to_row_major_device(a, tmp->ptr(), s);
  return tmp->ptr();
}

}  // namespace

void AllSum::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  const ncclDataType_t type = nccl_type(in.dtype());
  ncclComm_t comm = communicator(*group_, out.device());
  const cudaStream_t s = cu::stream(stream());
  std::unique_ptr<cu::Scratch> tmp;
  const void* src = row_major(in, tmp, s);
  cu::alloc(out);
  check(
      nccl().all_reduce(src, out.raw_ptr(), static_cast<size_t>(in.size()), type, ncclSum, comm, s),
      "ncclAllReduce", comm);
}

void AllGather::eval_cuda(const std::vector<Array>& inputs, Array& out) {
  const Array& in = inputs[0];
  ncclComm_t comm = communicator(*group_, out.device());
  const cudaStream_t s = cu::stream(stream());
  std::unique_ptr<cu::Scratch> tmp;
  const void* src = row_major(in, tmp, s);
  cu::alloc(out);
  const size_t bytes = in.nbytes();
  int64_t outer = 1;
  for (int d = 0; d < axis_; ++d) outer *= in.shape(d);
  if (outer == 1) {  // rank-major is the output's layout
    check(nccl().all_gather(src, out.raw_ptr(), bytes, ncclUint8, comm, s), "ncclAllGather", comm);
    return;
  }
  // Gathered rank-major [size][outer][chunk], then each rank's block placed at columns
  // [r * chunk, (r + 1) * chunk) of the output's [outer][size * chunk].
  const size_t size = static_cast<size_t>(group_->size());
  cu::Scratch gathered(out.device(), bytes * size);
  check(nccl().all_gather(src, gathered.ptr(), bytes, ncclUint8, comm, s), "ncclAllGather", comm);
  const size_t chunk = bytes / static_cast<size_t>(outer);
  for (size_t r = 0; r < size; ++r)
    INGOT_CUDA_CHECK(cudaMemcpy2DAsync(static_cast<char*>(out.raw_ptr()) + r * chunk, size * chunk,
                                       gathered.as<char>() + r * bytes, chunk, chunk,
                                       static_cast<size_t>(outer), cudaMemcpyDeviceToDevice, s));
}

#else  // a toolkit without nccl.h

void AllSum::eval_cuda(const std::vector<Array>&, Array&) {
  raise<Unsupported>("[all_sum] ingot was built without NCCL (no nccl.h in the CUDA toolkit)");
}
void AllGather::eval_cuda(const std::vector<Array>&, Array&) {
  raise<Unsupported>("[all_gather] ingot was built without NCCL (no nccl.h in the CUDA toolkit)");
}

#endif

}  // namespace ingot
