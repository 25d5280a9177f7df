// Primitives of the reduction family: Reduce, ArgReduce, LogSumExp, Softmax, Scan, Sort,
// ArgSort, Partition, ArgPartition, TopK. Output dtypes are chosen by the ops
// (core/ops/reduce.cpp); kernels write whatever dtype the output node carries.
#pragma once

#include <tuple>
#include <vector>

#include "core/primitive.h"

namespace ingot {

/// Kind of a Reduce.
enum class ReduceType { sum, prod, max, min, all, any };
/// "sum", "prod", ...
const char* reduce_type_name(ReduceType t);

/// Reduces the (sorted, non-negative) `axes`. The output has the keepdims shape when
/// `keepdims_`, else the reduced axes are dropped; either way its elements are the kept
/// positions in row-major order. Accumulates in float32 for 16-bit floats, float64 for
/// float64, 64-bit integers (wrapping) for integers; the output dtype is the node's dtype.
class Reduce : public UnaryPrimitive {
 public:
  Reduce(Stream s, ReduceType type, std::vector<int> axes, bool keepdims)
      : UnaryPrimitive(s), type_(type), axes_(std::move(axes)), keepdims_(keepdims) {}
  INGOT_UNARY_PRIMITIVE(Reduce)
  INGOT_EQUIVALENT(Reduce, std::tie(p->type_, p->axes_, p->keepdims_))
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Array> jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
  void print(std::ostream& os) const override;

  const ReduceType type_;
  const std::vector<int> axes_;
  const bool keepdims_;
};

/// Index (uint32) of the first max / min along one axis; NaN counts as the extreme.
class ArgReduce : public UnaryPrimitive {
 public:
  enum class Type { argmax, argmin };
  ArgReduce(Stream s, Type type, int axis, bool keepdims)
      : UnaryPrimitive(s), type_(type), axis_(axis), keepdims_(keepdims) {}
  INGOT_UNARY_PRIMITIVE(ArgReduce)
  INGOT_EQUIVALENT(ArgReduce, std::tie(p->type_, p->axis_, p->keepdims_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;

  const Type type_;
  const int axis_;
  const bool keepdims_;
};

/// log(sum(exp(x))) over sorted axes, max-subtracted; float32 inside (float64 for float64).
class LogSumExp : public UnaryPrimitive {
 public:
  LogSumExp(Stream s, std::vector<int> axes, bool keepdims)
      : UnaryPrimitive(s), axes_(std::move(axes)), keepdims_(keepdims) {}
  INGOT_UNARY_PRIMITIVE(LogSumExp)
  INGOT_EQUIVALENT(LogSumExp, std::tie(p->axes_, p->keepdims_))
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;

  const std::vector<int> axes_;
  const bool keepdims_;
};

/// Cross-entropy of each row of logits [..., V] against an int32 target [...] in [0, V):
/// logsumexp(row) - row[target] in float32 (float64 for float64 logits), one pass over the row
/// (no float32 copy of the logits). A target outside [0, V) is InvalidArgument ("[cross_entropy]
/// index ..."; on CUDA at the next synchronisation). Inputs {logits, targets}.
class CrossEntropy : public UnaryPrimitive {
 public:
  explicit CrossEntropy(Stream s) : UnaryPrimitive(s) {}
  INGOT_UNARY_PRIMITIVE(CrossEntropy)
  INGOT_EQUIVALENT(CrossEntropy, std::make_tuple(0))
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
};

/// CrossEntropy's gradient with respect to the logits: (softmax(row) - onehot(target)) * g[row]
/// in float32 (float64), rounded once to the logits' dtype; inputs {logits, targets, g} with g
/// [...] in the loss dtype. One read of the row for its (max, sum) and one to write.
class CrossEntropyGrad : public UnaryPrimitive {
 public:
  explicit CrossEntropyGrad(Stream s) : UnaryPrimitive(s) {}
  INGOT_UNARY_PRIMITIVE(CrossEntropyGrad)
  INGOT_EQUIVALENT(CrossEntropyGrad, std::make_tuple(0))
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;
};

/// Softmax over sorted axes (float32 inside; output in the node's dtype). With `log_`, the
/// log-softmax x - logsumexp(x).
class Softmax : public UnaryPrimitive {
 public:
  Softmax(Stream s, std::vector<int> axes, bool log)
      : UnaryPrimitive(s), axes_(std::move(axes)), log_(log) {}
  INGOT_UNARY_PRIMITIVE(Softmax)
  INGOT_EQUIVALENT(Softmax, std::tie(p->axes_, p->log_))
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Array> jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;

  const std::vector<int> axes_;
  const bool log_;
};

/// Cumulative sum or product along an axis (reverse and/or exclusive).
class Scan : public UnaryPrimitive {
 public:
  enum class Type { sum, prod };
  Scan(Stream s, Type type, int axis, bool reverse, bool inclusive)
      : UnaryPrimitive(s), type_(type), axis_(axis), reverse_(reverse), inclusive_(inclusive) {}
  INGOT_UNARY_PRIMITIVE(Scan)
  INGOT_EQUIVALENT(Scan, std::tie(p->type_, p->axis_, p->reverse_, p->inclusive_))
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Array> jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                         const std::vector<int>& argnums) override;
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;

  const Type type_;
  const int axis_;
  const bool reverse_;
  const bool inclusive_;
};

/// Ascending sort along an axis, NaNs last.
class Sort : public UnaryPrimitive {
 public:
  Sort(Stream s, int axis) : UnaryPrimitive(s), axis_(axis) {}
  INGOT_UNARY_PRIMITIVE(Sort)
  INGOT_EQUIVALENT(Sort, std::tie(p->axis_))
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;

