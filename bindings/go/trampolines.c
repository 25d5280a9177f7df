// C side of the Go callbacks of the root package: boxes Go handles into C memory and forwards
// the C API's closure callback to an exported Go function. (ingot/model has its own file for
// the generation and training callbacks.)
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

void ingot_go_release_tramp(void* ctx, void* data) {
  (void)data;
  goReleaseCall(*(uintptr_t*)ctx);
  ingot_go_box_free(ctx);
}
