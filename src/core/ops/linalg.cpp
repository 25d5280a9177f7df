// matmul and addmm ops (validation, promotion, node construction) and the VJPs/JVPs of the
// linear algebra primitives, written with public ops.
#include "core/ops/linalg.h"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "core/primitives/linalg.h"
#include "core/primitives/shape.h"
#include "util/env.h"

namespace ingot {
namespace {

std::string describe(const Array& x) {
  return fmt::format("{} ({})", shape_str(x.shape()), dtype_name(x.dtype()));
}

void check_float(const Array& x, const char* which, const char* op) {
  if (!is_floating(x.dtype()))
    raise(
        "[{}] {} must be a floating-point array, got {}; cast integer or bool inputs with "
        "astype first",
        op, which, describe(x));
}

/// Sums x over the axes that broadcasting added or stretched to reach x's shape, so that the
/// result has `shape` (the inverse of broadcasting, for VJPs).
Array sum_to_shape(const Array& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const int extra = x.ndim() - static_cast<int>(shape.size());
  std::vector<int> axes;
  for (int d = 0; d < x.ndim(); ++d)
    if (d < extra || (shape[d - extra] == 1 && x.shape()[d] != 1)) axes.push_back(d);
  Array r = axes.empty() ? x : sum(x, axes, /*keepdims=*/true);
  return reshape(r, shape);
}

/// The operands as matrices: 1-d a becomes [1, K], 1-d b becomes [K, 1], and the cotangent
/// gets the axes matmul removed back.
struct Matrices {
  Array a, b, g;
};
Matrices as_matrices(const Array& a, const Array& b, const Array& g) {
  Array a2 = a.ndim() == 1 ? reshape(a, {1, a.shape()[0]}) : a;
  Array b2 = b.ndim() == 1 ? reshape(b, {b.shape()[0], 1}) : b;
  Shape gs = g.shape();
  if (a.ndim() == 1) gs.insert(gs.end() - (b.ndim() == 1 ? 0 : 1), 1);
  if (b.ndim() == 1) gs.push_back(1);
  return {a2, b2, reshape(g, gs)};
}

/// a's gradient g @ b^T as sum_i g_i @ b[:, c_i:c_i + n_i]^T when g is zeros with whole
/// column blocks g_i written into it (the cotangent of a stacked product, x @ [Wq; Wk; Wv]^T,
/// whose column slices feed separate consumers): no fill of g's zeros, no copies of the blocks
/// into it, no product over its zero columns. A Matmul for the first block and AddMMs adding
/// the others into it (autodiff folds the chain into further terms the same way). Nullopt for
/// any other g, a b with batch axes or disjointness it cannot prove.
std::optional<Array> column_block_grad(const Array& a, const Array& b, const Array& g) {
  // INGOT_SPLIT_STACKED_GRADS=0: the product over the whole padded g (A/B runs); read once.
  static const bool on = env::flag("INGOT_SPLIT_STACKED_GRADS", true);
  if (!on || b.ndim() != 2 || a.ndim() < 2 || g.ndim() != a.ndim() || g.dtype() != b.dtype())
    return std::nullopt;
  const std::optional<std::vector<Array>> regions = zero_padded(g);
  if (!regions || regions->empty()) return std::nullopt;
  const int nd = g.ndim();
  std::vector<std::pair<int64_t, Array>> blocks;  // (first column, block), by column
  for (const Array& r : *regions) {
    const auto& u = static_cast<const SliceUpdate&>(r.primitive());
    const SliceSpec sp = normalize_slice(g.shape(), u.start_, u.stop_, u.strides_);
    for (int d = 0; d + 1 < nd; ++d)
      if (sp.start[d] != 0 || sp.count[d] != g.shape(d)) return std::nullopt;
    for (const Array& o : *regions)
      if (!o.same_node(r) &&
          !disjoint(g.shape(), u, static_cast<const SliceUpdate&>(o.primitive())))
        return std::nullopt;
    const Array& block = r.inputs()[1];
    if (block.dtype() != g.dtype() || sp.count.back() == 0) return std::nullopt;
    blocks.emplace_back(sp.start.back(), block);
  }
  std::sort(blocks.begin(), blocks.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  Array sum;
  for (const auto& [col, block] : blocks) {
    const Array bt = swapaxes(slice(b, {0, col}, {b.shape(0), col + block.shape(-1)}), -1, -2);
    sum = sum.valid() ? addmm(sum, block, bt, 1.0f, 1.0f) : matmul(block, bt);
  }
  return sum;
}

/// Cotangents of a and b for out = a @ b, given the cotangent g of out.
std::vector<Array> matmul_vjp(const Array& a, const Array& b, const Array& g,
                              const std::vector<int>& argnums, int a_index) {
  Matrices m = as_matrices(a, b, g);
  std::vector<Array> out;
  for (int arg : argnums) {
    if (arg == a_index) {
      if (std::optional<Array> blocks = column_block_grad(a, b, g)) {
        out.push_back(*blocks);
        continue;
      }
      out.push_back(sum_to_shape(matmul(m.g, swapaxes(m.b, -1, -2)), m.a.shape()));
      out.back() = reshape(out.back(), a.shape());
    } else {
      out.push_back(sum_to_shape(matmul(swapaxes(m.a, -1, -2), m.g), m.b.shape()));
      out.back() = reshape(out.back(), b.shape());
    }
  }
  return out;
}

}  // namespace

Shape matmul_shape(const Array& a, const Array& b, const char* op) {
  if (a.ndim() == 0 || b.ndim() == 0)
    raise("[{}] operands must have at least one dimension, got a {} and b {}", op, describe(a),
          describe(b));
  const int64_t ka = a.shape().back();
  const int64_t kb = b.ndim() == 1 ? b.shape()[0] : b.shape()[b.ndim() - 2];
  if (ka != kb)
    raise("[{}] inner dimensions differ: a is {}, b is {}", op, describe(a), describe(b));
  Shape ba(a.shape().begin(), a.shape().end() - std::min(a.ndim(), 2));
  Shape bb(b.shape().begin(), b.shape().end() - std::min(b.ndim(), 2));
  Shape batch(std::max(ba.size(), bb.size()), 1);
  for (size_t i = 0; i < batch.size(); ++i) {
    int64_t da = i < batch.size() - ba.size() ? 1 : ba[i - (batch.size() - ba.size())];
    int64_t db = i < batch.size() - bb.size() ? 1 : bb[i - (batch.size() - bb.size())];
    if (da != db && da != 1 && db != 1)
      raise("[{}] batch dimensions do not broadcast: a is {}, b is {}", op, describe(a),
            describe(b));
    batch[i] = da == 1 ? db : da;
  }
  if (a.ndim() >= 2) batch.push_back(a.shape()[a.ndim() - 2]);
  if (b.ndim() >= 2) batch.push_back(b.shape().back());
  return batch;
}

Array matmul(const Array& a, const Array& b, StreamOrDevice s) {
  check_float(a, "a", "matmul");
  check_float(b, "b", "matmul");
  Shape out_shape = matmul_shape(a, b, "matmul");
  const Dtype dt = promote_types(a.dtype(), b.dtype());
  Stream stream = resolve_stream(s, {&a, &b});
  Array a2 = a.dtype() == dt ? a : astype(a, dt, stream);
  Array b2 = b.dtype() == dt ? b : astype(b, dt, stream);
  return Array(std::move(out_shape), dt, std::make_shared<Matmul>(stream), {a2, b2});
}

namespace {
Array addmm_impl(const Array& c, const Array& a, const Array& b, float alpha, float beta,
                 bool round_product, const char* op, StreamOrDevice s) {
  check_float(c, "c", op);
  check_float(a, "a", op);
  check_float(b, "b", op);
  Shape out_shape = matmul_shape(a, b, op);
  bool fits = c.ndim() <= static_cast<int>(out_shape.size());
  for (int d = 0; fits && d < c.ndim(); ++d) {
    int64_t o = out_shape[out_shape.size() - c.ndim() + d];
    fits = c.shape()[d] == 1 || c.shape()[d] == o;
  }
  if (!fits)
    raise("[{}] c {} does not broadcast to the result {} of a {} @ b {}", op, describe(c),
          shape_str(out_shape), describe(a), describe(b));
  const Dtype dt = promote_types(promote_types(a.dtype(), b.dtype()), c.dtype());
  Stream stream = resolve_stream(s, {&a, &b, &c});
  auto cast = [&](const Array& x) { return x.dtype() == dt ? x : astype(x, dt, stream); };
  return Array(std::move(out_shape), dt,
               std::make_shared<AddMM>(stream, alpha, beta, round_product),
               {cast(c), cast(a), cast(b)});
}
}  // namespace

Array addmm(const Array& c, const Array& a, const Array& b, float alpha, float beta,
            StreamOrDevice s) {
  return addmm_impl(c, a, b, alpha, beta, false, "addmm", s);
}

Array add_matmul(const Array& c, const Array& a, const Array& b, StreamOrDevice s) {
  // The product rounds in the dtype of a @ b, then the add in the promoted dtype: only when
  // they agree is this one AddMM (otherwise the two ops).
  if (promote_types(a.dtype(), b.dtype()) !=
      promote_types(promote_types(a.dtype(), b.dtype()), c.dtype()))
    return add(c, matmul(a, b, s), s);
  return addmm_impl(c, a, b, 1.0f, 1.0f, true, "add_matmul", s);
}

std::vector<Shape> Matmul::output_shapes(const std::vector<Array>& inputs) {
  return {matmul_shape(inputs[0], inputs[1], "matmul")};
}

std::vector<Array> Matmul::vjp(const std::vector<Array>& primals,
                               const std::vector<Array>& cotangents,
                               const std::vector<int>& argnums, const std::vector<Array>&) {
  return matmul_vjp(primals[0], primals[1], cotangents[0], argnums, 0);
}

std::vector<Array> Matmul::jvp(const std::vector<Array>& primals,
                               const std::vector<Array>& tangents,
                               const std::vector<int>& argnums) {
  Array r;
  for (size_t i = 0; i < argnums.size(); ++i) {
    Array t = argnums[i] == 0 ? matmul(tangents[i], primals[1], stream())
                              : matmul(primals[0], tangents[i], stream());
    r = r.valid() ? add(r, t, stream()) : t;
  }
  return {r};
}

std::vector<Shape> AddMM::output_shapes(const std::vector<Array>& inputs) {
  return {matmul_shape(inputs[1], inputs[2], "addmm")};
}

std::vector<Array> AddMM::vjp(const std::vector<Array>& primals,
                              const std::vector<Array>& cotangents, const std::vector<int>& argnums,
                              const std::vector<Array>&) {
  const Array& g = cotangents[0];
  // The scalars go onto the other operand of each product (d a = g @ (alpha b)^T, d b =
  // (alpha a)^T @ g) rather than onto g, which is the size of the output; 1 is no multiply.
  auto scaled = [&](const Array& x, float f) {
    return f == 1.0f ? x : multiply(x, Array(f), stream());
  };
  std::vector<Array> out;
  for (int arg : argnums) {
    if (arg == 0)
      out.push_back(sum_to_shape(scaled(g, beta_), primals[0].shape()));
    else if (arg == 1)
      out.push_back(matmul_vjp(primals[1], scaled(primals[2], alpha_), g, {1}, 1)[0]);
    else
      out.push_back(matmul_vjp(scaled(primals[1], alpha_), primals[2], g, {2}, 1)[0]);
  }
  return out;
}

void AddMM::print(std::ostream& os) const {
  os << "AddMM(alpha=" << alpha_ << ", beta=" << beta_ << (round_product_ ? ", round_product" : "")
     << ")";
}

}  // namespace ingot
