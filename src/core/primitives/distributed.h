// Collective primitives over a dist::Group (one process per rank). Kernels: backend/cpu/
// distributed.cpp (TCP through rank 0), backend/cuda/distributed.cpp (NCCL).
#pragma once

#include <memory>
#include <tuple>

#include "core/dist/group.h"
#include "core/primitive.h"

namespace ingot {

/// out = the sum over the group's ranks of each rank's input (same shape and dtype on every
/// rank); every rank gets the same bytes. VJP: the cotangent unchanged, the tensor-parallel
/// convention in which what follows the sum is replicated on every rank (each rank holds the
/// same cotangent, and d(loss)/d(input of rank r) is that cotangent).
class AllSum : public UnaryPrimitive {
 public:
  AllSum(Stream s, std::shared_ptr<dist::Group> group) : UnaryPrimitive(s), group_(group) {}
  INGOT_UNARY_PRIMITIVE(AllSum)
  INGOT_EQUIVALENT(AllSum, std::make_tuple(p->group_.get()))
  std::vector<Shape> output_shapes(const std::vector<Array>& in) override {
    return {in[0].shape()};
  }
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;

  const std::shared_ptr<dist::Group> group_;
};

/// out = the ranks' inputs concatenated along `axis` in rank order (every rank's input has the
/// same shape). VJP: this rank's slice of the cotangent (replicated cotangents, as AllSum).
class AllGather : public UnaryPrimitive {
 public:
  AllGather(Stream s, std::shared_ptr<dist::Group> group, int axis)
      : UnaryPrimitive(s), group_(group), axis_(axis) {}
  INGOT_UNARY_PRIMITIVE(AllGather)
  INGOT_EQUIVALENT(AllGather, std::make_tuple(p->group_.get(), p->axis_))
  std::vector<Shape> output_shapes(const std::vector<Array>& in) override;
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;

  const std::shared_ptr<dist::Group> group_;
  const int axis_;  // non-negative
};

}  // namespace ingot
