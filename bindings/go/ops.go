package ingot

/*
#include "ingot/ingot.h"
*/
import "C"

import "unsafe"

func cInts(v []int) (*C.int, C.int) {
	if len(v) == 0 {
		return nil, 0
	}
	c := make([]C.int, len(v))
	for i, x := range v {
		c[i] = C.int(x)
	}
	return &c[0], C.int(len(v))
}

func cInt64s(v []int64) *C.int64_t {
	if len(v) == 0 {
		return nil
	}
	return (*C.int64_t)(unsafe.Pointer(&v[0]))
}

// Negative is the elementwise negative.
func Negative(a *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_negative(a.handle(), o) })
}

// Abs is the elementwise abs.
func Abs(a *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_abs(a.handle(), o) })
}

// Exp is the elementwise exp.
func Exp(a *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_exp(a.handle(), o) })
}

// Log is the elementwise log.
func Log(a *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_log(a.handle(), o) })
}

// Sigmoid is the elementwise sigmoid.
func Sigmoid(a *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_sigmoid(a.handle(), o) })
}

// SiLU is the elementwise silu.
func SiLU(a *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_silu(a.handle(), o) })
}

// GELU is the elementwise gelu.
func GELU(a *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_gelu(a.handle(), o) })
}

// Tanh is the elementwise tanh.
func Tanh(a *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_tanh(a.handle(), o) })
}

// Sin is the elementwise sin.
func Sin(a *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_sin(a.handle(), o) })
}

// Cos is the elementwise cos.
func Cos(a *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_cos(a.handle(), o) })
}

// Sqrt is the elementwise sqrt.
func Sqrt(a *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_sqrt(a.handle(), o) })
}

// Rsqrt is the elementwise rsqrt.
func Rsqrt(a *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_rsqrt(a.handle(), o) })
}

// Reciprocal is the elementwise reciprocal.
func Reciprocal(a *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_reciprocal(a.handle(), o) })
}

// Square is the elementwise square.
func Square(a *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_square(a.handle(), o) })
}

// StopGradient is the elementwise stop_gradient.
func StopGradient(a *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_stop_gradient(a.handle(), o) })
}

// Add is add(a, b) with broadcasting.
func Add(a, b *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_add(a.handle(), b.handle(), o) })
}

// Subtract is subtract(a, b) with broadcasting.
func Subtract(a, b *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_subtract(a.handle(), b.handle(), o) })
}

// Mul is multiply(a, b) with broadcasting.
func Mul(a, b *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_multiply(a.handle(), b.handle(), o) })
}

// Divide is divide(a, b) with broadcasting.
func Divide(a, b *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_divide(a.handle(), b.handle(), o) })
}

// Power is power(a, b) with broadcasting.
func Power(a, b *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_power(a.handle(), b.handle(), o) })
}

// Maximum is maximum(a, b) with broadcasting.
func Maximum(a, b *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_maximum(a.handle(), b.handle(), o) })
}

// Minimum is minimum(a, b) with broadcasting.
func Minimum(a, b *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_minimum(a.handle(), b.handle(), o) })
}

// Equal is equal(a, b) with broadcasting.
func Equal(a, b *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_equal(a.handle(), b.handle(), o) })
}

// Less is less(a, b) with broadcasting.
func Less(a, b *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_less(a.handle(), b.handle(), o) })
}

// Greater is greater(a, b) with broadcasting.
func Greater(a, b *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_greater(a.handle(), b.handle(), o) })
}

// Matmul is matmul(a, b) with broadcasting.
func Matmul(a, b *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_matmul(a.handle(), b.handle(), o) })
}

// Sum reduces over axes (none: all axes).
func Sum(a *Array, keepdims bool, axes ...int) (*Array, error) {
	ax, n := cInts(axes)
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_sum(a.handle(), ax, n, cBool(keepdims), o) })
}

// Mean reduces over axes (none: all axes).
func Mean(a *Array, keepdims bool, axes ...int) (*Array, error) {
	ax, n := cInts(axes)
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_mean(a.handle(), ax, n, cBool(keepdims), o) })
}

// Max reduces over axes (none: all axes).
func Max(a *Array, keepdims bool, axes ...int) (*Array, error) {
	ax, n := cInts(axes)
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_max(a.handle(), ax, n, cBool(keepdims), o) })
}

