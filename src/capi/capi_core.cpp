// C ABI: errors, versions, dtypes, devices, memory, arrays and array lists.
#include <cstdlib>
#include <cstring>

#include "capi/capi_internal.h"

#ifndef INGOT_VERSION_STRING
#define INGOT_VERSION_STRING "0.0.0"
#endif

namespace ingot::capi {

namespace {
thread_local std::string t_error;
}  // namespace

void set_error(const std::string& msg) {
  t_error = msg;
}
void clear_error() {
  t_error.clear();
}
const std::string& error_message() {
  return t_error;
}

int translate_current_exception() noexcept {
  try {
    throw;
  } catch (const CallbackFailed& e) {
    t_error = e.msg.empty() ? "[capi] a callback reported failure" : e.msg;
    return INGOT_ERR_CALLBACK;
  } catch (const InvalidArgument& e) {
    t_error = e.what();
    return INGOT_ERR_INVALID_ARGUMENT;
  } catch (const IoError& e) {
    t_error = e.what();
    return INGOT_ERR_IO;
  } catch (const FormatError& e) {
    t_error = e.what();
    return INGOT_ERR_FORMAT;
  } catch (const OutOfMemory& e) {
    t_error = e.what();
    return INGOT_ERR_OUT_OF_MEMORY;
  } catch (const Unsupported& e) {
    t_error = e.what();
    return INGOT_ERR_UNSUPPORTED;
  } catch (const DeviceError& e) {
    t_error = e.what();
    return INGOT_ERR_DEVICE;
  } catch (const std::bad_alloc&) {
    t_error = "[capi] out of host memory";
    return INGOT_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    t_error = std::string("[capi] internal error: ") + e.what();
    return INGOT_ERR_INTERNAL;
  } catch (...) {
    t_error = "[capi] internal error: unknown exception";
    return INGOT_ERR_INTERNAL;
  }
}

const Array& arr(ingot_array h, const char* what) {
  if (!h) raise("[capi] {}: null array handle", what);
  if (!h->a.valid()) raise("[capi] {}: empty array handle", what);
  return h->a;
}
std::optional<Array> opt_arr(ingot_array h) {
  if (!h) return std::nullopt;
  return arr(h, "optional argument");
}
void need_out(const void* out, const char* what) {
  if (!out) raise("[capi] {}: null output pointer", what);
}
void put(ingot_array* out, Array a) {
  need_out(out, "array result");
  *out = new ingot_array_s{std::move(a)};
}
Dtype to_dtype(int dtype) {
  if (dtype < 0 || dtype >= kNumDtypes) raise("[capi] invalid dtype value {}", dtype);
  return static_cast<Dtype>(dtype);
}
Device to_device(ingot_device d) {
  if (d.index < 0) raise("[capi] invalid device index {}", d.index);
  if (d.type == INGOT_CPU) return cpu_device;
  if (d.type == INGOT_CUDA) return Device{Device::Type::cuda, d.index};
  raise("[capi] invalid device type {}", d.type);
}
ingot_device from_device(Device d) {
  return {d.type == Device::Type::cpu ? INGOT_CPU : INGOT_CUDA, d.index};
}
Shape to_shape(const int64_t* shape, int ndim) {
  if (ndim < 0) raise("[capi] negative ndim {}", ndim);
  if (ndim > 0 && !shape) raise("[capi] null shape with ndim {}", ndim);
  Shape s(shape, shape + ndim);
  for (int64_t d : s)
    if (d < 0) raise("[capi] negative dimension in shape {}", shape_str(s));
  return s;
}
std::vector<int> to_axes(const int* axes, int n) {
  if (n < 0) raise("[capi] negative axis count {}", n);
  if (n > 0 && !axes) raise("[capi] null axes with count {}", n);
  return std::vector<int>(axes, axes + n);
}
std::vector<Array> to_arrays(const ingot_array* a, size_t n, const char* what) {
  if (n > 0 && !a) raise("[capi] {}: null array list with {} entries", what, n);
  std::vector<Array> v;
  v.reserve(n);
  for (size_t i = 0; i < n; ++i) v.push_back(arr(a[i], what));
  return v;
}
char* dup_string(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (!p) throw std::bad_alloc();
  std::memcpy(p, s.data(), s.size());
  p[s.size()] = '\0';
  return p;
}
int32_t* dup_ids(const std::vector<int32_t>& ids) {
  if (ids.empty()) return nullptr;
  auto* p = static_cast<int32_t*>(std::malloc(ids.size() * sizeof(int32_t)));
  if (!p) throw std::bad_alloc();
  std::memcpy(p, ids.data(), ids.size() * sizeof(int32_t));
  return p;
}

}  // namespace ingot::capi

