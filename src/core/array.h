// Array: a cheap value handle to a node of the lazy graph (shape, strides, dtype, primitive,
// inputs, data). Ops build nodes; eval() runs them; host reads always evaluate first and
// return row-major data, also for views.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <type_traits>
#include <vector>

#include "core/allocator.h"
#include "core/device.h"
#include "core/dtype.h"
#include "util/error.h"

namespace ingot {

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;  // in elements

class Primitive;
class Array;

/// Owned storage behind one or more arrays (views share it).
struct Data {
  Buffer buffer;
  Device device = cpu_device;
  /// Custom release (e.g. munmap for memory-mapped weights); default: the device allocator.
  std::function<void(Buffer)> deleter;
  Data(Buffer b, Device d) : buffer(b), device(d) {}
  Data(Buffer b, Device d, std::function<void(Buffer)> del)
      : buffer(b), device(d), deleter(std::move(del)) {}
  ~Data();
  Data(const Data&) = delete;
  Data& operator=(const Data&) = delete;
};

/// Layout flags of an evaluated array.
struct Flags {
  bool contiguous = true;      // elements occupy a dense range (any order)
  bool row_contiguous = true;  // C order
  bool col_contiguous = true;  // Fortran order
};

/// Number of elements of a shape (1 for a scalar).
int64_t shape_size(const Shape& s);
/// Row-major strides of a shape.
Strides row_major_strides(const Shape& s);
/// "[2, 3, 4]"
std::string shape_str(const Shape& s);
/// Normalises a possibly negative axis against ndim; throws InvalidArgument "[op] ..." if out of
/// range.
int normalize_axis(int axis, int ndim, const char* op);

/// A lazily evaluated n-dimensional array.
class Array {
 public:
  Array() = default;
  /// 0-d array holding a scalar; its dtype follows the C++ type (float -> float32, ...).
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T> ||
                                                    std::is_same_v<T, ingot::float16_t> ||
                                                    std::is_same_v<T, ingot::bfloat16_t>>>
  Array(T scalar);  // NOLINT: implicit so that `x + 1.0f` reads naturally
  /// 0-d array of `scalar` converted to `dtype`.
  template <typename T>
  Array(T scalar, Dtype dtype);
  /// Array from host values with a shape (copied; values converted to dtype).
  template <typename T>
  Array(const std::vector<T>& values, Shape shape, Dtype dtype = dtype_of<T>());
  template <typename T>
  Array(std::initializer_list<T> values, Shape shape, Dtype dtype = dtype_of<T>());
  /// 1-d array from a list, e.g. Array({1.f, 2.f, 3.f}).
  Array(std::initializer_list<float> values);
  Array(std::initializer_list<int32_t> values, Dtype dtype = Dtype::int32);

  /// Node constructor used by ops: an unevaluated output of `primitive`.
  Array(Shape shape, Dtype dtype, std::shared_ptr<Primitive> primitive, std::vector<Array> inputs);
  /// Several outputs of one primitive (siblings evaluated together).
  static std::vector<Array> make_arrays(std::vector<Shape> shapes, std::vector<Dtype> dtypes,
                                        std::shared_ptr<Primitive> primitive,
                                        std::vector<Array> inputs);

  // --- metadata (no evaluation) ---
  bool valid() const { return desc_ != nullptr; }
  const Shape& shape() const { return desc().shape; }
  /// Size of an axis (negative counts from the end).
  int64_t shape(int axis) const;
  int ndim() const { return static_cast<int>(desc().shape.size()); }
  int64_t size() const { return desc().size; }
  Dtype dtype() const { return desc().dtype; }
  size_t itemsize() const { return size_of(dtype()); }
  size_t nbytes() const { return static_cast<size_t>(size()) * itemsize(); }
  Device device() const;