  const int axis_;
};

/// Stable ascending argsort (uint32) along an axis, NaNs last.
class ArgSort : public UnaryPrimitive {
 public:
  ArgSort(Stream s, int axis) : UnaryPrimitive(s), axis_(axis) {}
  INGOT_UNARY_PRIMITIVE(ArgSort)
  INGOT_EQUIVALENT(ArgSort, std::tie(p->axis_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;

  const int axis_;
};

/// Values partitioned around position kth along an axis (NaNs count as largest).
class Partition : public UnaryPrimitive {
 public:
  Partition(Stream s, int kth, int axis) : UnaryPrimitive(s), kth_(kth), axis_(axis) {}
  INGOT_UNARY_PRIMITIVE(Partition)
  INGOT_EQUIVALENT(Partition, std::tie(p->kth_, p->axis_))
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;

  const int kth_;
  const int axis_;
};

/// Indices (uint32) that partition around position kth along an axis.
class ArgPartition : public UnaryPrimitive {
 public:
  ArgPartition(Stream s, int kth, int axis) : UnaryPrimitive(s), kth_(kth), axis_(axis) {}
  INGOT_UNARY_PRIMITIVE(ArgPartition)
  INGOT_EQUIVALENT(ArgPartition, std::tie(p->kth_, p->axis_))
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;

  const int kth_;
  const int axis_;
};

/// The k largest values (or their uint32 indices with `indices_`) along an axis, descending;
/// ties keep the lower index first; NaN counts as the largest value.
class TopK : public UnaryPrimitive {
 public:
  TopK(Stream s, int k, int axis, bool indices)
      : UnaryPrimitive(s), k_(k), axis_(axis), indices_(indices) {}
  INGOT_UNARY_PRIMITIVE(TopK)
  INGOT_EQUIVALENT(TopK, std::tie(p->k_, p->axis_, p->indices_))
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Shape> output_shapes(const std::vector<Array>& inputs) override;

  const int k_;
  const int axis_;
  const bool indices_;
};

}  // namespace ingot
