// Basic layers: Linear, Embedding, RMSNorm, LayerNorm, Dropout, GatedMLP. Weight layouts and
// parameter names follow PyTorch/Hugging Face (Linear weight is [out, in]).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/dist/group.h"
#include "core/dtype.h"
#include "core/fast/fast.h"
#include "core/ops/quantized.h"
#include "nn/module.h"

namespace ingot::nn {

/// y = x W^T + b. weight [out, in], bias [out].
/// A low-rank branch on a Linear (unfused LoRA, as PEFT runs it): the layer's output becomes
/// y + scale * B(A(dropout(x))), with x cast to A's dtype (float32 adapters over a bf16 base),
/// the sum formed in that dtype and rounded once to y's dtype. a [r, in], b [out, r]. Dropout
/// is active only while the layer is in training mode.
struct LowRankBranch {
  Array a, b;
  float scale = 1.0f;
  float dropout = 0.0f;
};

class Linear : public Module {
 public:
  /// Initialised uniform(-1/sqrt(in), 1/sqrt(in)) as PyTorch does.
  Linear(int64_t in_features, int64_t out_features, bool bias = true, Dtype dtype = float32);
  virtual Array operator()(const Array& x) const;
  /// y (this layer's product for x) plus the low-rank branch of x, if any. x_cast: x already
  /// cast to the branch's dtype (shared by layers that read the same x), used when it is.
  Array with_branch(const Array& y, const Array& x, const Array* x_cast = nullptr) const;
  /// residual + (*this)(x), with the add fused into the matmul for a layer without bias or
  /// branch, float or quantized (fast::quantized_linear_add); the product still rounds to the
  /// dtype first, so the result equals the separate ops'.
  Array add_to(const Array& residual, const Array& x) const;
  int64_t in_features() const {
    return param("weight").shape(1) * (quant_ ? 32 / quant_->bits : 1);
  }
  int64_t out_features() const { return param("weight").shape(0); }
  /// Adds (or, with nullopt, removes) a low-rank branch. Its arrays are not parameters of the
  /// layer: whoever trains them owns them (they may be autodiff tracers). InvalidArgument when
  /// the shapes do not fit the layer.
  void set_branch(std::optional<LowRankBranch> branch);
  const std::optional<LowRankBranch>& branch() const { return branch_; }
  /// Affine quantization of the weight, when the layer is quantized (nn/quantized.h): weight
  /// is then packed uint32 [out, in * bits / 32] with "scales" and "biases" [out, in / gs].
  const std::optional<QuantizeOptions>& quantization() const { return quant_; }
  /// Quantizes the layer in place (defined in nn/quantized.cpp).
  void quantize(QuantizeOptions opt);
  /// Row-parallel (tensor parallelism): the weight holds this rank's slice of the input
  /// features, x the matching slice of the input, and the products are summed over `group`
  /// (dist::all_sum) before the bias is added. Null: an ordinary layer. Unsupported with a
  /// low-rank branch.
  void set_row_parallel(std::shared_ptr<dist::Group> group);
  const std::shared_ptr<dist::Group>& row_parallel() const { return row_group_; }
  /// The weight [out, in] of a plain dense layer (no bias, branch, quantization or
  /// row-parallel group), else nullopt: for fused kernels that take the weight itself.
  std::optional<Array> dense_weight() const;