  // --- evaluation and host reads ---
  /// Evaluates this array (and what it depends on).
  void eval() const;
  bool is_evaluated() const { return desc().evaluated; }
  /// True for 0-d arrays made from a bare C++ scalar (weakly typed in binary ops).
  bool is_weak_scalar() const { return desc().weak; }
  /// True for arrays made from host values (scalars, vectors): ops move them to the device of
  /// the op that uses them instead of treating them as living on the CPU.
  bool is_host_constant() const { return desc().host_constant; }
  /// Marks this array as standing for a host constant (compile's traced stand-ins).
  void set_host_constant(bool v) { desc().host_constant = v; }
  /// The single value of a size-1 array, converted to T.
  template <typename T>
  T item() const;
  /// All values in row-major order, converted to T.
  template <typename T>
  std::vector<T> to_vector() const;
  /// Pointer to row-major contiguous host data of type T (T must match the dtype). Evaluates,
  /// and replaces a non-contiguous view's storage by a contiguous copy; for a GPU array, a host
  /// copy kept with the array (valid while it lives).
  template <typename T>
  const T* data() const;

  // --- graph access (for transforms and backends) ---
  bool has_primitive() const { return desc().primitive != nullptr; }
  Primitive& primitive() const;
  std::shared_ptr<Primitive> primitive_ptr() const { return desc().primitive; }
  const std::vector<Array>& inputs() const { return desc().inputs; }
  std::vector<Array>& inputs() { return desc().inputs; }
  /// The other outputs of this array's primitive, in output order (excluding this one).
  std::vector<Array> siblings() const;
  /// All outputs of this array's primitive in position order (just this array for
  /// single-output primitives); outputs the caller dropped are recreated as stand-ins.
  std::vector<Array> outputs() const;
  /// outputs() into `r` (cleared first): eval reuses one vector instead of allocating per node.
  void outputs_into(std::vector<Array>& r) const;
  /// Index of this array among its primitive's outputs.
  int output_index() const { return desc().position; }
  /// Identity of the node (stable while the array lives).
  uintptr_t id() const { return reinterpret_cast<uintptr_t>(desc_.get()); }
  /// Identity shared by every output of one multi-output primitive node (the id of its first
  /// output still alive); id() for a single-output array.
  uintptr_t group_id() const;
  bool same_node(const Array& o) const { return desc_ == o.desc_; }
  /// Drops primitive, inputs, siblings and held arrays (after evaluation).
  void detach();
  /// Keeps `other` (a sibling output the caller does not return, needed by this array's VJP)
  /// alive until this array is evaluated and detached: siblings are held weakly, so an output
  /// nobody holds is otherwise gone by the time the VJP asks for it (outputs() then gives a
  /// stand-in). `other` must not hold this array (no cycle).
  void hold(const Array& other);

  // --- storage (for kernels; arrays must be evaluated or being evaluated) ---
  const Strides& strides() const { return desc().strides; }
  int64_t stride(int axis) const;
  const Flags& flags() const { return desc().flags; }
  /// Elements spanned by the storage this array reads (size() for contiguous arrays).
  int64_t data_size() const { return desc().data_size; }
  /// Raw pointer to the first element (strided; no evaluation).
  template <typename T>
  T* raw_ptr() const {
    return static_cast<T*>(desc().data_ptr);
  }
  void* raw_ptr() const { return desc().data_ptr; }
  const std::shared_ptr<Data>& data_shared() const { return desc().data; }
  /// Allocates fresh row-contiguous storage for all elements.
  void set_data(Buffer b);
  void set_data(std::shared_ptr<Data> d);
  /// Sets storage with an explicit layout.
  void set_data(std::shared_ptr<Data> d, int64_t data_size, Strides strides, Flags flags,
                void* data_ptr = nullptr);
  /// Makes this a view of `other`'s storage with the given layout; `offset` in elements.
  void copy_shared_buffer(const Array& other, const Strides& strides, Flags flags,
                          int64_t data_size, int64_t offset = 0);
  /// Same layout and storage as `other`.
  void copy_shared_buffer(const Array& other);
  /// Takes over `other`'s storage (same size and dtype), for buffer donation.
  void move_shared_buffer(Array other);
  /// True when this array's storage can be reused by a kernel: only this handle holds the node
  /// and the storage, and the layout is row contiguous.
  bool is_donatable() const { return is_donatable(1); }
  /// Same, when `holders` handles to this node are known to be the caller's own: every output
  /// of a multi-output primitive holds its inputs, so during its eval an input is held
  /// outputs.size() times by that primitive alone.
  bool is_donatable(long holders) const;
  /// Marks this node evaluated (used by eval).
  void set_evaluated() { desc().evaluated = true; }

