// CPU evaluation of Compiled: the fused elementwise program runs block by block through the
// same kernels as the unfused ops (so results agree bitwise). Intermediates live in a few
// per-block scratch slots, reused once a value is dead, so a block's working set stays in L1.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>

#include "backend/common/utils.h"
#include "backend/cpu/elementwise_kernels.h"
#include "core/primitives/compiled.h"
#include "util/thread_pool.h"

namespace ingot {
namespace {

constexpr int64_t kBlock = 512;  // elements per block: ~10 kernel calls each, all in L1
constexpr int64_t kLine = 64;
// A slot holds a block of any dtype; the extra 3 lines stagger the slots modulo 4 KiB, so that
// a kernel's loads and stores don't falsely alias in the store buffer.
constexpr int64_t kSlotBytes = kBlock * 8 + 3 * kLine;

/// Copies `len` items of `es` bytes from `src` (stride `st` items) to contiguous `dst`.
template <typename T>
void gather_run(const char* src, int64_t st, int64_t len, char* dst) {
  const T* s = reinterpret_cast<const T*>(src);
  T* d = reinterpret_cast<T*>(dst);
  for (int64_t i = 0; i < len; ++i) std::memcpy(d + i, s + i * st, sizeof(T));
}

// Copies elements [start, start + len) (row-major order) of a strided array into dst.
void gather_block(const Array& a, int64_t start, int64_t len, char* dst) {
  const int nd = a.ndim();
  const int64_t es = static_cast<int64_t>(a.itemsize());
  const auto& sh = a.shape();
  const auto& st = a.strides();
  std::vector<int64_t> idx(nd);
  int64_t rem = start, off = 0;
  for (int d = nd - 1; d >= 0; --d) {
    idx[d] = rem % sh[d];
    rem /= sh[d];
    off += idx[d] * st[d];
  }
  const char* base = static_cast<const char*>(a.raw_ptr());
  const int64_t inner = nd > 0 ? sh[nd - 1] : 1, ist = nd > 0 ? st[nd - 1] : 0;
  for (int64_t i = 0; i < len;) {
    // One run along the last axis, then carry into the outer axes.
    const int64_t run = std::min(len - i, inner - (nd > 0 ? idx[nd - 1] : 0));
    const char* src = base + off * es;
    char* d = dst + i * es;
    switch (es) {
      case 1:
        gather_run<uint8_t>(src, ist, run, d);
        break;
      case 2:
        gather_run<uint16_t>(src, ist, run, d);
        break;
      case 4:
        gather_run<uint32_t>(src, ist, run, d);
        break;
      default:
        gather_run<uint64_t>(src, ist, run, d);
        break;
    }
    i += run;
    if (nd == 0) break;
    off += run * ist;
    idx[nd - 1] += run;
    for (int d2 = nd - 1; d2 > 0 && idx[d2] == sh[d2]; --d2) {
      off += st[d2 - 1] - idx[d2] * st[d2];
      idx[d2] = 0;
      ++idx[d2 - 1];
    }
  }
}

/// Scratch slot of each non-output step: a step takes a free slot, and the slots of its
/// arguments whose last use it is become free after it (never aliasing its own arguments).
std::vector<int> assign_slots(const std::vector<FusedStep>& steps, const std::vector<int>& out_slot,
                              int& nslots) {
  const int ns = static_cast<int>(steps.size());
  std::vector<int> last_use(ns, -1), slot(ns, -1), free;
  for (int s = 0; s < ns; ++s)
    for (int r : steps[s].args)
      if (r < 0) last_use[-r - 1] = s;
  nslots = 0;
  for (int s = 0; s < ns; ++s) {
    if (out_slot[s] < 0) {
      if (free.empty()) free.push_back(nslots++);
      slot[s] = free.back();
      free.pop_back();
    }
    for (int r : steps[s].args) {
      const int v = r < 0 ? -r - 1 : -1;
      if (v >= 0 && last_use[v] == s && slot[v] >= 0 &&
          std::find(free.begin(), free.end(), slot[v]) == free.end())
        free.push_back(slot[v]);
    }
  }
  return slot;
}

/// Prefetches the cache lines of [p + begin, p + min(end, bytes)), for reading or, with
/// `write`, for writing. A block issues 1/ns of the next block's lines before each of its ns
/// kernel calls: spread out, they keep memory busy while the block computes, where one burst
/// would stall on full miss buffers.
template <bool write>
inline void prefetch_lines(const char* p, int64_t begin, int64_t end, int64_t bytes) {
  for (int64_t o = begin; o < std::min(end, bytes); o += kLine) __builtin_prefetch(p + o, write);
}

/// One external input of the program.
struct Input {
  enum Mode { contiguous, broadcast, strided };
  const char* base = nullptr;
  int64_t es = 0;
  Mode mode = contiguous;
  int gather_slot = -1;  // strided: its gather buffer
  int64_t part = 0;      // bytes of a block prefetched before each step
};

/// One step of the program, resolved for this call.
struct Step {
  cpu::EwKernel kernel = nullptr;
  int nargs = 0;
  int args[3] = {0, 0, 0};  // >= 0 input index, < 0 step -(k+1)
  int64_t out_es = 0;
  char* out = nullptr;  // the output array it writes, or nullptr for a scratch slot
  int slot = -1;
  int64_t part = 0;  // bytes of a block of `out` prefetched before each step
};

/// Bytes per step when a block of `es`-byte items is prefetched over `ns` steps (whole lines).
int64_t prefetch_part(int64_t es, size_t ns) {
  const int64_t lines = (kBlock * es + kLine - 1) / kLine, n = static_cast<int64_t>(ns);
  return (lines + n - 1) / n * kLine;
}

/// Resolves each external input's access mode; returns the number of gather buffers.
int plan_inputs(const std::vector<Array>& in, std::vector<Input>& ins) {
  int ngather = 0;
  ins.resize(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const Array& a = in[i];
    bool all_zero = true;
    for (auto s : a.strides()) all_zero = all_zero && s == 0;
    ins[i].base = static_cast<const char*>(a.raw_ptr());
    ins[i].es = static_cast<int64_t>(a.itemsize());
    ins[i].mode = a.flags().row_contiguous ? Input::contiguous
                                           : (all_zero ? Input::broadcast : Input::strided);
    if (ins[i].mode == Input::strided) ins[i].gather_slot = ngather++;
  }
  return ngather;
}

}  // namespace

void Compiled::eval_cpu(const std::vector<Array>& in, std::vector<Array>& out) {
  for (auto& o : out) backend::alloc_cpu(o);
  const int64_t n = out[0].size();
  if (n == 0) return;
  const size_t ni = in.size(), ns = steps_.size();
  std::vector<Input> ins;
  const int ngather = plan_inputs(in, ins);
  for (Input& x : ins) x.part = prefetch_part(x.es, ns);
  std::vector<int> out_slot(ns, -1);
  for (size_t k = 0; k < outputs_.size(); ++k) out_slot[outputs_[k]] = static_cast<int>(k);
  int nslots = 0;
  const std::vector<int> slot = assign_slots(steps_, out_slot, nslots);
  std::vector<Step> plan(ns);
  for (size_t s = 0; s < ns; ++s) {
    const FusedStep& st = steps_[s];
    plan[s].kernel = cpu::ew_kernel(st.op, st.in_dtype, st.out_dtype);
    plan[s].nargs = static_cast<int>(st.args.size());
    std::copy(st.args.begin(), st.args.end(), plan[s].args);
    plan[s].out_es = static_cast<int64_t>(size_of(st.out_dtype));
    plan[s].out = out_slot[s] >= 0 ? static_cast<char*>(out[out_slot[s]].raw_ptr()) : nullptr;
    plan[s].slot = slot[s];
    plan[s].part = prefetch_part(plan[s].out_es, ns);
  }
  const int64_t nblocks = (n + kBlock - 1) / kBlock;
  parallel_for(nblocks, 32, [&](int64_t b0, int64_t b1) {
    // Scratch: nslots value slots, then one gather buffer per strided input, 64-byte aligned.
    std::unique_ptr<char[]> raw(new char[(nslots + ngather) * kSlotBytes + kLine]);
    char* scratch = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw.get()) + kLine - 1) &
                                            ~uintptr_t(kLine - 1));
    std::vector<cpu::EwArg> ext(ni);
    std::vector<void*> val(ns);
    cpu::EwArg args[3];
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t start = b * kBlock, len = std::min(kBlock, n - start);
      const int64_t next = std::min(kBlock, n - start - len);  // length of the next block
      for (size_t i = 0; i < ni; ++i) {
        const Input& x = ins[i];
        if (x.mode == Input::contiguous) {
          ext[i] = {x.base + start * x.es, 1};
        } else if (x.mode == Input::broadcast) {
          ext[i] = {x.base, 0};
        } else {
          char* dst = scratch + (nslots + x.gather_slot) * kSlotBytes;
          gather_block(in[i], start, len, dst);
          ext[i] = {dst, 1};
        }
      }
      for (size_t s = 0; s < ns; ++s) {
        const Step& st = plan[s];
        if (next > 0) {  // part s of the next block's contiguous inputs and outputs
          const int64_t k = static_cast<int64_t>(s);
          for (const Input& x : ins)
            if (x.mode == Input::contiguous)
              prefetch_lines<false>(x.base + (start + len) * x.es, k * x.part, (k + 1) * x.part,
                                    next * x.es);
          for (const Step& q : plan)
            if (q.out)
              prefetch_lines<true>(q.out + (start + len) * q.out_es, k * q.part, (k + 1) * q.part,
                                   next * q.out_es);
        }
        for (int a = 0; a < st.nargs; ++a) {
          const int r = st.args[a];
          args[a] = r >= 0 ? ext[r] : cpu::EwArg{val[-r - 1], 1};
        }
        void* dst = st.out ? static_cast<void*>(st.out + start * st.out_es)
                           : static_cast<void*>(scratch + st.slot * kSlotBytes);
        st.kernel(args, dst, len);
        val[s] = dst;
      }
    }
  });
}

}  // namespace ingot