// LogSumExp reduces over axes (none: all axes).
func LogSumExp(a *Array, keepdims bool, axes ...int) (*Array, error) {
	ax, n := cInts(axes)
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_logsumexp(a.handle(), ax, n, cBool(keepdims), o) })
}

func cBool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// Where is cond ? a : b with broadcasting.
func Where(cond, a, b *Array) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_where(cond.handle(), a.handle(), b.handle(), o) })
}

// AsType converts to dtype.
func AsType(a *Array, dt Dtype) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_astype(a.handle(), C.int(dt), o) })
}

// ToDevice returns a on device d.
func ToDevice(a *Array, d Device) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_to_device(a.handle(), d.c(), o) })
}

// Softmax over axes (none: the last axis).
func Softmax(a *Array, axes ...int) (*Array, error) {
	ax, n := cInts(axes)
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_softmax(a.handle(), ax, n, o) })
}

// Argmax is the index (uint32) of the first maximum along axis.
func Argmax(a *Array, axis int, keepdims bool) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_argmax(a.handle(), C.int(axis), cBool(keepdims), o) })
}

// TopK is the k largest values along axis, descending.
func TopK(a *Array, k, axis int) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_topk(a.handle(), C.int(k), C.int(axis), o) })
}

// TopKIndices is the indices (uint32) of the k largest values along axis.
func TopKIndices(a *Array, k, axis int) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_topk_indices(a.handle(), C.int(k), C.int(axis), o) })
}

// Reshape to shape (one dimension may be -1).
func Reshape(a *Array, shape ...int64) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int {
		return C.ingot_reshape(a.handle(), cInt64s(shape), C.int(len(shape)), o)
	})
}

// Transpose permutes axes (none: reverses them).
func Transpose(a *Array, axes ...int) (*Array, error) {
	ax, n := cInts(axes)
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_transpose(a.handle(), ax, n, o) })
}

// ExpandDims inserts size-1 axes.
func ExpandDims(a *Array, axes ...int) (*Array, error) {
	ax, n := cInts(axes)
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_expand_dims(a.handle(), ax, n, o) })
}

// Squeeze removes size-1 axes (none given: all of them).
func Squeeze(a *Array, axes ...int) (*Array, error) {
	if len(axes) == 0 {
		// The size-1 axes named here: the C library's n_axes == 0 removes none of them.
		for i, d := range a.Shape() {
			if d == 1 {
				axes = append(axes, i)
			}
		}
	}
	ax, n := cInts(axes)
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_squeeze(a.handle(), ax, n, o) })
}

// BroadcastTo broadcasts to shape.
func BroadcastTo(a *Array, shape ...int64) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int {
		return C.ingot_broadcast_to(a.handle(), cInt64s(shape), C.int(len(shape)), o)
	})
}

// Concatenate joins arrays along axis.
func Concatenate(arrays []*Array, axis int) (*Array, error) {
	hs := handles(arrays)
	return newArray(func(o *C.ingot_array) C.int {
		return C.ingot_concatenate(cArrays(hs), C.size_t(len(hs)), C.int(axis), o)
	})
}

// Stack joins arrays along a new axis.
func Stack(arrays []*Array, axis int) (*Array, error) {
	hs := handles(arrays)
	return newArray(func(o *C.ingot_array) C.int {
		return C.ingot_stack(cArrays(hs), C.size_t(len(hs)), C.int(axis), o)
	})
}

// Slice is a[start:stop:strides] over all axes (strides nil: 1).
func Slice(a *Array, start, stop, strides []int64) (*Array, error) {
	if len(start) != len(stop) || (strides != nil && len(strides) != len(start)) {
		return nil, &Error{Code: StatusInvalidArgument, Message: "[ingot] Slice: start, stop and strides differ in length"}
	}
	return newArray(func(o *C.ingot_array) C.int {
		return C.ingot_slice(a.handle(), cInt64s(start), cInt64s(stop), cInt64s(strides), C.int(len(start)), o)
	})
}

// SliceUpdate is a copy of a with a[start:stop:strides] replaced by update.
func SliceUpdate(a, update *Array, start, stop, strides []int64) (*Array, error) {
	if len(start) != len(stop) || (strides != nil && len(strides) != len(start)) {
		return nil, &Error{Code: StatusInvalidArgument, Message: "[ingot] SliceUpdate: start, stop and strides differ in length"}
	}
	return newArray(func(o *C.ingot_array) C.int {
		return C.ingot_slice_update(a.handle(), update.handle(), cInt64s(start), cInt64s(stop), cInt64s(strides), C.int(len(start)), o)
	})
}

