package ingot

/*
#include "ingot/ingot.h"
*/
import "C"

import (
	"unsafe"

	"ingot/internal/capi"
)

// The hooks through which ingot/model reaches the C handles of Array and Adapter (see
// internal/capi); the public API exports no C handles.
func init() {
	capi.ArrayHandle = func(a any) unsafe.Pointer {
		x, _ := a.(*Array)
		return unsafe.Pointer(x.handle())
	}
	capi.WrapArray = func(h unsafe.Pointer) any { return wrap(C.ingot_array(h)) }
	capi.AdapterHandle = func(a any) unsafe.Pointer {
		x, _ := a.(*Adapter)
		return unsafe.Pointer(x.handle())
	}
	capi.WrapAdapter = func(h unsafe.Pointer) any { return wrapAdapter(C.ingot_adapter(h)) }
}
