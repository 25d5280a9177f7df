package ingot

/*
#include <stdlib.h>
#include "ingot/ingot.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

func toNamed(m map[string]*Array) (C.ingot_named_arrays, error) {
	var h C.ingot_named_arrays
	if err := call(func() C.int { return C.ingot_named_arrays_new(&h) }); err != nil {
		return nil, err
	}
	for k, v := range m {
		ck := C.CString(k)
		err := call(func() C.int { return C.ingot_named_arrays_set(h, ck, v.handle()) })
		C.free(unsafe.Pointer(ck))
		if err != nil {
			C.ingot_named_arrays_free(h)
			return nil, err
		}
	}
	return h, nil
}

// fromNamed converts and frees a named-arrays handle.
func fromNamed(h C.ingot_named_arrays) (map[string]*Array, error) {
	defer C.ingot_named_arrays_free(h)
	var n C.size_t
	if err := call(func() C.int { return C.ingot_named_arrays_size(h, &n) }); err != nil {
		return nil, err
	}
	out := make(map[string]*Array, int(n))
	for i := 0; i < int(n); i++ {
		var name *C.char
		if err := call(func() C.int { return C.ingot_named_arrays_name(h, C.size_t(i), &name) }); err != nil {
			FreeMap(out)
			return nil, err
		}
		a, err := newArray(func(o *C.ingot_array) C.int { return C.ingot_named_arrays_get(h, name, o) })
		if err != nil {
			FreeMap(out)
			return nil, err
		}
		out[C.GoString(name)] = a
	}
	return out, nil
}

// FreeMap frees every array of a map.
func FreeMap(m map[string]*Array) {
	for _, a := range m {
		a.Free()
	}
}

// LoadSafetensors reads every tensor of a file (memory-mapped; zero-copy where possible).
func LoadSafetensors(path string) (map[string]*Array, error) {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	var h C.ingot_named_arrays
	if err := call(func() C.int { return C.ingot_safetensors_load(cp, &h) }); err != nil {
		return nil, err
	}
	return fromNamed(h)
}

// SaveSafetensors writes arrays to path.
func SaveSafetensors(path string, arrays map[string]*Array) error {
	h, err := toNamed(arrays)
	if err != nil {
		return err
	}
	defer C.ingot_named_arrays_free(h)
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	return call(func() C.int { return C.ingot_safetensors_save(cp, h) })
}

// AdamW is the AdamW optimizer (PyTorch semantics) with per-parameter state.
type AdamW struct {
	h C.ingot_optimizer
}

// NewAdamW makes an optimizer with a constant learning rate.
func NewAdamW(lr, beta1, beta2, eps, weightDecay float32) (*AdamW, error) {
	var h C.ingot_optimizer
	err := call(func() C.int {
		return C.ingot_optimizer_adamw(C.float(lr), C.float(beta1), C.float(beta2), C.float(eps), C.float(weightDecay), &h)
	})
	if err != nil {
		return nil, err
	}
	o := &AdamW{h: h}
	runtime.SetFinalizer(o, func(o *AdamW) {
		if o.h != nil {
			noteLeak()
			C.ingot_optimizer_free(o.h)
		}
	})
	return o, nil
}

// Apply returns new parameter values after one step (params are not modified).
func (o *AdamW) Apply(params, grads map[string]*Array) (map[string]*Array, error) {
	p, err := toNamed(params)
	if err != nil {
		return nil, err
	}
	defer C.ingot_named_arrays_free(p)
	g, err := toNamed(grads)
	if err != nil {
		return nil, err
	}
	defer C.ingot_named_arrays_free(g)
	var u C.ingot_named_arrays
	if err := call(func() C.int { return C.ingot_optimizer_apply(o.h, p, g, &u) }); err != nil {
		return nil, err
	}
	return fromNamed(u)
}

// Step is the number of steps taken.
func (o *AdamW) Step() int64 {
	var s C.int64_t
	call(func() C.int { return C.ingot_optimizer_step(o.h, &s) })
	return int64(s)
}

// Free releases the optimizer and its state.
func (o *AdamW) Free() {
	if o == nil || o.h == nil {
		return
	}
	C.ingot_optimizer_free(o.h)
	o.h = nil
	runtime.SetFinalizer(o, nil)
}
