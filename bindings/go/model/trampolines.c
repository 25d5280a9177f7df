// C side of ingot/model's callbacks: forwards the C API's token, text and training callbacks
// to exported Go functions. ctx points at a C-allocated uintptr_t holding a cgo.Handle.
#include <stdint.h>

#include "_cgo_export.h"
#include "ingot/ingot.h"

int ingot_go_model_token_tramp(void* ctx, int row, int32_t id) {
  return goModelTokenCall(*(uintptr_t*)ctx, row, id);
}

void ingot_go_model_text_tramp(void* ctx, const char* piece, size_t len) {
  goModelTextCall(*(uintptr_t*)ctx, (char*)piece, len);
}

int ingot_go_model_train_tramp(void* ctx, const ingot_train_progress* p) {
  return goModelTrainCall(*(uintptr_t*)ctx, (ingot_train_progress*)p);
}