// Take gathers elements at indices along axis.
func Take(a, indices *Array, axis int) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_take(a.handle(), indices.handle(), C.int(axis), o) })
}

// TakeAlongAxis is out[..., i, ...] = a[..., indices[..., i, ...], ...].
func TakeAlongAxis(a, indices *Array, axis int) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int {
		return C.ingot_take_along_axis(a.handle(), indices.handle(), C.int(axis), o)
	})
}

// PutAlongAxis is a copy of a with values written at indices along axis.
func PutAlongAxis(a, indices, values *Array, axis int) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int {
		return C.ingot_put_along_axis(a.handle(), indices.handle(), values.handle(), C.int(axis), o)
	})
}

// RandomKey is a key from a seed.
func RandomKey(seed uint64) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_random_key(C.uint64_t(seed), o) })
}

// RandomSplit derives num keys from key.
func RandomSplit(key *Array, num int) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int { return C.ingot_random_split(key.handle(), C.int(num), o) })
}

// RandomSeed seeds the global key used when key is nil.
func RandomSeed(seed uint64) error {
	return call(func() C.int { return C.ingot_random_seed(C.uint64_t(seed)) })
}

// RandomNormal samples N(loc, scale^2); key may be nil.
func RandomNormal(shape []int64, dt Dtype, loc, scale float64, key *Array) (*Array, error) {
	if err := checkOptional(key); err != nil {
		return nil, err
	}
	return newArray(func(o *C.ingot_array) C.int {
		return C.ingot_random_normal(cInt64s(shape), C.int(len(shape)), C.int(dt), C.double(loc), C.double(scale), key.handle(), o)
	})
}

// RandomUniform samples U[low, high); key may be nil.
func RandomUniform(shape []int64, dt Dtype, low, high float64, key *Array) (*Array, error) {
	if err := checkOptional(key); err != nil {
		return nil, err
	}
	return newArray(func(o *C.ingot_array) C.int {
		return C.ingot_random_uniform(cInt64s(shape), C.int(len(shape)), C.int(dt), C.double(low), C.double(high), key.handle(), o)
	})
}

// RMSNorm over the last axis; weight may be nil.
func RMSNorm(x, weight *Array, eps float32) (*Array, error) {
	if err := checkOptional(weight); err != nil {
		return nil, err
	}
	return newArray(func(o *C.ingot_array) C.int {
		return C.ingot_fast_rms_norm(x.handle(), weight.handle(), C.float(eps), o)
	})
}

// LayerNorm over the last axis; weight and bias may be nil.
func LayerNorm(x, weight, bias *Array, eps float32) (*Array, error) {
	if err := checkOptional(weight, bias); err != nil {
		return nil, err
	}
	return newArray(func(o *C.ingot_array) C.int {
		return C.ingot_fast_layer_norm(x.handle(), weight.handle(), bias.handle(), C.float(eps), o)
	})
}

// RoPE applies rotary embeddings to the first dims features of x [..., L, D].
func RoPE(x *Array, dims int, traditional bool, base, scale float32, offset int64) (*Array, error) {
	return newArray(func(o *C.ingot_array) C.int {
		return C.ingot_fast_rope(x.handle(), C.int(dims), cBool(traditional), C.float(base), C.float(scale), C.int64_t(offset), o)
	})
}

// SDPA is softmax(q k^T * scale [+ mask]) v; mask may be nil.
func SDPA(q, k, v *Array, scale float32, causal bool, mask *Array) (*Array, error) {
	if err := checkOptional(mask); err != nil {
		return nil, err
	}
	return newArray(func(o *C.ingot_array) C.int {
		return C.ingot_fast_sdpa(q.handle(), k.handle(), v.handle(), C.float(scale), cBool(causal), mask.handle(), o)
	})
}

// checkOptional rejects freed arrays given for optional inputs (nil means "none"; a freed array
// would otherwise reach C as NULL and silently mean "none" too).
func checkOptional(arrays ...*Array) error {
	for _, a := range arrays {
		if a != nil && a.h == nil {
			return &Error{Code: StatusInvalidArgument, Message: "[ingot] a freed array given for an optional input"}
		}
	}
	return nil
}
