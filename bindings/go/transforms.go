package ingot

/*
#include <stdlib.h>
#include "ingot/ingot.h"
void* ingot_go_box(uintptr_t h);
void ingot_go_box_free(void* p);
int ingot_go_closure_tramp(void* ctx, const ingot_array* in, size_t n, ingot_array_list out);
*/
import "C"

import (
	"fmt"
	"runtime"
	"runtime/cgo"
	"unsafe"
)

// Func is a function of arrays. Inputs are borrowed (do not Free them); returned arrays are
// handed to ingot, which takes its own references, and are freed by the binding afterwards.
type Func func(inputs []*Array) ([]*Array, error)

// Closure is a function handle ingot can call and transform. Free it when done.
type Closure struct {
	h C.ingot_closure
}

//export goDeleteHandle
func goDeleteHandle(h C.uintptr_t) { cgo.Handle(h).Delete() }

//export goClosureCall
func goClosureCall(h C.uintptr_t, in *C.ingot_array, n C.size_t, out C.ingot_array_list) (rc C.int) {
	fn := cgo.Handle(h).Value().(Func)
	defer func() {
		if r := recover(); r != nil {
			setError(fmt.Sprintf("[go] function panicked: %v", r))
			rc = 1
		}
	}()
	inputs := make([]*Array, int(n))
	if n > 0 {
		hs := unsafe.Slice(in, int(n))
		for i := range inputs {
			inputs[i] = &Array{h: hs[i], borrowed: true} // no finalizer; Free is a no-op
		}
	}
	outs, err := fn(inputs)
	defer FreeAll(outs...)
	if err != nil {
		setError(err.Error())
		return 1
	}
	for _, o := range outs {
		if C.ingot_array_list_push(out, o.handle()) != 0 {
			return 1
		}
	}
	return 0
}

func setError(msg string) {
	cs := C.CString(msg)
	C.ingot_set_error(cs)
	C.free(unsafe.Pointer(cs))
}

// NewClosure wraps a Go function.
func NewClosure(fn Func) (*Closure, error) {
	box := C.ingot_go_box(C.uintptr_t(cgo.NewHandle(fn)))
	var h C.ingot_closure
	err := call(func() C.int {
		return C.ingot_closure_new((C.ingot_fn)(C.ingot_go_closure_tramp), box, (*[0]byte)(C.ingot_go_box_free), &h)
	})
	if err != nil {
		C.ingot_go_box_free(box)
		return nil, err
	}
	return wrapClosure(h), nil
}

func wrapClosure(h C.ingot_closure) *Closure {
	c := &Closure{h: h}
	runtime.SetFinalizer(c, func(c *Closure) {
		if c.h != nil {
			noteLeak()
			C.ingot_closure_free(c.h)
		}
	})
	return c
}

// Free releases the closure (and, with the last one using it, the Go function).
func (c *Closure) Free() {
	if c == nil || c.h == nil {
		return
	}
	C.ingot_closure_free(c.h)
	c.h = nil
	runtime.SetFinalizer(c, nil)
}

func (c *Closure) handle() C.ingot_closure {
	if c == nil {
		return nil
	}
	return c.h
}

// Apply calls the closure.
func (c *Closure) Apply(inputs ...*Array) ([]*Array, error) {
	l, err := newList()
	if err != nil {
		return nil, err
	}
	hs := handles(inputs)
	if err := call(func() C.int { return C.ingot_closure_apply(c.handle(), cArrays(hs), C.size_t(len(hs)), l) }); err != nil {
		C.ingot_array_list_free(l)
		return nil, err
	}
	return takeList(l)
}

// two runs a C transform that fills two lists.
func two(f func(a, b C.ingot_array_list) C.int) ([]*Array, []*Array, error) {
	l1, err := newList()
	if err != nil {
		return nil, nil, err
	}
	l2, err := newList()
	if err != nil {
		C.ingot_array_list_free(l1)
		return nil, nil, err
	}
	if err := call(func() C.int { return f(l1, l2) }); err != nil {
		C.ingot_array_list_free(l1)
		C.ingot_array_list_free(l2)
		return nil, nil, err
	}
	a, err1 := takeList(l1)
	b, err2 := takeList(l2)
	if err1 != nil || err2 != nil {
		FreeAll(a...)
		FreeAll(b...)
		if err1 != nil {
			return nil, nil, err1
		}
		return nil, nil, err2
	}
	return a, b, nil
}

// VJP returns f(primals) and the cotangents of the primals given the outputs' cotangents.
func VJP(f *Closure, primals, cotangents []*Array) (outputs, grads []*Array, err error) {
	p, c := handles(primals), handles(cotangents)
	return two(func(a, b C.ingot_array_list) C.int {
		return C.ingot_vjp(f.handle(), cArrays(p), C.size_t(len(p)), cArrays(c), C.size_t(len(c)), a, b)
	})
}

// JVP returns f(primals) and their tangents given the primals' tangents.
func JVP(f *Closure, primals, tangents []*Array) (outputs, tangentsOut []*Array, err error) {
	p, t := handles(primals), handles(tangents)
	return two(func(a, b C.ingot_array_list) C.int {
		return C.ingot_jvp(f.handle(), cArrays(p), C.size_t(len(p)), cArrays(t), C.size_t(len(t)), a, b)
	})
}

// ValueAndGrad returns f(inputs) and the gradients of its first (scalar) output with respect
// to inputs[argnums...] (none: input 0).
func ValueAndGrad(f *Closure, inputs []*Array, argnums ...int) (outputs, grads []*Array, err error) {
	in := handles(inputs)
	an, nan := cInts(argnums)
	return two(func(a, b C.ingot_array_list) C.int {
		return C.ingot_value_and_grad(f.handle(), cArrays(in), C.size_t(len(in)), an, C.size_t(nan), a, b)
	})
}

// Checkpoint returns f recomputing its forward graph in the backward pass.
func Checkpoint(f *Closure) (*Closure, error) {
	var h C.ingot_closure
	if err := call(func() C.int { return C.ingot_checkpoint(f.handle(), &h) }); err != nil {
		return nil, err
	}
	return wrapClosure(h), nil
}

// Compile returns f traced and optimised once per input signature (f must be pure).
func Compile(f *Closure, shapeless bool) (*Closure, error) {
	var h C.ingot_closure
	if err := call(func() C.int { return C.ingot_compile(f.handle(), cBool(shapeless), &h) }); err != nil {
		return nil, err
	}
	return wrapClosure(h), nil
}
