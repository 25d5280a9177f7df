// Array node construction, storage management, host reads and type conversion.
#include "core/array.h"

#include <cstring>
#include <numeric>

#include "core/cast.h"
#include "core/ops/creation.h"
#include "core/primitive.h"
#include "core/transforms/eval.h"

namespace ingot {

Data::~Data() {
  if (!buffer.ptr) return;
  if (deleter)
    deleter(buffer);
  else
    allocator(device).free(buffer);
}

int64_t shape_size(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

Strides row_major_strides(const Shape& s) {
  Strides st(s.size());
  int64_t acc = 1;
  for (int i = static_cast<int>(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

int normalize_axis(int axis, int ndim, const char* op) {
  int a = axis < 0 ? axis + ndim : axis;
  if (a < 0 || a >= ndim)
    raise("[{}] axis {} is out of range for an array of {} dimensions", op, axis, ndim);
  return a;
}

Array::Desc::Desc(Shape s, Dtype t) : shape(std::move(s)), dtype(t) {
  for (auto d : shape)
    if (d < 0) raise("[array] negative dimension in shape {}", shape_str(shape));
  size = shape_size(shape);
  strides = row_major_strides(shape);
}

Array::Desc::~Desc() {
  if (inputs.empty()) return;
  // Tear down long chains iteratively: take over inputs whose last owner is this node.
  std::vector<std::shared_ptr<Desc>> stack;
  for (auto& in : inputs)
    if (in.desc_) stack.push_back(std::move(in.desc_));
  inputs.clear();
  while (!stack.empty()) {
    std::shared_ptr<Desc> d = std::move(stack.back());
    stack.pop_back();
    if (d.use_count() == 1) {
      for (auto& in : d->inputs)
        if (in.desc_) stack.push_back(std::move(in.desc_));
      d->inputs.clear();
    }
  }
}

Array::Desc& Array::desc() const {
  if (!desc_) raise("[array] use of an empty (default-constructed) array");
  return *desc_;
}

Array::Array(std::initializer_list<float> values)
    : Array(std::vector<float>(values), Shape{static_cast<int64_t>(values.size())}) {}
Array::Array(std::initializer_list<int32_t> values, Dtype dtype)
    : Array(std::vector<int32_t>(values), Shape{static_cast<int64_t>(values.size())}, dtype) {}

Array::Array(Shape shape, Dtype dtype, std::shared_ptr<Primitive> primitive,
             std::vector<Array> inputs)
    : desc_(std::make_shared<Desc>(std::move(shape), dtype)) {
  desc_->primitive = std::move(primitive);
  desc_->inputs = std::move(inputs);
  place_host_constants();
}

void Array::place_host_constants() {
  Desc& d = *desc_;
  if (!d.primitive) return;  // placeholders (compile's traced inputs)
  const Device dev = d.primitive->device();
  if (dev.type == Device::Type::cpu || d.primitive->crosses_devices()) return;
  for (Array& in : d.inputs) {
    if (!in.valid() || !in.desc_->host_constant || in.device() == dev) continue;
    std::shared_ptr<Desc> copy = in.desc_->device_copy.lock();
    if (!copy || Array(copy).device() != dev) {
      Array moved = to_device(in, dev);
      in.desc_->device_copy = moved.desc_;
      copy = moved.desc_;
    }
    in = Array(copy);
  }
}

std::vector<Array> Array::make_arrays(std::vector<Shape> shapes, std::vector<Dtype> dtypes,
                                      std::shared_ptr<Primitive> primitive,
                                      std::vector<Array> inputs) {
  INGOT_ASSERT(shapes.size() == dtypes.size() && !shapes.empty());
  std::vector<Array> outs;
  for (size_t i = 0; i < shapes.size(); ++i) {
    outs.emplace_back(std::move(shapes[i]), dtypes[i], primitive, inputs);
    outs.back().desc_->position = static_cast<int>(i);
  }
  if (outs.size() > 1) {
    std::vector<Desc::Sibling> all;
    for (auto& o : outs) all.push_back({o.desc_, o.desc_->shape, o.desc_->dtype});
    for (auto& o : outs) o.desc_->siblings = all;
  }
  return outs;
}

int64_t Array::shape(int axis) const {
  int a = normalize_axis(axis, ndim(), "shape");
  return desc().shape[a];
}

int64_t Array::stride(int axis) const {
  int a = normalize_axis(axis, ndim(), "stride");
  return desc().strides[a];
}

Device Array::device() const {
  const Desc& d = desc();
  if (d.data) return d.data->device;
  if (d.primitive) return d.primitive->stream().device;
  return cpu_device;
}

Primitive& Array::primitive() const {
  if (!desc().primitive) raise("[array] array has no primitive (already evaluated or a leaf)");
  return *desc().primitive;
}

std::vector<Array> Array::siblings() const {
  std::vector<Array> r;
  for (auto& w : desc().siblings) {
    auto s = w.desc.lock();
    if (s && s != desc_) r.push_back(Array(s));
  }
  return r;
}

uintptr_t Array::group_id() const {
  for (auto& w : desc().siblings)
    if (auto s = w.desc.lock()) return reinterpret_cast<uintptr_t>(s.get());
  return id();
}

std::vector<Array> Array::outputs() const {
  std::vector<Array> r;
  outputs_into(r);
  return r;
}

void Array::outputs_into(std::vector<Array>& r) const {
  r.clear();
  const Desc& d = desc();
  if (d.siblings.empty()) {
    r.push_back(*this);
    return;
  }
  r.reserve(d.siblings.size());
  for (auto& w : d.siblings) {
    if (auto s = w.desc.lock()) {
      r.push_back(Array(s));
    } else {
      r.emplace_back(w.shape, w.dtype, d.primitive, d.inputs);  // stand-in for a dropped output
    }
  }
}

void Array::detach() {
  Desc& d = desc();
  d.primitive.reset();
  d.inputs.clear();
  d.siblings.clear();
  d.held.clear();
}

void Array::hold(const Array& other) {
  if (other.desc_ != desc_) desc().held.push_back(other.desc_);
}

void Array::eval() const {
  ingot::eval({*this});
}

void Array::set_data(Buffer b) {
  set_data(std::make_shared<Data>(b, device()));
}

void Array::set_data(std::shared_ptr<Data> d) {
  Desc& ds = desc();
  ds.data_ptr = d->buffer.ptr;
  ds.data = std::move(d);
  ds.data_size = ds.size;
  ds.strides = row_major_strides(ds.shape);
  ds.flags = Flags{true, true, ds.shape.size() <= 1 || ds.size <= 1};
  if (!ds.flags.col_contiguous) {
    // col_contiguous also holds when at most one dimension is larger than 1
    int big = 0;
    for (auto s : ds.shape) big += s > 1;
    ds.flags.col_contiguous = big <= 1;
  }
}

void Array::set_data(std::shared_ptr<Data> d, int64_t data_size, Strides strides, Flags flags,
                     void* data_ptr) {
  Desc& ds = desc();
  ds.data_ptr = data_ptr ? data_ptr : d->buffer.ptr;
  ds.data = std::move(d);
  ds.data_size = data_size;
  ds.strides = std::move(strides);
  ds.flags = flags;
}

void Array::copy_shared_buffer(const Array& other, const Strides& strides, Flags flags,
                               int64_t data_size, int64_t offset) {
  Desc& ds = desc();
  ds.data = other.desc().data;
  ds.data_ptr = static_cast<char*>(other.desc().data_ptr) +
                offset * static_cast<int64_t>(size_of(other.dtype()));
  ds.strides = strides;
  ds.flags = flags;
  ds.data_size = data_size;
}

void Array::copy_shared_buffer(const Array& other) {
  copy_shared_buffer(other, other.strides(), other.flags(), other.data_size());
}

void Array::move_shared_buffer(Array other) {
  Desc& ds = desc();
  Desc& o = other.desc();
  ds.data = std::move(o.data);
  ds.data_ptr = o.data_ptr;
  ds.strides = o.strides;
  ds.flags = o.flags;
  ds.data_size = o.data_size;
  o.data_ptr = nullptr;
}

bool Array::is_donatable(long holders) const {
  const Desc& d = desc();
  return desc_.use_count() == holders && d.data && d.data.use_count() == 1 &&
         d.flags.row_contiguous && d.data_size == d.size && !d.data->deleter;
}

void Array::init_from_host(const void* src, Dtype src_type, Shape shape, Dtype dtype) {
  desc_ = std::make_shared<Desc>(std::move(shape), dtype);
  Buffer b = allocator(cpu_device).malloc(nbytes());
  set_data(std::make_shared<Data>(b, cpu_device));
  convert_copy(src, src_type, b.ptr, dtype, size());
  desc_->evaluated = true;
  desc_->host_constant = true;
}

void Array::ensure_row_contiguous() const {
  if (flags().row_contiguous && data_size() == size()) return;
  Buffer b = allocator(cpu_device).malloc(nbytes());
  copy_to_row_major(*this, b.ptr);
  const_cast<Array*>(this)->set_data(std::make_shared<Data>(b, cpu_device));
}

const void* Array::host_data() const {
  if (device().type == Device::Type::cpu) {
    ensure_row_contiguous();
    return raw_ptr();
  }
  Desc& d = desc();
  if (!d.host_mirror) {
    Buffer b = allocator(cpu_device).malloc(nbytes());
    auto mirror = std::make_shared<Data>(b, cpu_device);
    if (size() > 0) gpu::copy_to_host(*this, b.ptr);
    d.host_mirror = std::move(mirror);
  }
  return d.host_mirror->buffer.ptr;
}

void read_row_major(const Array& a, void* dst) {
  if (a.device().type == Device::Type::cpu)
    copy_to_row_major(a, dst);
  else if (a.size() > 0)
    gpu::copy_to_host(a, dst);
}

PendingRead::PendingRead(const Array& a) : a_(a) {
  a_.eval();
  if (a_.size() == 0) return;
  if (a_.device().type == Device::Type::cpu) {
    host_.resize(a_.nbytes());
    copy_to_row_major(a_, host_.data());
  } else {
    token_ = gpu::start_host_read(a_);
  }
}

const void* PendingRead::wait() {
  return token_ ? gpu::finish_host_read(token_) : host_.data();
}

Stream resolve_stream(const StreamOrDevice& s, std::initializer_list<const Array*> inputs) {
  if (!s.is_set())
    for (const Array* a : inputs)
      if (a && a->valid() && !a->is_host_constant()) return default_stream(a->device());
  return s.resolve();
}

Stream resolve_stream(const StreamOrDevice& s, const std::vector<Array>& inputs) {
  if (!s.is_set())
    for (const Array& a : inputs)
      if (a.valid() && !a.is_host_constant()) return default_stream(a.device());
  return s.resolve();
}

Device op_device(const Array& a) {
  return a.is_host_constant() ? default_device() : a.device();
}

void convert_copy(const void* src, Dtype src_type, void* dst, Dtype dst_type, int64_t n) {
  if (n <= 0) return;
  if (src_type == dst_type) {
    std::memcpy(dst, src, static_cast<size_t>(n) * size_of(src_type));
    return;
  }
  dispatch_dtype(src_type, [&](auto s) {
    using S = decltype(s);
    dispatch_dtype(dst_type, [&](auto d) {
      using D = decltype(d);
      const S* in = static_cast<const S*>(src);
      D* out = static_cast<D*>(dst);
      for (int64_t i = 0; i < n; ++i) out[i] = cast_value<D>(in[i]);
    });
  });
}

void copy_to_row_major(const Array& a, void* dst) {
  const int nd = a.ndim();
  const size_t es = a.itemsize();
  const char* base = static_cast<const char*>(a.raw_ptr());
  char* out = static_cast<char*>(dst);
  if (a.size() == 0) return;
  if (nd == 0) {
    std::memcpy(out, base, es);
    return;
  }
  const auto& shape = a.shape();
  const auto& st = a.strides();
  std::vector<int64_t> idx(nd, 0);
  int64_t inner = shape[nd - 1], inner_st = st[nd - 1];
  int64_t outer = a.size() / inner;
  for (int64_t o = 0; o < outer; ++o) {
    int64_t off = 0;
    for (int d = 0; d < nd - 1; ++d) off += idx[d] * st[d];
    const char* p = base + off * static_cast<int64_t>(es);
    if (inner_st == 1) {
      std::memcpy(out, p, inner * es);
      out += inner * es;
    } else {
      for (int64_t i = 0; i < inner; ++i, out += es)
        std::memcpy(out, p + i * inner_st * static_cast<int64_t>(es), es);
    }
    for (int d = nd - 2; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

}  // namespace ingot
