// Package capi is the plumbing shared by the ingot packages (the root package and model,
// tokenizer, sample): the error type, the call wrapper that reads ingot's thread-local error,
// the leak counter, and hooks through which a subpackage wraps or unwraps another package's
// handles without exporting C handles in the public API. It is internal: users import
// "ingot", "ingot/model", "ingot/tokenizer" and "ingot/sample".
package capi

/*
#cgo LDFLAGS: -lingot
#include <stdlib.h>
#include "ingot/ingot.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Status is the code every C call returns (re-exported as ingot.Status).
type Status int

// Error is a failed call (re-exported as ingot.Error).
type Error struct {
	Code    Status
	Message string
}

func (e *Error) Error() string { return e.Message }

// Is matches errors by code, so errors.Is(err, ingot.ErrInvalidArgument) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// CInt is the C int type of any package's cgo (each package has its own C.int).
type CInt interface{ ~int32 }

// Call runs one C call and reads the thread-local error on the same OS thread.
func Call[T CInt](f func() T) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rc := f()
	if rc == 0 {
		return nil
	}
	msg := C.GoString(C.ingot_last_error())
	if msg == "" {
		msg = fmt.Sprintf("[ingot] call failed with status %s", C.GoString(C.ingot_status_name(C.int(rc))))
	}
	return &Error{Code: Status(rc), Message: msg}
}

var leaked int64

// Leaked counts handles the finalizer safety net had to free.
func Leaked() int64 { return atomic.LoadInt64(&leaked) }

// NoteLeak records one handle freed by a finalizer.
func NoteLeak() { atomic.AddInt64(&leaked, 1) }

// TakeString copies a string the library allocated and frees it with ingot_free.
func TakeString(p unsafe.Pointer) string {
	defer C.ingot_free(p)
	return C.GoString((*C.char)(p))
}

// TakeIDs copies n int32 ids the library allocated and frees them with ingot_free.
func TakeIDs(p unsafe.Pointer, n int) []int32 {
	defer C.ingot_free(p)
	out := make([]int32, n)
	if n > 0 {
		copy(out, unsafe.Slice((*int32)(p), n))
	}
	return out
}

// Handle hooks, set by the package that owns each type in its init. A package that needs them
// imports the owner, so the hook is set before any use.
var (
	// ArrayHandle returns the C ingot_array of an *ingot.Array (nil for nil or freed).
	ArrayHandle func(a any) unsafe.Pointer
	// WrapArray takes ownership of a C ingot_array and returns an *ingot.Array.
	WrapArray func(h unsafe.Pointer) any
	// AdapterHandle returns the C ingot_adapter of an *ingot.Adapter (nil for nil or closed).
	AdapterHandle func(a any) unsafe.Pointer
	// WrapAdapter takes ownership of a C ingot_adapter and returns an *ingot.Adapter.
	WrapAdapter func(h unsafe.Pointer) any
	// WrapTokenizer takes ownership of a C ingot_tokenizer and returns a *tokenizer.Tokenizer.
	WrapTokenizer func(h unsafe.Pointer) any
)
