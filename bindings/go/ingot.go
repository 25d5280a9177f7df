// Package ingot is the Go binding of ingot's C ABI (include/ingot/ingot.h), laid out as go-mlx
// users know it: this root package holds lazy arrays and ops, transforms over Go functions
// (grad), AdamW (optim), safetensors (io) and LoRA adapters (lora); the LLM level lives in
// subpackages that import this one (never the other way round):
//
//   - ingot/model: load and close models, generate, batch generate, score, classify, embed,
//     metrics, and the model-bound LoRA operations (new/load/apply/fuse adapters, train, save)
//   - ingot/tokenizer: tokenizers (encode, decode, streaming decode, chat template)
//   - ingot/sample: the sampling and stopping options of generation
//   - ingot/cache: prompt caches (the keys and values of a shared prompt prefix, prefilled once)
//
// Memory is deterministic: every handle (Array, Model, Tokenizer, ...) has Free or Close, which
// releases it at once. A finalizer only catches handles that were never freed, frees them and
// counts them (LeakedHandles), as a safety net, never as the memory strategy.
package ingot

/*
#cgo LDFLAGS: -lingot
#include <stdlib.h>
#include "ingot/ingot.h"
*/
import "C"

import (
	"fmt"
	"unsafe"

	"ingot/internal/capi"
)

// ABIVersion is the C ABI version these bindings were written for.
const ABIVersion = 1

// Status is the code every C call returns.
type Status = capi.Status

// Status codes (ingot_status).
const (
	StatusOK              Status = 0
	StatusInvalidArgument Status = 1
	StatusIO              Status = 2
	StatusFormat          Status = 3
	StatusOutOfMemory     Status = 4
	StatusUnsupported     Status = 5
	StatusDevice          Status = 6
	StatusCallback        Status = 7
	StatusInternal        Status = 8
)

// Error is a failed call: its status and ingot's message ("[component] ..."). errors.Is(err,
// ingot.ErrInvalidArgument) matches by code.
type Error = capi.Error

// Sentinels for errors.Is.
var (
	ErrInvalidArgument = &Error{Code: StatusInvalidArgument}
	ErrIO              = &Error{Code: StatusIO}
	ErrFormat          = &Error{Code: StatusFormat}
	ErrOutOfMemory     = &Error{Code: StatusOutOfMemory}
	ErrUnsupported     = &Error{Code: StatusUnsupported}
	ErrDevice          = &Error{Code: StatusDevice}
	ErrCallback        = &Error{Code: StatusCallback}
	ErrInternal        = &Error{Code: StatusInternal}
)

// call runs one C call and reads the thread-local error on the same OS thread.
func call(f func() C.int) error { return capi.Call(f) }

// Version is the library's version string.
func Version() string { return C.GoString(C.ingot_version()) }

// LibraryABIVersion is the ABI version of the loaded libingot.so.
func LibraryABIVersion() int { return int(C.ingot_abi_version()) }

// LeakedHandles counts handles the garbage collector found unfreed (and freed): a nonzero value
// means a missing Free/Close.
func LeakedHandles() int64 { return capi.Leaked() }

func noteLeak() { capi.NoteLeak() }

// Dtype is an element type.
type Dtype int

// Dtypes (ingot_dtype).
const (
	Bool Dtype = iota
	Uint8
	Int8
	Int32
	Uint32
	Int64
	Float16
	BFloat16
	Float32
	Float64
)

func (d Dtype) String() string { return C.GoString(C.ingot_dtype_name(C.int(d))) }

// Size is the number of bytes per element.
func (d Dtype) Size() int { return int(C.ingot_dtype_size(C.int(d))) }

// Device is where arrays live and ops run.
type Device struct {
	Type  int // 0 CPU, 1 CUDA
	Index int
}

// CPU is the host device.
var CPU = Device{0, 0}

// CUDA returns the CUDA device i.
func CUDA(i int) Device { return Device{1, i} }

func (d Device) c() C.ingot_device {
	return C.ingot_device{_type: C.int(d.Type), index: C.int(d.Index)}
}

func (d Device) String() string {
	if d.Type == 0 {
		return "cpu"
	}
	return fmt.Sprintf("cuda:%d", d.Index)
}

// ParseDevice parses "cpu", "cuda", "cuda:N", "gpu".
func ParseDevice(s string) (Device, error) {
	cs := C.CString(s)
	defer C.free(unsafe.Pointer(cs))
	var d C.ingot_device
	err := call(func() C.int { return C.ingot_device_parse(cs, &d) })
	return Device{int(d._type), int(d.index)}, err
}

// DeviceCount is the number of devices of a type (0 CPU, 1 CUDA).
func DeviceCount(typ int) (int, error) {
	var n C.int
	err := call(func() C.int { return C.ingot_device_count(C.int(typ), &n) })
	return int(n), err
}

// DefaultDevice is where ops run when their inputs do not say.
func DefaultDevice() (Device, error) {
	var d C.ingot_device
	err := call(func() C.int { return C.ingot_default_device(&d) })
	return Device{int(d._type), int(d.index)}, err
}

// SetDefaultDevice changes the default device.
func SetDefaultDevice(d Device) error {
	return call(func() C.int { return C.ingot_set_default_device(d.c()) })
}

// Synchronize waits for queued work on a device.
func Synchronize(d Device) error {
	return call(func() C.int { return C.ingot_synchronize(d.c()) })
}

// MemoryStats are a device allocator's figures in bytes.
type MemoryStats struct{ Active, Peak, Cache uint64 }

// GetMemoryStats reads a device's allocator figures.
func GetMemoryStats(d Device) (MemoryStats, error) {
	var s C.ingot_memory_stats
	err := call(func() C.int { return C.ingot_memory_get_stats(d.c(), &s) })
	return MemoryStats{uint64(s.active), uint64(s.peak), uint64(s.cache)}, err
}

// SetMemoryLimit caps active memory (0 = none) and returns the previous limit.
func SetMemoryLimit(d Device, bytes uint64) (uint64, error) {
	var p C.size_t
	err := call(func() C.int { return C.ingot_memory_set_limit(d.c(), C.size_t(bytes), &p) })
	return uint64(p), err
}

// SetCacheLimit caps the allocator cache and returns the previous limit.
func SetCacheLimit(d Device, bytes uint64) (uint64, error) {
	var p C.size_t
	err := call(func() C.int { return C.ingot_memory_set_cache_limit(d.c(), C.size_t(bytes), &p) })
	return uint64(p), err
}

// ClearCache releases a device's cached blocks.
func ClearCache(d Device) error {
	return call(func() C.int { return C.ingot_memory_clear_cache(d.c()) })
}

// ResetPeakMemory restarts the peak figure.
func ResetPeakMemory(d Device) error {
	return call(func() C.int { return C.ingot_memory_reset_peak(d.c()) })
}