 private:
  struct Desc {
    Shape shape;
    Strides strides;
    int64_t size = 0;
    Dtype dtype = Dtype::float32;
    std::shared_ptr<Primitive> primitive;
    std::vector<Array> inputs;
    struct Sibling {
      std::weak_ptr<Desc> desc;
      Shape shape;
      Dtype dtype;
    };
    std::vector<Sibling> siblings;  // all outputs incl. self, by position (multi-output only)
    std::vector<std::shared_ptr<Desc>> held;  // hold(): kept alive until detach()
    int position = 0;
    std::shared_ptr<Data> data;
    void* data_ptr = nullptr;
    int64_t data_size = 0;
    Flags flags;
    bool evaluated = false;
    bool weak = false;                  // made from a C++ scalar: adopts the other operand's dtype
    bool host_constant = false;         // made from host values: moves to the device that uses it
    std::weak_ptr<Desc> device_copy;    // a host constant's latest copy on a GPU
    std::shared_ptr<Data> host_mirror;  // a GPU array's host copy for data<T>()
    Desc(Shape s, Dtype t);
    ~Desc();  // iterative: a 100k-long chain must not overflow the stack
  };
  explicit Array(std::shared_ptr<Desc> d) : desc_(std::move(d)) {}
  void place_host_constants();
  Desc& desc() const;
  void init_from_host(const void* src, Dtype src_type, Shape shape, Dtype dtype);
  void ensure_row_contiguous() const;
  const void* host_data() const;

  std::shared_ptr<Desc> desc_;
};

/// Evaluates several arrays in one pass over the graph.
void eval(const std::vector<Array>& arrays);

/// Copies n elements of type `src` into `dst` converting to `dst_type` (contiguous).
void convert_copy(const void* src, Dtype src_type, void* dst, Dtype dst_type, int64_t n);
/// Copies a strided array's elements into contiguous row-major `dst` of the same dtype.
void copy_to_row_major(const Array& a, void* dst);
/// Same for an array on any device: `dst` is host memory (waits for a GPU array's stream).
void read_row_major(const Array& a, void* dst);

/// Where an op on `inputs` runs: the stream or device given, else the device of the first
/// input that is not a host constant, else the default device. Host constants (arrays made
/// from C++ values) are copied to the op's device when its node is built.
Stream resolve_stream(const StreamOrDevice& s, std::initializer_list<const Array*> inputs);
Stream resolve_stream(const StreamOrDevice& s, const std::vector<Array>& inputs);
/// The device ops on `a` alone run on: its own, or the default device for a host constant.
Device op_device(const Array& a);

/// An evaluated array's elements on their way to host memory. For a GPU array the copy is queued
/// on its stream when this is made (into pinned host memory), so `get()` waits for that copy
/// only: work queued on the stream afterwards does not delay it, and the host can queue the next
/// batch before reading this one. A CPU array's elements are copied at once.
class PendingRead {
 public:
  /// Evaluates `a` and starts the copy.
  explicit PendingRead(const Array& a);
  /// Waits for the copy; the values in row-major order, converted to T (like to_vector).
  template <typename T>
  std::vector<T> get();

