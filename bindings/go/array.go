package ingot

/*
#include <stdlib.h>
#include "ingot/ingot.h"
void* ingot_go_box(uintptr_t h);
void ingot_go_box_free(void* p);
void ingot_go_release_tramp(void* ctx, void* data);
*/
import "C"

import (
	"fmt"
	"runtime"
	"runtime/cgo"
	"unsafe"
)

// Array is a lazily evaluated n-dimensional array. Free releases it; arrays are never freed
// implicitly except by the leak safety net.
type Array struct {
	h        C.ingot_array
	borrowed bool // a callback's input: owned by ingot, Free is a no-op
}

func wrap(h C.ingot_array) *Array {
	a := &Array{h: h}
	runtime.SetFinalizer(a, func(a *Array) {
		if a.h != nil {
			noteLeak()
			C.ingot_array_free(a.h)
			a.h = nil
		}
	})
	return a
}

// newArray runs a C call producing one array.
func newArray(f func(out *C.ingot_array) C.int) (*Array, error) {
	var out C.ingot_array
	if err := call(func() C.int { return f(&out) }); err != nil {
		return nil, err
	}
	return wrap(out), nil
}

// Free releases the array now (safe to call twice and on nil).
func (a *Array) Free() {
	if a == nil || a.h == nil || a.borrowed {
		return
	}
	C.ingot_array_free(a.h)
	a.h = nil
	runtime.SetFinalizer(a, nil)
}

// handle returns the C handle (NULL for nil or freed arrays, which the C side rejects).
func (a *Array) handle() C.ingot_array {
	if a == nil {
		return nil
	}
	return a.h
}

// FreeAll frees several arrays.
func FreeAll(arrays ...*Array) {
	for _, a := range arrays {
		a.Free()
	}
}

func cShape(shape []int64) (*C.int64_t, C.int) {
	if len(shape) == 0 {
		return nil, 0
	}
	return (*C.int64_t)(unsafe.Pointer(&shape[0])), C.int(len(shape))
}

func checkCount(n int, shape []int64) error {
	want := int64(1)
	for _, d := range shape {
		want *= d
	}
	if int64(n) != want {
		return &Error{Code: StatusInvalidArgument, Message: fmt.Sprintf("[ingot] %d values for shape %v", n, shape)}
	}
	return nil
}

func fromSlice(p unsafe.Pointer, n int, shape []int64, dt Dtype) (*Array, error) {
	if err := checkCount(n, shape); err != nil {
		return nil, err
	}
	cs, nd := cShape(shape)
	return newArray(func(out *C.ingot_array) C.int {
		return C.ingot_array_from_data(p, cs, nd, C.int(dt), out)
	})
}

// FromFloat32 copies values into a float32 array of the given shape.
func FromFloat32(v []float32, shape ...int64) (*Array, error) {
	var p unsafe.Pointer
	if len(v) > 0 {
		p = unsafe.Pointer(&v[0])
	}
	return fromSlice(p, len(v), shape, Float32)
}

// FromFloat64 copies values into a float64 array.
func FromFloat64(v []float64, shape ...int64) (*Array, error) {
	var p unsafe.Pointer
	if len(v) > 0 {
		p = unsafe.Pointer(&v[0])
	}
	return fromSlice(p, len(v), shape, Float64)
}

// FromInt32 copies values into an int32 array.
func FromInt32(v []int32, shape ...int64) (*Array, error) {
	var p unsafe.Pointer
	if len(v) > 0 {
		p = unsafe.Pointer(&v[0])
	}
	return fromSlice(p, len(v), shape, Int32)
}

// FromInt64 copies values into an int64 array.
func FromInt64(v []int64, shape ...int64) (*Array, error) {
	var p unsafe.Pointer
	if len(v) > 0 {
		p = unsafe.Pointer(&v[0])
	}
	return fromSlice(p, len(v), shape, Int64)
}

