// C side of the Go callbacks: boxes Go handles into C memory and forwards the C API's callbacks
// to exported Go functions.
#include <stdlib.h>

#include "_cgo_export.h"
#include "ingot/ingot.h"

void* ingot_go_box(uintptr_t h) {
  uintptr_t* p = malloc(sizeof *p);
  if (p) *p = h;
  return p;
}

uintptr_t ingot_go_unbox(void* p) {
  return *(uintptr_t*)p;
}

void ingot_go_box_free(void* p) {
  if (!p) return;
  goDeleteHandle(*(uintptr_t*)p);
  free(p);
}

int ingot_go_closure_tramp(void* ctx, const ingot_array* in, size_t n, ingot_array_list out) {
  return goClosureCall(*(uintptr_t*)ctx, (ingot_array*)in, n, out);
}

int ingot_go_token_tramp(void* ctx, int row, int32_t id) {
  return goTokenCall(*(uintptr_t*)ctx, row, id);
}

void ingot_go_text_tramp(void* ctx, const char* piece, size_t len) {
  goTextCall(*(uintptr_t*)ctx, (char*)piece, len);
}

int ingot_go_train_tramp(void* ctx, const ingot_train_progress* p) {
  return goTrainCall(*(uintptr_t*)ctx, (ingot_train_progress*)p);
}