 private:
  std::optional<LowRankBranch> branch_;
  std::optional<QuantizeOptions> quant_;
  std::shared_ptr<dist::Group> row_group_;
};

/// Activation functions by Hugging Face name: "silu", "gelu", "gelu_pytorch_tanh"/"gelu_tanh".
enum class Activation { silu, gelu, gelu_tanh };
/// Parses a Hugging Face activation name; throws InvalidArgument listing the known ones.
Activation activation_from_name(const std::string& name);
Array activate(const Array& x, Activation a);

class RMSNorm;

/// Linear layers that read the same input (q/k/v, gate/up) run as one matmul against their
/// weights stacked row-wise: one GEMV per decode step instead of one per layer. fuse() stacks
/// the weights once and makes each layer's weight a row slice of the stack, so no memory is
/// added and every layer still works alone. The stacked product gives each layer exactly the
/// dot products it would compute alone. Quantized layers stack too (their packed words, scales
/// and biases, each row-wise): the products are then quantized_matmul's and the fused forms
/// fast::rms_norm_quantized_linear / rms_norm_quantized_glu.
class StackedLinear {
 public:
  /// Stacks the layers' weights; false (nothing changed) unless every layer is a Linear
  /// without bias, all float with the same input size and dtype, or all quantized with the same
  /// input size, bits, group size and scales dtype.
  bool fuse(const std::vector<Linear*>& layers);
  /// The layers' outputs for x (low-rank branches added to their columns), or nullopt when
  /// the stack no longer is what the layers hold (a weight replaced by update(), quantization):
  /// call the layers then. The base product is the same with or without branches.
  std::optional<std::vector<Array>> operator()(const Array& x) const;
  /// The stacked product x @ stack^T (every layer's base output side by side), or nullopt.
  std::optional<Array> product(const Array& x) const;
  /// The stacked product of norm(x) with the norm fused in (fast::rms_norm_linear: one kernel
  /// on a GPU for a few rows), or nullopt when product() would be, or when a layer has a
  /// low-rank branch (the branch needs the normalised x: normalise, then call product()).
  std::optional<Array> normed_product(const Array& x, const RMSNorm& norm) const;
  /// For two stacked layers of one width (gate, up): act(gate) * up of norm(x) as one primitive
  /// (fast::rms_norm_glu), or nullopt when normed_product would be.
  std::optional<Array> normed_glu(const Array& x, const RMSNorm& norm, Activation act) const;
  /// Layer i's output from y = product(x): its columns plus its branch of x (x_cast: see
  /// Linear::with_branch).
  Array output(const Array& y, const Array& x, size_t i, const Array* x_cast = nullptr) const;
  /// x cast to the dtype of the first low-rank branch among layers [first, first + count), for
  /// output()'s x_cast (one cast for every branch of the stack); nullopt without branches.
  std::optional<Array> branch_input(const Array& x, size_t first, size_t count) const;
  /// Columns of y = product(x) of layers [first, first + count) (without branches).
  Array columns(const Array& y, size_t first, size_t count) const;
  /// True when one of layers [first, first + count) has a low-rank branch.
  bool has_branch(size_t first, size_t count) const;
  /// The stacked weight [N, E] when the stack is current, float (not quantized) and no layer
  /// has a low-rank branch or a row-parallel group; else nullopt.
  std::optional<Array> dense_stack() const;

 private:
  /// True while every layer still holds the parameters fuse() installed.
  bool current() const;

  std::vector<Linear*> layers_;
  std::vector<Array> parts_;  // each layer's weight as fuse() installed it
  Array stack_;
  // Quantized stacks: the options, and the stacked scales / biases with each layer's slices.
  std::optional<QuantizeOptions> quant_;
  std::vector<Array> scale_parts_, bias_parts_;
  Array scales_, biases_;
};

/// Token embedding table [V, E].
class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dims, Dtype dtype = float32);
  /// Rows for ids of any integer shape: ids.shape + [E].
  Array operator()(const Array& ids) const;
  /// x @ weight^T: the tied LM head.
  Array as_linear(const Array& x) const;
  /// Affine quantization of the table, when quantized (as for Linear).
  const std::optional<QuantizeOptions>& quantization() const { return quant_; }
  /// Quantizes the table in place (defined in nn/quantized.cpp).
  void quantize(QuantizeOptions opt);

 private:
  std::optional<QuantizeOptions> quant_;
};