// FromCMemory makes an array over memory that is not Go's (C.malloc, mmap, another C library's
// buffer), without a copy: row-major values of dtype dt, aligned for it. The memory must stay
// valid and unchanged until release runs: once, when the last array using it is gone (after
// Free of this array and of every array computed from it), maybe on another thread; release may
// be nil. Go memory (slices, new) must not be passed: cgo forbids C keeping Go pointers. On
// error release is not called and the memory stays the caller's.
func FromCMemory(data unsafe.Pointer, dt Dtype, release func(), shape ...int64) (*Array, error) {
	var fn C.ingot_release_fn
	var ctx unsafe.Pointer
	if release != nil {
		ctx = C.ingot_go_box(C.uintptr_t(cgo.NewHandle(release)))
		if ctx == nil {
			return nil, &Error{Code: StatusOutOfMemory, Message: "[ingot] FromCMemory: out of memory"}
		}
		fn = C.ingot_release_fn(C.ingot_go_release_tramp)
	}
	cs, nd := cShape(shape)
	a, err := newArray(func(out *C.ingot_array) C.int {
		return C.ingot_array_from_data_nocopy(data, cs, nd, C.int(dt), fn, ctx, out)
	})
	if err != nil && ctx != nil {
		C.ingot_go_box_free(ctx) // the C side took no ownership
	}
	return a, err
}

//export goReleaseCall
func goReleaseCall(h C.uintptr_t) { cgo.Handle(h).Value().(func())() }

// Scalar is a 0-d array of a value converted to dtype.
func Scalar(v float64, dt Dtype) (*Array, error) {
	return newArray(func(out *C.ingot_array) C.int { return C.ingot_array_from_double(C.double(v), C.int(dt), out) })
}

// Zeros is an array of zeros.
func Zeros(dt Dtype, shape ...int64) (*Array, error) {
	cs, nd := cShape(shape)
	return newArray(func(out *C.ingot_array) C.int { return C.ingot_zeros(cs, nd, C.int(dt), out) })
}

// Ones is an array of ones.
func Ones(dt Dtype, shape ...int64) (*Array, error) {
	cs, nd := cShape(shape)
	return newArray(func(out *C.ingot_array) C.int { return C.ingot_ones(cs, nd, C.int(dt), out) })
}

// Full is an array filled with v.
func Full(v float64, dt Dtype, shape ...int64) (*Array, error) {
	cs, nd := cShape(shape)
	return newArray(func(out *C.ingot_array) C.int { return C.ingot_full(cs, nd, C.double(v), C.int(dt), out) })
}

// Arange is start, start+step, ... below stop.
func Arange(start, stop, step float64, dt Dtype) (*Array, error) {
	return newArray(func(out *C.ingot_array) C.int {
		return C.ingot_arange(C.double(start), C.double(stop), C.double(step), C.int(dt), out)
	})
}

// Shape is the array's dimensions (nil for a freed array).
func (a *Array) Shape() []int64 {
	var nd C.int
	if call(func() C.int { return C.ingot_array_shape(a.handle(), nil, 0, &nd) }) != nil {
		return nil
	}
	s := make([]int64, int(nd))
	if nd > 0 {
		call(func() C.int { return C.ingot_array_shape(a.handle(), (*C.int64_t)(unsafe.Pointer(&s[0])), nd, nil) })
	}
	return s
}

// Ndim is the number of dimensions.
func (a *Array) Ndim() int { return len(a.Shape()) }

// Size is the number of elements (0 for a freed array).
func (a *Array) Size() int64 {
	var n C.int64_t
	call(func() C.int { return C.ingot_array_size(a.handle(), &n) })
	return int64(n)
}

// Dim is the size of one axis (negative axes count from the end).
func (a *Array) Dim(axis int) (int64, error) {
	var n C.int64_t
	err := call(func() C.int { return C.ingot_array_dim(a.handle(), C.int(axis), &n) })
	return int64(n), err
}

// NBytes is the size of the elements in bytes (0 for a freed array).
func (a *Array) NBytes() int64 {
	var n C.size_t
	call(func() C.int { return C.ingot_array_nbytes(a.handle(), &n) })
	return int64(n)
}

// Retain is a new handle to the same array, freed independently (e.g. to keep a callback's
// borrowed input beyond the callback).
func (a *Array) Retain() (*Array, error) {
	return newArray(func(out *C.ingot_array) C.int { return C.ingot_array_retain(a.handle(), out) })
}

// Dtype is the element type (-1 for a freed array).
func (a *Array) Dtype() Dtype {
	d := C.int(-1)
	call(func() C.int { return C.ingot_array_dtype(a.handle(), &d) })
	return Dtype(d)
}