 private:
  const void* wait();  // row-major bytes in a's dtype, valid while this lives
  Array a_;
  std::vector<uint8_t> host_;    // CPU arrays
  std::shared_ptr<void> token_;  // GPU arrays: the backend's copy
};

namespace gpu {
/// Copies an evaluated CUDA array's elements, row-major, into host memory `dst` (waits for its
/// stream; surfaces asynchronous errors as DeviceError). Defined by the GPU backend.
void copy_to_host(const Array& a, void* dst);
/// Queues a copy of an evaluated CUDA array's elements, row-major, into pinned host memory
/// and returns it; finish_host_read waits for it and gives the bytes (valid while the handle
/// lives). Defined by the GPU backend.
std::shared_ptr<void> start_host_read(const Array& a);
const void* finish_host_read(const std::shared_ptr<void>& read);
}  // namespace gpu

// ---- template definitions ----

template <typename T, typename>
Array::Array(T scalar) {
  init_from_host(&scalar, dtype_of<T>(), {}, dtype_of<T>());
  desc_->weak = true;
}
template <typename T>
Array::Array(T scalar, Dtype dtype) {
  init_from_host(&scalar, dtype_of<T>(), {}, dtype);
}
template <typename T>
Array::Array(const std::vector<T>& values, Shape shape, Dtype dtype) {
  if (static_cast<int64_t>(values.size()) != shape_size(shape))
    raise("[array] {} values given for shape {} ({} elements)", values.size(), shape_str(shape),
          shape_size(shape));
  if constexpr (std::is_same_v<T, bool>) {
    std::vector<uint8_t> tmp(values.begin(), values.end());
    init_from_host(tmp.data(), Dtype::bool_, std::move(shape), dtype);
  } else {
    init_from_host(values.data(), dtype_of<T>(), std::move(shape), dtype);
  }
}
template <typename T>
Array::Array(std::initializer_list<T> values, Shape shape, Dtype dtype)
    : Array(std::vector<T>(values), std::move(shape), dtype) {}

namespace detail {
/// Row-major elements of dtype `src_type` at src converted into out (its size: the count).
template <typename T>
void convert_into(const void* src, Dtype src_type, std::vector<T>& out) {
  const auto n = static_cast<int64_t>(out.size());
  if constexpr (std::is_same_v<T, bool>) {
    std::vector<uint8_t> b(out.size());
    convert_copy(src, src_type, b.data(), Dtype::bool_, n);
    for (size_t i = 0; i < b.size(); ++i) out[i] = b[i] != 0;
  } else {
    convert_copy(src, src_type, out.data(), dtype_of<T>(), n);
  }
}
}  // namespace detail

template <typename T>
std::vector<T> Array::to_vector() const {
  eval();
  std::vector<T> out(static_cast<size_t>(size()));
  if (size() == 0) return out;
  const void* src = nullptr;
  std::vector<uint8_t> tmp;
  if (flags().row_contiguous && device().type == Device::Type::cpu) {
    src = raw_ptr();
  } else {
    tmp.resize(nbytes());
    read_row_major(*this, tmp.data());
    src = tmp.data();
  }
  detail::convert_into(src, dtype(), out);
  return out;
}

template <typename T>
std::vector<T> PendingRead::get() {
  std::vector<T> out(static_cast<size_t>(a_.size()));
  if (out.empty()) return out;
  detail::convert_into(wait(), a_.dtype(), out);
  return out;
}

template <typename T>
T Array::item() const {
  if (size() != 1)
    raise("[item] expected an array of one element, got shape {}", shape_str(shape()));
  return to_vector<T>()[0];
}

template <typename T>
const T* Array::data() const {
  if (dtype_of<T>() != dtype())
    raise("[data] requested {} data from an array of dtype {}", dtype_name(dtype_of<T>()),
          dtype_name(dtype()));
  eval();
  return static_cast<const T*>(host_data());
}

}  // namespace ingot