using namespace ingot;        // NOLINT
using namespace ingot::capi;  // NOLINT

extern "C" {

const char* ingot_version(void) {
  return INGOT_VERSION_STRING;
}
int ingot_abi_version(void) {
  return INGOT_ABI_VERSION;
}
const char* ingot_last_error(void) {
  return error_message().c_str();
}
void ingot_set_error(const char* message) {
  set_error(message ? message : "");
}
void ingot_free(void* p) {
  std::free(p);
}
const char* ingot_status_name(int status) {
  switch (status) {
    case INGOT_OK:
      return "OK";
    case INGOT_ERR_INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case INGOT_ERR_IO:
      return "IO";
    case INGOT_ERR_FORMAT:
      return "FORMAT";
    case INGOT_ERR_OUT_OF_MEMORY:
      return "OUT_OF_MEMORY";
    case INGOT_ERR_UNSUPPORTED:
      return "UNSUPPORTED";
    case INGOT_ERR_DEVICE:
      return "DEVICE";
    case INGOT_ERR_CALLBACK:
      return "CALLBACK";
    case INGOT_ERR_INTERNAL:
      return "INTERNAL";
    default:
      return "UNKNOWN";
  }
}

size_t ingot_dtype_size(int dtype) {
  if (dtype < 0 || dtype >= kNumDtypes) return 0;
  return size_of(static_cast<Dtype>(dtype));
}
const char* ingot_dtype_name(int dtype) {
  if (dtype < 0 || dtype >= kNumDtypes) return "";
  return dtype_name(static_cast<Dtype>(dtype)).data();  // names are literals (NUL-terminated)
}

// ---- devices and memory

int ingot_device_parse(const char* name, ingot_device* out) {
  return guard([&] {
    if (!name) raise("[capi] device name is null");
    need_out(out, "ingot_device_parse");
    *out = from_device(Device::parse(name));
  });
}
int ingot_device_count(int type, int* out) {
  return guard([&] {
    need_out(out, "ingot_device_count");
    if (type == INGOT_CPU)
      *out = 1;
    else if (type == INGOT_CUDA)
      *out = gpu::device_count();
    else
      raise("[capi] invalid device type {}", type);
  });
}
int ingot_default_device(ingot_device* out) {
  return guard([&] {
    need_out(out, "ingot_default_device");
    *out = from_device(default_device());
  });
}
int ingot_set_default_device(ingot_device d) {
  return guard([&] {
    Device dev = to_device(d);
    if (dev.type == Device::Type::cuda && dev.index >= gpu::device_count())
      raise<Unsupported>("[capi] device {} is not available ({} CUDA devices)", dev.str(),
                         gpu::device_count());
    set_default_device(dev);
  });
}
int ingot_synchronize(ingot_device d) {
  return guard([&] { synchronize(to_device(d)); });
}
int ingot_memory_get_stats(ingot_device d, ingot_memory_stats* out) {
  return guard([&] {
    need_out(out, "ingot_memory_get_stats");
    Device dev = to_device(d);
    *out = {memory::active(dev), memory::peak(dev), memory::cache(dev)};
  });
}
int ingot_memory_set_limit(ingot_device d, size_t bytes, size_t* previous) {
  return guard([&] {
    size_t p = memory::set_limit(bytes, to_device(d));
    if (previous) *previous = p;
  });
}
int ingot_memory_set_cache_limit(ingot_device d, size_t bytes, size_t* previous) {
  return guard([&] {
    size_t p = memory::set_cache_limit(bytes, to_device(d));
    if (previous) *previous = p;
  });
}
int ingot_memory_clear_cache(ingot_device d) {
  return guard([&] { memory::clear_cache(to_device(d)); });
}
int ingot_memory_reset_peak(ingot_device d) {
  return guard([&] { memory::reset_peak(to_device(d)); });
}

// ---- arrays

int ingot_array_from_data(const void* data, const int64_t* shape, int ndim, int dtype,
                          ingot_array* out) {
  return guard([&] {
    const Dtype dt = to_dtype(dtype);
    Shape s = to_shape(shape, ndim);
    const int64_t n = shape_size(s);
    if (n > 0 && !data) raise("[capi] ingot_array_from_data: null data for shape {}", shape_str(s));
    // Through the host-values constructor: the array is a host constant, so ops move it to
    // the device they run on (as arrays made from C++ values do).
    Array a;
    if (dt == Dtype::bool_) {
      const auto* p = static_cast<const uint8_t*>(data);
      std::vector<bool> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = p[i] != 0;
      a = Array(v, s, dt);
    } else {
      dispatch_dtype(dt, [&](auto tag) {
        using T = decltype(tag);
        const T* p = static_cast<const T*>(data);
        a = Array(std::vector<T>(p, p + n), s, dt);
      });
    }
    put(out, std::move(a));
  });
}

int ingot_array_from_data_nocopy(void* data, const int64_t* shape, int ndim, int dtype,
                                 ingot_release_fn release, void* ctx, ingot_array* out) {
  return guard([&] {
    const Dtype dt = to_dtype(dtype);
    Shape s = to_shape(shape, ndim);
    const int64_t n = shape_size(s);
    need_out(out, "ingot_array_from_data_nocopy");
    if (n > 0 && !data)
      raise("[capi] ingot_array_from_data_nocopy: null data for shape {}", shape_str(s));
    if (reinterpret_cast<uintptr_t>(data) % size_of(dt) != 0)
      raise("[capi] ingot_array_from_data_nocopy: data is not aligned for {}", dtype_name(dt));
    auto deleter = [release, ctx, data](Buffer) {
      if (release) release(ctx, data);
    };
    auto d = std::make_shared<Data>(Buffer{data, static_cast<size_t>(n) * size_of(dt)}, cpu_device,
                                    deleter);
    Array a(s, dt, nullptr, {});
    a.set_data(std::move(d));
    a.set_evaluated();
    put(out, std::move(a));
  });
}

int ingot_array_from_double(double value, int dtype, ingot_array* out) {
  return guard([&] { put(out, Array(value, to_dtype(dtype))); });
}
int ingot_array_from_int64(int64_t value, int dtype, ingot_array* out) {
  return guard([&] { put(out, Array(value, to_dtype(dtype))); });
}
int ingot_array_retain(ingot_array a, ingot_array* out) {
  return guard([&] { put(out, arr(a, "ingot_array_retain")); });
}
int ingot_array_free(ingot_array a) {
  return guard([&] { delete a; });
}
int ingot_array_ndim(ingot_array a, int* out) {
  return guard([&] {
    need_out(out, "ingot_array_ndim");
    *out = arr(a, "ingot_array_ndim").ndim();
  });
}
int ingot_array_shape(ingot_array a, int64_t* shape, int cap, int* ndim) {
  return guard([&] {
    const Shape& s = arr(a, "ingot_array_shape").shape();
    if (cap > 0 && !shape) raise("[capi] ingot_array_shape: null shape buffer");
    for (int i = 0; i < cap && i < static_cast<int>(s.size()); ++i) shape[i] = s[i];
    if (ndim) *ndim = static_cast<int>(s.size());
  });
}
int ingot_array_dim(ingot_array a, int axis, int64_t* out) {
  return guard([&] {
    need_out(out, "ingot_array_dim");
    const Array& x = arr(a, "ingot_array_dim");
    *out = x.shape(normalize_axis(axis, x.ndim(), "ingot_array_dim"));
  });
}
int ingot_array_size(ingot_array a, int64_t* out) {
  return guard([&] {
    need_out(out, "ingot_array_size");
    *out = arr(a, "ingot_array_size").size();
  });
}
int ingot_array_nbytes(ingot_array a, size_t* out) {
  return guard([&] {
    need_out(out, "ingot_array_nbytes");
    *out = arr(a, "ingot_array_nbytes").nbytes();
  });
}
int ingot_array_dtype(ingot_array a, int* out) {
  return guard([&] {
    need_out(out, "ingot_array_dtype");
    *out = static_cast<int>(arr(a, "ingot_array_dtype").dtype());
  });
}
int ingot_array_device(ingot_array a, ingot_device* out) {
  return guard([&] {
    need_out(out, "ingot_array_device");
    *out = from_device(arr(a, "ingot_array_device").device());
  });
}

int ingot_eval(const ingot_array* arrays, size_t n) {
  return guard([&] {
    std::vector<Array> v = to_arrays(arrays, n, "ingot_eval");
    eval(v);
    std::vector<Device> seen;
    for (const Array& a : v) {
      Device d = a.device();
      if (d.type == Device::Type::cuda && std::find(seen.begin(), seen.end(), d) == seen.end()) {
        synchronize(d);
        seen.push_back(d);
      }
    }
  });
}
int ingot_eval_async(const ingot_array* arrays, size_t n) {
  return guard([&] { eval(to_arrays(arrays, n, "ingot_eval_async")); });
}
int ingot_array_to_host(ingot_array a, void* dst, size_t dst_bytes) {
  return guard([&] {
    const Array& x = arr(a, "ingot_array_to_host");
    if (dst_bytes != x.nbytes())
      raise("[capi] ingot_array_to_host: buffer of {} bytes for a {} {} array of {} bytes",
            dst_bytes, shape_str(x.shape()), dtype_name(x.dtype()), x.nbytes());
    if (x.nbytes() == 0) return;
    if (!dst) raise("[capi] ingot_array_to_host: null destination");
    x.eval();
    read_row_major(x, dst);
  });
}
int ingot_array_item_double(ingot_array a, double* out) {
  return guard([&] {
    need_out(out, "ingot_array_item_double");
    const Array& x = arr(a, "ingot_array_item_double");
    if (x.size() != 1) raise("[capi] item of an array of shape {}", shape_str(x.shape()));
    *out = x.item<double>();
  });
}
int ingot_array_item_int64(ingot_array a, int64_t* out) {
  return guard([&] {
    need_out(out, "ingot_array_item_int64");
    const Array& x = arr(a, "ingot_array_item_int64");
    if (x.size() != 1) raise("[capi] item of an array of shape {}", shape_str(x.shape()));
    *out = x.item<int64_t>();
  });
}

// ---- array lists

int ingot_array_list_new(ingot_array_list* out) {
  return guard([&] {
    need_out(out, "ingot_array_list_new");
    *out = new ingot_array_list_s{};
  });
}
int ingot_array_list_free(ingot_array_list l) {
  return guard([&] { delete l; });
}
int ingot_array_list_size(ingot_array_list l, size_t* out) {
  return guard([&] {
    if (!l) raise("[capi] ingot_array_list_size: null list handle");
    need_out(out, "ingot_array_list_size");
    *out = l->v.size();
  });
}
int ingot_array_list_push(ingot_array_list l, ingot_array a) {
  return guard([&] {
    if (!l) raise("[capi] ingot_array_list_push: null list handle");
    l->v.push_back(arr(a, "ingot_array_list_push"));
  });
}
int ingot_array_list_get(ingot_array_list l, size_t i, ingot_array* out) {
  return guard([&] {
    if (!l) raise("[capi] ingot_array_list_get: null list handle");
    if (i >= l->v.size()) raise("[capi] ingot_array_list_get: index {} of {}", i, l->v.size());
    put(out, l->v[i]);
  });
}
int ingot_array_list_clear(ingot_array_list l) {
  return guard([&] {
    if (!l) raise("[capi] ingot_array_list_clear: null list handle");
    l->v.clear();
  });
}

// ---- creation

int ingot_zeros(const int64_t* shape, int ndim, int dtype, ingot_array* out) {
  return guard([&] { put(out, zeros(to_shape(shape, ndim), to_dtype(dtype))); });
}
int ingot_ones(const int64_t* shape, int ndim, int dtype, ingot_array* out) {
  return guard([&] { put(out, ones(to_shape(shape, ndim), to_dtype(dtype))); });
}
int ingot_full(const int64_t* shape, int ndim, double value, int dtype, ingot_array* out) {
  return guard([&] {
    const Dtype dt = to_dtype(dtype);
    put(out, full(to_shape(shape, ndim), Array(value, dt), dt));
  });
}
int ingot_arange(double start, double stop, double step, int dtype, ingot_array* out) {
  return guard([&] { put(out, arange(start, stop, step, to_dtype(dtype))); });
}
int ingot_to_device(ingot_array a, ingot_device d, ingot_array* out) {
  return guard([&] { put(out, ingot::to_device(arr(a, "ingot_to_device"), to_device(d))); });
}

}  // extern "C"
