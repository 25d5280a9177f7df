// Creation primitives: Full (materialises a broadcast value), Arange, Linspace, Eye, and the
// row-contiguous copies Copy and Contiguous. Output shape and dtype are the node's.
#pragma once

#include <tuple>
#include <vector>

#include "core/primitive.h"

namespace ingot {

/// Materialises its input (a broadcast view of the fill value, already in the output dtype)
/// into fresh row-contiguous storage. zero_: made by zeros() (the value is known to be 0
/// without reading it; autodiff merges zero-padded cotangents on it).
class Full : public UnaryPrimitive {
 public:
  explicit Full(Stream s, bool zero = false) : UnaryPrimitive(s), zero_(zero) {}
  INGOT_UNARY_PRIMITIVE(Full)
  const bool zero_;
  bool is_equivalent(const Primitive& o) const override {
    return dynamic_cast<const Full*>(&o) != nullptr;
  }
  std::vector<Shape> output_shapes(const std::vector<Array>& in) override {
    return {in.at(0).shape()};
  }
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Array> jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                         const std::vector<int>& argnums) override;
};

/// start + i * step for i in [0, n) (n is the output size), computed in float64 (int64 when
/// start and step are integers) and rounded once to the output dtype.
class Arange : public UnaryPrimitive {
 public:
  Arange(Stream s, double start, double step) : UnaryPrimitive(s), start_(start), step_(step) {}
  INGOT_UNARY_PRIMITIVE(Arange)
  INGOT_EQUIVALENT(Arange, std::tie(p->start_, p->step_))
  double start() const { return start_; }
  double step() const { return step_; }

 private:
  const double start_, step_;
};

/// `n` evenly spaced values from start to stop inclusive (the last one is exactly stop).
class Linspace : public UnaryPrimitive {
 public:
  Linspace(Stream s, double start, double stop) : UnaryPrimitive(s), start_(start), stop_(stop) {}
  INGOT_UNARY_PRIMITIVE(Linspace)
  INGOT_EQUIVALENT(Linspace, std::tie(p->start_, p->stop_))

 private:
  const double start_, stop_;
};

/// Ones on diagonal k (column - row == k) of an [n, m] output, zeros elsewhere.
class Eye : public UnaryPrimitive {
 public:
  Eye(Stream s, int64_t k) : UnaryPrimitive(s), k_(k) {}
  INGOT_UNARY_PRIMITIVE(Eye)
  INGOT_EQUIVALENT(Eye, std::tie(p->k_))

 private:
  const int64_t k_;
};

/// Row-contiguous copy into a new buffer (also for views).
/// The input copied to the primitive's device (the only primitive whose input lives on another
/// device). Its vjp moves the cotangent back.
class ToDevice : public UnaryPrimitive {
 public:
  using UnaryPrimitive::UnaryPrimitive;
  INGOT_UNARY_PRIMITIVE(ToDevice)
  bool crosses_devices() const override { return true; }
  bool is_equivalent(const Primitive& o) const override {
    auto* t = dynamic_cast<const ToDevice*>(&o);
    return t && t->stream() == stream();
  }
  std::vector<Shape> output_shapes(const std::vector<Array>& in) override {
    return {in.at(0).shape()};
  }
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
};

class Copy : public UnaryPrimitive {
 public:
  using UnaryPrimitive::UnaryPrimitive;
  INGOT_UNARY_PRIMITIVE(Copy)
  bool is_equivalent(const Primitive& o) const override {
    return dynamic_cast<const Copy*>(&o) != nullptr;
  }
  std::vector<Shape> output_shapes(const std::vector<Array>& in) override {
    return {in.at(0).shape()};
  }
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Array> jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                         const std::vector<int>& argnums) override;
};

/// Row-contiguous version: shares the input's buffer when it already is row contiguous.
class Contiguous : public UnaryPrimitive {
 public:
  using UnaryPrimitive::UnaryPrimitive;
  INGOT_UNARY_PRIMITIVE(Contiguous)
  bool is_equivalent(const Primitive& o) const override {
    return dynamic_cast<const Contiguous*>(&o) != nullptr;
  }
  std::vector<Shape> output_shapes(const std::vector<Array>& in) override {
    return {in.at(0).shape()};
  }
  std::vector<Array> vjp(const std::vector<Array>& primals, const std::vector<Array>& cotangents,
                         const std::vector<int>& argnums,
                         const std::vector<Array>& outputs) override;
  std::vector<Array> jvp(const std::vector<Array>& primals, const std::vector<Array>& tangents,
                         const std::vector<int>& argnums) override;
};

}  // namespace ingot
