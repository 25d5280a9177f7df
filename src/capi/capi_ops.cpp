// C ABI: array ops (elementwise, reductions, shape, indexing), random and fast ops, each a thin
// wrapper over the C++ op under the exception guard.
#include "capi/capi_internal.h"

using namespace ingot;        // NOLINT
using namespace ingot::capi;  // NOLINT

#define INGOT_CAPI_UNARY(cname, expr)                      \
  int cname(ingot_array a, ingot_array* out) {             \
    return guard([&] { put(out, expr(arr(a, #cname))); }); \
  }
#define INGOT_CAPI_BINARY(cname, expr)                                     \
  int cname(ingot_array a, ingot_array b, ingot_array* out) {              \
    return guard([&] { put(out, expr(arr(a, #cname), arr(b, #cname))); }); \
  }
#define INGOT_CAPI_REDUCE(cname, expr)                                                    \
  int cname(ingot_array a, const int* axes, int n_axes, int keepdims, ingot_array* out) { \
    return guard([&] {                                                                    \
      const Array& x = arr(a, #cname);                                                    \
      std::vector<int> ax = to_axes(axes, n_axes);                                        \
      if (ax.empty())                                                                     \
        for (int i = 0; i < x.ndim(); ++i) ax.push_back(i);                               \
      put(out, expr(x, ax, keepdims != 0));                                               \
    });                                                                                   \
  }

namespace {

/// Strides for a slice: all 1 when NULL.
Shape slice_strides(const int64_t* strides, int ndim) {
  if (!strides) return Shape(static_cast<size_t>(std::max(ndim, 0)), 1);
  return Shape(strides, strides + ndim);
}

/// Start/stop arrays of a slice (negative values allowed, so no shape validation).
Shape bounds(const int64_t* v, int ndim, const char* what) {
  if (ndim < 0) raise("[capi] {}: negative ndim {}", what, ndim);
  if (ndim > 0 && !v) raise("[capi] {}: null bounds", what);
  return Shape(v, v + ndim);
}

Array sum_(const Array& x, const std::vector<int>& ax, bool k) {
  return sum(x, ax, k);
}
Array mean_(const Array& x, const std::vector<int>& ax, bool k) {
  return mean(x, ax, k);
}
Array max_(const Array& x, const std::vector<int>& ax, bool k) {
  return max(x, ax, k);
}
Array lse_(const Array& x, const std::vector<int>& ax, bool k) {
  return logsumexp(x, ax, k);
}
}  // namespace

extern "C" {

INGOT_CAPI_UNARY(ingot_negative, negative)
INGOT_CAPI_UNARY(ingot_abs, abs)
INGOT_CAPI_UNARY(ingot_exp, exp)
INGOT_CAPI_UNARY(ingot_log, log)
INGOT_CAPI_UNARY(ingot_sigmoid, sigmoid)
INGOT_CAPI_UNARY(ingot_silu, silu)
INGOT_CAPI_UNARY(ingot_gelu, gelu)
INGOT_CAPI_UNARY(ingot_tanh, tanh)
INGOT_CAPI_UNARY(ingot_sin, sin)
INGOT_CAPI_UNARY(ingot_cos, cos)
INGOT_CAPI_UNARY(ingot_sqrt, sqrt)
INGOT_CAPI_UNARY(ingot_rsqrt, rsqrt)
INGOT_CAPI_UNARY(ingot_reciprocal, reciprocal)
INGOT_CAPI_UNARY(ingot_square, square)
INGOT_CAPI_UNARY(ingot_stop_gradient, stop_gradient)

INGOT_CAPI_BINARY(ingot_add, add)
INGOT_CAPI_BINARY(ingot_subtract, subtract)
INGOT_CAPI_BINARY(ingot_multiply, multiply)
INGOT_CAPI_BINARY(ingot_divide, divide)
INGOT_CAPI_BINARY(ingot_power, power)
INGOT_CAPI_BINARY(ingot_maximum, maximum)
INGOT_CAPI_BINARY(ingot_minimum, minimum)
INGOT_CAPI_BINARY(ingot_equal, equal)
INGOT_CAPI_BINARY(ingot_less, less)
INGOT_CAPI_BINARY(ingot_greater, greater)
INGOT_CAPI_BINARY(ingot_matmul, matmul)

int ingot_where(ingot_array cond, ingot_array a, ingot_array b, ingot_array* out) {
  return guard([&] {
    put(out, where(arr(cond, "ingot_where"), arr(a, "ingot_where"), arr(b, "ingot_where")));
  });
}
int ingot_astype(ingot_array a, int dtype, ingot_array* out) {
  return guard([&] { put(out, astype(arr(a, "ingot_astype"), to_dtype(dtype))); });
}

// ---- reductions

INGOT_CAPI_REDUCE(ingot_sum, sum_)
INGOT_CAPI_REDUCE(ingot_mean, mean_)
INGOT_CAPI_REDUCE(ingot_max, max_)
INGOT_CAPI_REDUCE(ingot_logsumexp, lse_)

int ingot_softmax(ingot_array a, const int* axes, int n_axes, ingot_array* out) {
  return guard([&] {
    std::vector<int> ax = to_axes(axes, n_axes);
    if (ax.empty()) ax.push_back(-1);
    put(out, softmax(arr(a, "ingot_softmax"), ax));
  });
}
int ingot_argmax(ingot_array a, int axis, int keepdims, ingot_array* out) {
  return guard([&] { put(out, argmax(arr(a, "ingot_argmax"), axis, keepdims != 0)); });
}
int ingot_topk(ingot_array a, int k, int axis, ingot_array* out) {
  return guard([&] { put(out, topk(arr(a, "ingot_topk"), k, axis)); });
}
int ingot_topk_indices(ingot_array a, int k, int axis, ingot_array* out) {
  return guard([&] { put(out, topk_indices(arr(a, "ingot_topk_indices"), k, axis)); });
}

// ---- shape and indexing

int ingot_reshape(ingot_array a, const int64_t* shape, int ndim, ingot_array* out) {
  return guard(
      [&] { put(out, reshape(arr(a, "ingot_reshape"), bounds(shape, ndim, "ingot_reshape"))); });
}
int ingot_transpose(ingot_array a, const int* axes, int n_axes, ingot_array* out) {
  return guard([&] {
    const Array& x = arr(a, "ingot_transpose");
    put(out, n_axes == 0 ? transpose(x) : transpose(x, to_axes(axes, n_axes)));
  });
}
int ingot_expand_dims(ingot_array a, const int* axes, int n_axes, ingot_array* out) {
  return guard([&] { put(out, expand_dims(arr(a, "ingot_expand_dims"), to_axes(axes, n_axes))); });
}
int ingot_squeeze(ingot_array a, const int* axes, int n_axes, ingot_array* out) {
  return guard([&] {  // n_axes == 0: every size-1 axis (squeeze with an empty list drops none)
    const Array& x = arr(a, "ingot_squeeze");
    put(out, n_axes == 0 ? squeeze(x) : squeeze(x, to_axes(axes, n_axes)));
  });
}
int ingot_broadcast_to(ingot_array a, const int64_t* shape, int ndim, ingot_array* out) {
  return guard(
      [&] { put(out, broadcast_to(arr(a, "ingot_broadcast_to"), to_shape(shape, ndim))); });
}
int ingot_concatenate(const ingot_array* arrays, size_t n, int axis, ingot_array* out) {
  return guard([&] { put(out, concatenate(to_arrays(arrays, n, "ingot_concatenate"), axis)); });
}
int ingot_stack(const ingot_array* arrays, size_t n, int axis, ingot_array* out) {
  return guard([&] { put(out, stack(to_arrays(arrays, n, "ingot_stack"), axis)); });
}
int ingot_slice(ingot_array a, const int64_t* start, const int64_t* stop, const int64_t* strides,
                int ndim, ingot_array* out) {
  return guard([&] {
    put(out, slice(arr(a, "ingot_slice"), bounds(start, ndim, "ingot_slice"),
                   bounds(stop, ndim, "ingot_slice"), slice_strides(strides, ndim)));
  });
}
int ingot_slice_update(ingot_array a, ingot_array update, const int64_t* start, const int64_t* stop,
                       const int64_t* strides, int ndim, ingot_array* out) {
  return guard([&] {
    put(out, slice_update(arr(a, "ingot_slice_update"), arr(update, "ingot_slice_update"),
                          bounds(start, ndim, "ingot_slice_update"),
                          bounds(stop, ndim, "ingot_slice_update"), slice_strides(strides, ndim)));
  });
}
int ingot_take(ingot_array a, ingot_array indices, int axis, ingot_array* out) {
  return guard([&] { put(out, take(arr(a, "ingot_take"), arr(indices, "ingot_take"), axis)); });
}
int ingot_take_along_axis(ingot_array a, ingot_array indices, int axis, ingot_array* out) {
  return guard([&] {
    put(out, take_along_axis(arr(a, "ingot_take_along_axis"), arr(indices, "ingot_take_along_axis"),
                             axis));
  });
}
int ingot_put_along_axis(ingot_array a, ingot_array indices, ingot_array values, int axis,
                         ingot_array* out) {
  return guard([&] {
    put(out, put_along_axis(arr(a, "ingot_put_along_axis"), arr(indices, "ingot_put_along_axis"),
                            arr(values, "ingot_put_along_axis"), axis));
  });
}

// ---- random

int ingot_random_key(uint64_t seed, ingot_array* out) {
  return guard([&] { put(out, random::key(seed)); });
}
int ingot_random_split(ingot_array key, int num, ingot_array* out) {
  return guard([&] { put(out, random::split(arr(key, "ingot_random_split"), num)); });
}
int ingot_random_seed(uint64_t seed) {
  return guard([&] { random::seed(seed); });
}
int ingot_random_normal(const int64_t* shape, int ndim, int dtype, double loc, double scale,
                        ingot_array key, ingot_array* out) {
  return guard([&] {
    put(out, random::normal(to_shape(shape, ndim), to_dtype(dtype), loc, scale, opt_arr(key)));
  });
}
int ingot_random_uniform(const int64_t* shape, int ndim, int dtype, double low, double high,
                         ingot_array key, ingot_array* out) {
  return guard([&] {
    put(out, random::uniform(to_shape(shape, ndim), to_dtype(dtype), low, high, opt_arr(key)));
  });
}

// ---- fast ops

int ingot_fast_rms_norm(ingot_array x, ingot_array weight, float eps, ingot_array* out) {
  return guard([&] {
    put(out, fast::rms_norm(arr(x, "ingot_fast_rms_norm"), opt_arr(weight), {.eps = eps}));
  });
}
int ingot_fast_layer_norm(ingot_array x, ingot_array weight, ingot_array bias, float eps,
                          ingot_array* out) {
  return guard([&] {
    put(out,
        fast::layer_norm(arr(x, "ingot_fast_layer_norm"), opt_arr(weight), opt_arr(bias), eps));
  });
}
int ingot_fast_rope(ingot_array x, int dims, int traditional, float base, float scale,
                    int64_t offset, ingot_array* out) {
  return guard([&] {
    fast::RopeOptions o;
    o.traditional = traditional != 0;
    o.base = base;
    o.scale = scale;
    o.offset = offset;
    put(out, fast::rope(arr(x, "ingot_fast_rope"), dims, o));
  });
}
int ingot_fast_sdpa(ingot_array q, ingot_array k, ingot_array v, float scale, int causal,
                    ingot_array mask, ingot_array* out) {
  return guard([&] {
    fast::SdpaOptions o;
    o.scale = scale;
    o.causal = causal != 0;
    o.mask = opt_arr(mask);
    put(out,
        fast::scaled_dot_product_attention(arr(q, "ingot_fast_sdpa"), arr(k, "ingot_fast_sdpa"),
                                           arr(v, "ingot_fast_sdpa"), o));
  });
}

}  // extern "C"