/// Options of RMSNorm.
struct RMSNormOptions {
  float eps = 1e-6f;
  /// Scale by (1 + weight) (Gemma); the weight is then initialised to zeros.
  bool unit_offset = false;
  /// Multiply by the weight in float32 (Gemma3); false rounds the normalised x to x's dtype
  /// first, as Hugging Face LlamaRMSNorm / Qwen3RMSNorm do (see fast::RmsNormOptions).
  bool weight_in_float32 = true;
};
/// Root-mean-square norm over the last axis with a learned scale.
class RMSNorm : public Module {
 public:
  RMSNorm(int64_t dims, RMSNormOptions opt = {}, Dtype dtype = float32);
  Array operator()(const Array& x) const;
  /// residual + (*this)(x) as one primitive (fast::rms_norm_add, the same result);
  /// INGOT_NORM_ADD=0 runs the two ops.
  Array add_to(const Array& residual, const Array& x) const;
  /// (*this)(x) @ w^T for a Linear weight w [N, E] (fast::rms_norm_linear).
  Array linear(const Array& x, const Array& w) const;
  /// act(y[..., :I]) * y[..., I:] for y = linear(x, w), w stacked gate|up weights [2I, E]
  /// (fast::rms_norm_glu).
  Array glu(const Array& x, const Array& w, Activation act) const;
  const RMSNormOptions& options() const { return opt_; }

 private:
  RMSNormOptions opt_;
};

/// Layer norm over the last axis (weight and bias optional).
class LayerNorm : public Module {
 public:
  LayerNorm(int64_t dims, float eps = 1e-5f, bool affine = true, bool bias = true,
            Dtype dtype = float32);
  Array operator()(const Array& x) const;

 private:
  float eps_;
};

/// Zeroes elements with probability p in training mode and rescales by 1/(1-p).
class Dropout : public Module {
 public:
  explicit Dropout(float p = 0.5f);
  Array operator()(const Array& x) const;

 private:
  float p_;
};

/// down(act(gate(x)) * up(x)) with gate_proj/up_proj [F, E] and down_proj [E, F].
class GatedMLP : public Module {
 public:
  GatedMLP(int64_t dims, int64_t hidden, Activation act = Activation::silu, bool bias = false,
           Dtype dtype = float32);
  Array operator()(const Array& x) const;
  /// residual + (*this)(x), the add fused into the down projection (Linear::add_to).
  Array operator()(const Array& x, const Array& residual) const;
  /// residual + (*this)(norm(x)) (no add without a residual), with the norm fused into the
  /// gate/up product where the stack allows (StackedLinear::normed_product).
  Array normed(const Array& x, const RMSNorm& norm, const Array* residual) const;
  /// {h, (*this)(norm(h))} for h = post.add_to(residual, y) (Gemma3's sandwich norms), with
  /// post's norm and add, norm, the gate/up product, act and the multiply as one primitive
  /// (fast::rms_norm_add_linear: one GEMV for a few rows on the GPU), or nullopt where normed()
  /// would not take the fused GLU (not on the GPU, autodiff, quantized or low-rank gate/up,
  /// INGOT_GLU_FUSED=0, INGOT_NORM_ADD=0), and unless INGOT_NORM_ADD_GLU=1 (opt-in).
  std::optional<std::pair<Array, Array>> add_normed(const Array& residual, const Array& y,
                                                    const RMSNorm& post, const RMSNorm& norm) const;
  Linear& gate_proj() const { return *gate_; }
  Linear& up_proj() const { return *up_; }
  Linear& down_proj() const { return *down_; }
  /// Runs gate and up as one stacked matmul from now on (see StackedLinear); false if the
  /// layers do not qualify.
  bool fuse_projections();
  /// For fused kernels: the stacked gate|up weight [2I, E], the down weight [E, I] and the
  /// activation, when gate/up are a dense stack and down a plain dense Linear; else false.
  bool dense_glu(Array* gate_up, Array* down, fast::GatedActivation* act) const;

 private:
  std::shared_ptr<Linear> gate_, up_, down_;
  Activation act_;
  StackedLinear gate_up_;
};

}  // namespace ingot::nn