// Device is where the array lives.
func (a *Array) Device() (Device, error) {
	var d C.ingot_device
	err := call(func() C.int { return C.ingot_array_device(a.handle(), &d) })
	return Device{int(d._type), int(d.index)}, err
}

func handles(arrays []*Array) []C.ingot_array {
	hs := make([]C.ingot_array, len(arrays))
	for i, a := range arrays {
		hs[i] = a.handle()
	}
	return hs
}

// cArrays points at a slice of handles (C pointers, so Go memory may hold them for a call).
func cArrays(hs []C.ingot_array) *C.ingot_array {
	if len(hs) == 0 {
		return nil
	}
	return &hs[0]
}

// Eval evaluates arrays and waits for the results.
func Eval(arrays ...*Array) error {
	hs := handles(arrays)
	return call(func() C.int { return C.ingot_eval(cArrays(hs), C.size_t(len(hs))) })
}

// EvalAsync evaluates without waiting for device work.
func EvalAsync(arrays ...*Array) error {
	hs := handles(arrays)
	return call(func() C.int { return C.ingot_eval_async(cArrays(hs), C.size_t(len(hs))) })
}

func (a *Array) read(dt Dtype, p unsafe.Pointer, bytes int) error {
	src := a
	if a.Dtype() != dt {
		c, err := AsType(a, dt)
		if err != nil {
			return err
		}
		defer c.Free()
		src = c
	}
	return call(func() C.int { return C.ingot_array_to_host(src.handle(), p, C.size_t(bytes)) })
}

// Float32s evaluates and returns the elements (converted to float32), row-major.
func (a *Array) Float32s() ([]float32, error) {
	v := make([]float32, a.Size())
	var p unsafe.Pointer
	if len(v) > 0 {
		p = unsafe.Pointer(&v[0])
	}
	return v, a.read(Float32, p, 4*len(v))
}

// Float64s evaluates and returns the elements as float64.
func (a *Array) Float64s() ([]float64, error) {
	v := make([]float64, a.Size())
	var p unsafe.Pointer
	if len(v) > 0 {
		p = unsafe.Pointer(&v[0])
	}
	return v, a.read(Float64, p, 8*len(v))
}

// Int32s evaluates and returns the elements as int32.
func (a *Array) Int32s() ([]int32, error) {
	v := make([]int32, a.Size())
	var p unsafe.Pointer
	if len(v) > 0 {
		p = unsafe.Pointer(&v[0])
	}
	return v, a.read(Int32, p, 4*len(v))
}

// Int64s evaluates and returns the elements as int64.
func (a *Array) Int64s() ([]int64, error) {
	v := make([]int64, a.Size())
	var p unsafe.Pointer
	if len(v) > 0 {
		p = unsafe.Pointer(&v[0])
	}
	return v, a.read(Int64, p, 8*len(v))
}

// Item is the single value of a size-1 array.
func (a *Array) Item() (float64, error) {
	var v C.double
	err := call(func() C.int { return C.ingot_array_item_double(a.handle(), &v) })
	return float64(v), err
}

// ItemInt64 is the single value of a size-1 array as an int64 (exact for 64-bit integers).
func (a *Array) ItemInt64() (int64, error) {
	var v C.int64_t
	err := call(func() C.int { return C.ingot_array_item_int64(a.handle(), &v) })
	return int64(v), err
}

// String shows shape and dtype.
func (a *Array) String() string {
	if a == nil || a.h == nil {
		return "Array(freed)"
	}
	return fmt.Sprintf("Array(%v, %v)", a.Shape(), a.Dtype())
}

// list helpers

func newList() (C.ingot_array_list, error) {
	var l C.ingot_array_list
	err := call(func() C.int { return C.ingot_array_list_new(&l) })
	return l, err
}

// takeList converts a list's entries to Arrays (new handles) and frees the list.
func takeList(l C.ingot_array_list) ([]*Array, error) {
	defer C.ingot_array_list_free(l)
	var n C.size_t
	if err := call(func() C.int { return C.ingot_array_list_size(l, &n) }); err != nil {
		return nil, err
	}
	out := make([]*Array, int(n))
	for i := range out {
		a, err := newArray(func(o *C.ingot_array) C.int { return C.ingot_array_list_get(l, C.size_t(i), o) })
		if err != nil {
			FreeAll(out...)
			return nil, err
		}
		out[i] = a
	}
	return out, nil
}
