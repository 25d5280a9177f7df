// Indexing ops (take, gather, take_along_axis, put_along_axis, scatter_add*) and the vjp/jvp
// of their primitives, written with public ops.
#include "core/ops/indexing.h"

#include "core/ops/creation.h"
#include "core/ops/elementwise.h"
#include "core/ops/shape.h"
#include "core/primitives/indexing.h"
#include "core/primitives/shape.h"

namespace ingot {

namespace {

void check_indices(const Array& idx, const char* op) {
  if (!is_integral(idx.dtype()) || idx.dtype() == Dtype::bool_)
    raise("[{}] indices must be an integer array, got {} (shape {})", op, dtype_name(idx.dtype()),
          shape_str(idx.shape()));
}

/// Shape of a and indices broadcast together on every axis but `ax` (where it is 1).
Shape broadcast_except(const Shape& a, const Shape& idx, int ax, const char* op) {
  if (a.size() != idx.size())
    raise("[{}] indices of shape {} need as many dimensions as a of shape {}", op, shape_str(idx),
          shape_str(a));
  Shape r(a.size(), 1);
  for (size_t d = 0; d < a.size(); ++d) {
    if (static_cast<int>(d) == ax) continue;
    if (a[d] != idx[d] && a[d] != 1 && idx[d] != 1)
      raise("[{}] indices of shape {} do not broadcast against a of shape {} outside axis {}", op,
            shape_str(idx), shape_str(a), ax);
    r[d] = a[d] == 1 ? idx[d] : a[d];
  }
  return r;
}

Array broadcast_if(const Array& x, const Shape& shape, StreamOrDevice s) {
  return x.shape() == shape ? x : broadcast_to(x, shape, s);
}

Array cast_if(const Array& x, Dtype t, StreamOrDevice s) {
  return x.dtype() == t ? x : astype(x, t, s);
}

/// Indices and values of an along-axis write broadcast to a's shape with idx's axis length.
std::pair<Array, Array> along_axis_operands(const Array& a, const Array& indices,
                                            const Array& values, int ax, const char* op,
                                            StreamOrDevice s) {
  Shape t = broadcast_except(a.shape(), indices.shape(), ax, op);
  for (int d = 0; d < a.ndim(); ++d)
    if (d != ax && t[d] != a.shape()[d])
      raise("[{}] indices of shape {} would broadcast a of shape {} outside axis {}", op,
            shape_str(indices.shape()), shape_str(a.shape()), ax);
  t[ax] = indices.shape()[ax];
  if (!broadcasts_to(values.shape(), t))
    raise("[{}] values of shape {} cannot be broadcast to the indices' shape {}", op,
          shape_str(values.shape()), shape_str(t));
  return {broadcast_if(indices, t, s), broadcast_if(cast_if(values, a.dtype(), s), t, s)};
}

/// Tangent of argument `arg` if it is among argnums, else an empty Array.
Array tangent_of(int arg, const std::vector<Array>& tangents, const std::vector<int>& argnums) {
  for (size_t i = 0; i < argnums.size(); ++i)
    if (argnums[i] == arg) return tangents[i];
  return Array();
}

}  // namespace

Array take(const Array& a, const Array& indices, int axis, StreamOrDevice s) {
  check_indices(indices, "take");
  if (a.ndim() == 0) raise("[take] cannot take along axis {} of a 0-d array", axis);
  const int ax = normalize_axis(axis, a.ndim(), "take");
  Shape out(a.shape().begin(), a.shape().begin() + ax);
  out.insert(out.end(), indices.shape().begin(), indices.shape().end());
  out.insert(out.end(), a.shape().begin() + ax + 1, a.shape().end());
  return Array(std::move(out), a.dtype(),
               std::make_shared<Take>(resolve_stream(s, {&a, &indices}), ax), {a, indices});
}

Array take(const Array& a, const Array& indices, StreamOrDevice s) {
  check_indices(indices, "take");
  return take(a.ndim() == 1 ? a : reshape(a, {-1}, s), indices, 0, s);
}

Array gather(const Array& table, const Array& ids, StreamOrDevice s) {
  check_indices(ids, "gather");
  if (table.ndim() != 2)
    raise("[gather] table must be 2-D [V, E], got shape {}", shape_str(table.shape()));
  Shape out = ids.shape();
  out.push_back(table.shape()[1]);
  return Array(std::move(out), table.dtype(),
               std::make_shared<Gather>(resolve_stream(s, {&table, &ids})), {table, ids});
}

Array take_along_axis(const Array& a, const Array& indices, int axis, StreamOrDevice s) {
  check_indices(indices, "take_along_axis");
  if (a.ndim() == 0) raise("[take_along_axis] cannot index a 0-d array");
  const int ax = normalize_axis(axis, a.ndim(), "take_along_axis");
  Shape b = broadcast_except(a.shape(), indices.shape(), ax, "take_along_axis");
  Shape sa = b, si = b;
  sa[ax] = a.shape()[ax];
  si[ax] = indices.shape()[ax];
  return Array(si, a.dtype(),
               std::make_shared<TakeAlongAxis>(resolve_stream(s, {&a, &indices}), ax),
               {broadcast_if(a, sa, s), broadcast_if(indices, si, s)});
}

Array put_along_axis(const Array& a, const Array& indices, const Array& values, int axis,
                     StreamOrDevice s) {
  check_indices(indices, "put_along_axis");
  if (a.ndim() == 0) raise("[put_along_axis] cannot index a 0-d array");
  const int ax = normalize_axis(axis, a.ndim(), "put_along_axis");
  auto [idx, vals] = along_axis_operands(a, indices, values, ax, "put_along_axis", s);
  return Array(a.shape(), a.dtype(),
               std::make_shared<PutAlongAxis>(resolve_stream(s, {&a, &indices}), ax),
               {a, idx, vals});
}

Array scatter_add_along_axis(const Array& a, const Array& indices, const Array& values, int axis,
                             StreamOrDevice s) {
  check_indices(indices, "scatter_add_along_axis");
  if (a.ndim() == 0) raise("[scatter_add_along_axis] cannot index a 0-d array");
  const int ax = normalize_axis(axis, a.ndim(), "scatter_add_along_axis");
  auto [idx, vals] = along_axis_operands(a, indices, values, ax, "scatter_add_along_axis", s);
  return Array(a.shape(), a.dtype(),
               std::make_shared<ScatterAddAlongAxis>(resolve_stream(s, {&a, &indices}), ax),
               {a, idx, vals});
}

Array scatter_add(const Array& a, const Array& indices, const Array& updates, int axis,
                  StreamOrDevice s) {
  check_indices(indices, "scatter_add");
  if (a.ndim() == 0) raise("[scatter_add] cannot index a 0-d array");
  const int ax = normalize_axis(axis, a.ndim(), "scatter_add");
  Shape u(a.shape().begin(), a.shape().begin() + ax);
  u.insert(u.end(), indices.shape().begin(), indices.shape().end());
  u.insert(u.end(), a.shape().begin() + ax + 1, a.shape().end());
  if (!broadcasts_to(updates.shape(), u))
    raise(
        "[scatter_add] updates of shape {} do not broadcast to a.shape[:axis] + "
        "indices.shape + a.shape[axis+1:] = {} (a {}, indices {}, axis {})",
        shape_str(updates.shape()), shape_str(u), shape_str(a.shape()), shape_str(indices.shape()),
        ax);
  return Array(a.shape(), a.dtype(),
               std::make_shared<ScatterAdd>(resolve_stream(s, {&a, &indices}), ax),
               {a, indices, broadcast_if(cast_if(updates, a.dtype(), s), u, s)});
}

// ---- output_shapes ----

std::vector<Shape> Take::output_shapes(const std::vector<Array>& in) {
  const Shape& a = in[0].shape();
  Shape out(a.begin(), a.begin() + axis_);
  out.insert(out.end(), in[1].shape().begin(), in[1].shape().end());
  out.insert(out.end(), a.begin() + axis_ + 1, a.end());
  return {out};
}
std::vector<Shape> Gather::output_shapes(const std::vector<Array>& in) {
  Shape out = in[1].shape();
  out.push_back(in[0].shape()[1]);
  return {out};
}
std::vector<Shape> TakeAlongAxis::output_shapes(const std::vector<Array>& in) {
  return {in[1].shape()};
}
std::vector<Shape> PutAlongAxis::output_shapes(const std::vector<Array>& in) {
  return {in[0].shape()};
}
std::vector<Shape> ScatterAdd::output_shapes(const std::vector<Array>& in) {
  return {in[0].shape()};
}
std::vector<Shape> ScatterAddAlongAxis::output_shapes(const std::vector<Array>& in) {
  return {in[0].shape()};
}

// ---- vjp (indices get zero cotangents) ----

std::vector<Array> Take::vjp(const std::vector<Array>& primals, const std::vector<Array>& ct,
                             const std::vector<int>& argnums, const std::vector<Array>&) {
  std::vector<Array> r;
  for (int arg : argnums)
    r.push_back(
        arg == 0 ? scatter_add(zeros_like(primals[0], stream()), primals[1], ct[0], axis_, stream())
                 : zeros_like(primals[1], stream()));
  return r;
}
std::vector<Array> Gather::vjp(const std::vector<Array>& primals, const std::vector<Array>& ct,
                               const std::vector<int>& argnums, const std::vector<Array>&) {
  std::vector<Array> r;
  for (int arg : argnums)
    r.push_back(arg == 0
                    ? scatter_add(zeros_like(primals[0], stream()), primals[1], ct[0], 0, stream())
                    : zeros_like(primals[1], stream()));
  return r;
}
std::vector<Array> TakeAlongAxis::vjp(const std::vector<Array>& primals,
                                      const std::vector<Array>& ct, const std::vector<int>& argnums,
                                      const std::vector<Array>&) {
  std::vector<Array> r;
  for (int arg : argnums)
    r.push_back(arg == 0 ? scatter_add_along_axis(zeros_like(primals[0], stream()), primals[1],
                                                  ct[0], axis_, stream())
                         : zeros_like(primals[1], stream()));
  return r;
}
std::vector<Array> PutAlongAxis::vjp(const std::vector<Array>& primals,
                                     const std::vector<Array>& ct, const std::vector<int>& argnums,
                                     const std::vector<Array>&) {
  std::vector<Array> r;
  for (int arg : argnums) {
    if (arg == 0)
      r.push_back(
          put_along_axis(ct[0], primals[1], zeros_like(primals[2], stream()), axis_, stream()));
    else if (arg == 2)
      r.push_back(take_along_axis(ct[0], primals[1], axis_, stream()));
    else
      r.push_back(zeros_like(primals[1], stream()));
  }
  return r;
}
std::vector<Array> ScatterAdd::vjp(const std::vector<Array>& primals, const std::vector<Array>& ct,
                                   const std::vector<int>& argnums, const std::vector<Array>&) {
  std::vector<Array> r;
  for (int arg : argnums) {
    if (arg == 0)
      r.push_back(ct[0]);
    else if (arg == 2)
      r.push_back(take(ct[0], primals[1], axis_, stream()));
    else
      r.push_back(zeros_like(primals[1], stream()));
  }
  return r;
}
std::vector<Array> ScatterAddAlongAxis::vjp(const std::vector<Array>& primals,
                                            const std::vector<Array>& ct,
                                            const std::vector<int>& argnums,
                                            const std::vector<Array>&) {
  std::vector<Array> r;
  for (int arg : argnums) {
    if (arg == 0)
      r.push_back(ct[0]);
    else if (arg == 2)
      r.push_back(take_along_axis(ct[0], primals[1], axis_, stream()));
    else
      r.push_back(zeros_like(primals[1], stream()));
  }
  return r;
}

// ---- jvp (linear in the data operands) ----

std::vector<Array> Take::jvp(const std::vector<Array>& primals, const std::vector<Array>& t,
                             const std::vector<int>& argnums) {
  Array ta = tangent_of(0, t, argnums);
  if (!ta.valid()) ta = zeros_like(primals[0], stream());
  return {take(ta, primals[1], axis_, stream())};
}
std::vector<Array> Gather::jvp(const std::vector<Array>& primals, const std::vector<Array>& t,
                               const std::vector<int>& argnums) {
  Array ta = tangent_of(0, t, argnums);
  if (!ta.valid()) ta = zeros_like(primals[0], stream());
  return {gather(ta, primals[1], stream())};
}
std::vector<Array> TakeAlongAxis::jvp(const std::vector<Array>& primals,
                                      const std::vector<Array>& t,
                                      const std::vector<int>& argnums) {
  Array ta = tangent_of(0, t, argnums);
  if (!ta.valid()) ta = zeros_like(primals[0], stream());
  return {take_along_axis(ta, primals[1], axis_, stream())};
}
std::vector<Array> PutAlongAxis::jvp(const std::vector<Array>& primals, const std::vector<Array>& t,
                                     const std::vector<int>& argnums) {
  Array ta = tangent_of(0, t, argnums), tv = tangent_of(2, t, argnums);
  if (!ta.valid()) ta = zeros_like(primals[0], stream());
  if (!tv.valid()) tv = zeros_like(primals[2], stream());
  return {put_along_axis(ta, primals[1], tv, axis_, stream())};
}
std::vector<Array> ScatterAdd::jvp(const std::vector<Array>& primals, const std::vector<Array>& t,
                                   const std::vector<int>& argnums) {
  Array ta = tangent_of(0, t, argnums), tu = tangent_of(2, t, argnums);
  if (!ta.valid()) ta = zeros_like(primals[0], stream());
  if (!tu.valid()) tu = zeros_like(primals[2], stream());
  return {scatter_add(ta, primals[1], tu, axis_, stream())};
}
std::vector<Array> ScatterAddAlongAxis::jvp(const std::vector<Array>& primals,
                                            const std::vector<Array>& t,
                                            const std::vector<int>& argnums) {
  Array ta = tangent_of(0, t, argnums), tv = tangent_of(2, t, argnums);
  if (!ta.valid()) ta = zeros_like(primals[0], stream());
  if (!tv.valid()) tv = zeros_like(primals[2], stream());
  return {scatter_add_along_axis(ta, primals[1], tv, axis_, stream())};
}

}  // namespace ingot
