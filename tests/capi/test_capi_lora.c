/* The LoRA entry points of the C API driven from C (C99): a PEFT-saved adapter loaded with the
 * model, applied, removed and fused gives PEFT's logits (tests/data/lora, written by
 * transformers + peft); the first training step's loss equals the cross-entropy computed here
 * from the base model's logits; training lowers the loss, reports every step to the progress
 * callback and stops when it returns nonzero; a saved adapter reloads to the same factors and
 * logits; a fused and saved checkpoint reloads to the same logits; and the error paths (NULL and
 * foreign handles, bad ranks and targets, missing and corrupt files, malformed JSONL, a memory
 * limit) return their status codes. Exits nonzero on any failure. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ingot/ingot.h"

#define FIXTURES INGOT_SOURCE_DIR "/tests/data/models/"
#define LORA INGOT_SOURCE_DIR "/tests/data/lora/llama_f32"

static char g_tmp[64];

static void path_in_tmp(char* out, size_t cap, const char* name) {
  snprintf(out, cap, "%s/%s", g_tmp, name);
}

static void write_file(const char* path, const char* text) {
  FILE* f = fopen(path, "w");
  CHECK(f != NULL);
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

/* Logits [2, 16, 256] of the PEFT reference ids (reference.json) as float32 host data. */
static const int32_t k_ref_ids[32] = {239, 179, 14,  112, 17,  149, 78, 203, 108, 193, 124,
                                      136, 57,  80,  148, 149, 133, 29, 141, 216, 168, 75,
                                      20,  47,  236, 78,  64,  0,   0,  0,   0,   0};
enum { REF_N = 2 * 16 * 256 };

static int forward_ref(ingot_model m, float* out) {
  const int64_t shape[2] = {2, 16};
  ingot_array ids = NULL, logits = NULL;
  int rc = ingot_array_from_data(k_ref_ids, shape, 2, INGOT_INT32, &ids);
  if (!rc) rc = ingot_model_forward(m, ids, &logits);
  if (!rc) rc = ingot_array_to_host(logits, out, REF_N * sizeof(float));
  ingot_array_free(ids);
  ingot_array_free(logits);
  return rc;
}

/* max |a - b| / max |b| */
static double rel_diff(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = fabs((double)a[i] - (double)b[i]);
    if (d > num) num = d;
    if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
  }
  return den > 0 ? num / den : num;
}

static int peft_logits(const char* key, float* out) {
  ingot_named_arrays m = NULL;
  ingot_array a = NULL;
  int rc = ingot_safetensors_load(LORA "/logits.safetensors", &m);
  if (!rc) rc = ingot_named_arrays_get(m, key, &a);
  if (!rc) rc = ingot_array_to_host(a, out, REF_N * sizeof(float));
  ingot_array_free(a);
  ingot_named_arrays_free(m);
  return rc;
}

/* A PEFT adapter: loaded with the model, loaded and applied, removed, fused, saved. */
static void test_peft_adapter(void) {
  static float want[REF_N], base[REF_N], got[REF_N], fused[REF_N];
  OK(peft_logits("init", want));

  ingot_model_options o = {"cpu", NULL, LORA "/init"};
  ingot_model m = NULL;
  OK(ingot_model_load(FIXTURES "llama_f32", &o, &m));
  if (!m) return;
  OK(forward_ref(m, got));
  CHECK(rel_diff(got, want, REF_N) < 1e-5);
  /* a second adapter on top is refused; saving with an unfused adapter is refused */
  ingot_adapter a = NULL;
  OK(ingot_adapter_load(m, LORA "/init", &a));
  CHECK(ingot_model_apply_adapter(m, a) == INGOT_ERR_INVALID_ARGUMENT);
  char out_dir[128];
  path_in_tmp(out_dir, sizeof out_dir, "refused");
  CHECK(ingot_model_save(m, out_dir, NULL) == INGOT_ERR_INVALID_ARGUMENT);
  CHECK(strstr(ingot_last_error(), "fuse") != NULL);
  /* removed: the base model's logits, which differ from PEFT's adapted ones */
  OK(ingot_model_remove_adapter(m));
  OK(forward_ref(m, base));
  CHECK(rel_diff(base, want, REF_N) > 1e-3);
  /* loaded separately and applied: PEFT's logits again */
  int rank = 0;
  float scale = 0;
  size_t targets = 0;
  int64_t nparams = 0;
  OK(ingot_adapter_rank(a, &rank));
  OK(ingot_adapter_scale(a, &scale));
  OK(ingot_adapter_num_targets(a, &targets));
  OK(ingot_adapter_num_parameters(a, &nparams));
  CHECK(rank == 4 && scale == 2.0f); /* r = 4, alpha = 8 */
  CHECK(targets == 6);               /* q_proj and v_proj of 3 layers */
  /* q_proj: A [4, 64] + B [64, 4]; v_proj: A [4, 64] + B [kv_dim, 4] */
  CHECK(nparams > 0 && nparams % 4 == 0);
  OK(ingot_model_apply_adapter(m, a));
  OK(forward_ref(m, got));
  CHECK(rel_diff(got, want, REF_N) < 1e-5);
  /* fusing another adapter while this one is applied is refused */
  ingot_adapter other = NULL;
  OK(ingot_adapter_new(m, NULL, &other));
  CHECK(ingot_model_fuse_adapter(m, other) == INGOT_ERR_INVALID_ARGUMENT);
  ingot_adapter_free(other);
  /* fused: the same logits (float32 merge), saved and reloaded bit for bit */
  OK(ingot_model_fuse_adapter(m, a));
  OK(forward_ref(m, fused));
  CHECK(rel_diff(fused, want, REF_N) < 1e-5);
  path_in_tmp(out_dir, sizeof out_dir, "fused");
  OK(ingot_model_save(m, out_dir, NULL));
  ingot_model m2 = NULL;
  ingot_model_options o2 = {"cpu", NULL, NULL};
  OK(ingot_model_load(out_dir, &o2, &m2));
  if (m2) {
    OK(forward_ref(m2, got));
    CHECK(memcmp(got, fused, sizeof got) == 0);
    /* an adapter made for one model is refused by another */
    CHECK(ingot_model_apply_adapter(m2, a) == INGOT_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ingot_last_error(), "another model") != NULL);
    CHECK(ingot_model_fuse_adapter(m2, a) == INGOT_ERR_INVALID_ARGUMENT);
  }
  CHECK(ingot_model_save(m, out_dir, "int32") == INGOT_ERR_INVALID_ARGUMENT);
  ingot_model_free(m2);
  ingot_adapter_free(a);
  ingot_model_free(m);
}

static void test_adapter_errors(void) {
  ingot_model m = NULL;
  ingot_model_options o = {"cpu", NULL, NULL};
  OK(ingot_model_load(FIXTURES "llama_f32", &o, &m));
  if (!m) return;
  ingot_adapter a = NULL;
  /* null handles and outputs */
  CHECK(ingot_adapter_new(NULL, NULL, &a) == INGOT_ERR_INVALID_ARGUMENT);
  CHECK(strstr(ingot_last_error(), "null model") != NULL);
  CHECK(ingot_adapter_new(m, NULL, NULL) == INGOT_ERR_INVALID_ARGUMENT);
  CHECK(ingot_model_apply_adapter(m, NULL) == INGOT_ERR_INVALID_ARGUMENT);
  CHECK(ingot_adapter_save(NULL, "/tmp/x") == INGOT_ERR_INVALID_ARGUMENT);
  CHECK(ingot_adapter_free(NULL) == INGOT_OK);
  CHECK(ingot_model_remove_adapter(NULL) == INGOT_ERR_INVALID_ARGUMENT);
  CHECK(ingot_model_remove_adapter(m) == INGOT_OK); /* none applied: fine */
  /* bad configs */
  ingot_lora_config c = ingot_lora_config_default();
  c.rank = 0;
  CHECK(ingot_adapter_new(m, &c, &a) == INGOT_ERR_INVALID_ARGUMENT);
  c = ingot_lora_config_default();
  c.targets = "nope_proj";
  CHECK(ingot_adapter_new(m, &c, &a) == INGOT_ERR_INVALID_ARGUMENT);
  CHECK(strstr(ingot_last_error(), "nope_proj") != NULL);
  c = ingot_lora_config_default();
  c.num_layers = 99;
  CHECK(ingot_adapter_new(m, &c, &a) == INGOT_ERR_INVALID_ARGUMENT);
  CHECK(a == NULL);
  /* files: missing, corrupt tensors, an adapter of another base model (other shapes) */
  CHECK(ingot_adapter_load(m, "/nonexistent-adapter", &a) == INGOT_ERR_IO);
  CHECK(a == NULL);
  ingot_model bad = NULL;
  ingot_model_options ob = {"cpu", NULL, "/nonexistent-adapter"};
  CHECK(ingot_model_load(FIXTURES "llama_f32", &ob, &bad) == INGOT_ERR_IO);
  CHECK(bad == NULL);
  char dir[128], file[160], cfg[2048];
  path_in_tmp(dir, sizeof dir, "corrupt");
  OK(ingot_adapter_new(m, NULL, &a));
  OK(ingot_adapter_save(a, dir));
  ingot_adapter_free(a);
  a = NULL;
  snprintf(file, sizeof file, "%s/adapter_model.safetensors", dir);
  write_file(file, "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": broken   ");
  CHECK(ingot_adapter_load(m, dir, &a) == INGOT_ERR_FORMAT);
  CHECK(a == NULL);
  snprintf(file, sizeof file, "%s/adapter_config.json", dir);
  snprintf(cfg, sizeof cfg, "{\"peft_type\": \"LORA\", \"r\": ");
  write_file(file, cfg);
  CHECK(ingot_adapter_load(m, dir, &a) == INGOT_ERR_FORMAT);
  CHECK(strstr(ingot_last_error(), "adapter_config.json") != NULL);
  CHECK(ingot_adapter_load(m, INGOT_SOURCE_DIR "/tests/data/lora/qwen3_f32_tied/init", &a) ==
        INGOT_ERR_FORMAT);
  CHECK(a == NULL);
  ingot_model_free(m);
}

/* ---------------------------------------------------------------- training */

typedef struct progress_log {
  int calls;
  int stop_after; /* 0: never */
  float losses[64];
  int64_t steps[64];
  int64_t iters;
} progress_log;

static int on_step(void* ctx, const ingot_train_progress* p) {
  progress_log* log = (progress_log*)ctx;
  if (log->calls < 64) {
    log->losses[log->calls] = p->loss;
    log->steps[log->calls] = p->step;
  }
  log->iters = p->iters;
  ++log->calls;
  return log->stop_after > 0 && log->calls >= log->stop_after;
}

static const char* k_text = "the quick brown fox jumps over the lazy dog";

/* Targets of the example (tokens - 1), set by reference_loss. */
static int64_t g_ref_targets = 0;

/* Mean next-token cross-entropy of BOS + encode(text) + EOS under the model, in double. */
static double reference_loss(ingot_model m) {
  ingot_tokenizer t = NULL;
  int32_t *ids = NULL, *eos = NULL;
  size_t n = 0, n_eos = 0;
  double loss = NAN;
  OK(ingot_model_tokenizer(m, &t));
  OK(ingot_tokenizer_encode(t, k_text, 1, &ids, &n));
  OK(ingot_tokenizer_eos_ids(t, &eos, &n_eos));
  int64_t vocab = 0;
  OK(ingot_model_vocab_size(m, &vocab));
  if (ids && eos && n_eos > 0 && n > 1) {
    const size_t L = n + 1;
    int32_t* all = malloc(L * sizeof(int32_t));
    float* logits = malloc(L * (size_t)vocab * sizeof(float));
    memcpy(all, ids, n * sizeof(int32_t));
    all[n] = eos[0];
    const int64_t shape[2] = {1, (int64_t)L};
    ingot_array a = NULL, out = NULL;
    OK(ingot_array_from_data(all, shape, 2, INGOT_INT32, &a));
    OK(ingot_model_forward(m, a, &out));
    OK(ingot_array_to_host(out, logits, L * (size_t)vocab * sizeof(float)));
    double sum = 0;
    for (size_t t_ = 0; t_ + 1 < L; ++t_) {
      const float* row = logits + t_ * (size_t)vocab;
      double mx = row[0], z = 0;
      for (int64_t v = 1; v < vocab; ++v)
        if (row[v] > mx) mx = row[v];
      for (int64_t v = 0; v < vocab; ++v) z += exp((double)row[v] - mx);
      sum += -((double)row[all[t_ + 1]] - mx - log(z));
    }
    loss = sum / (double)(L - 1);
    g_ref_targets = (int64_t)(L - 1);
    ingot_array_free(a);
    ingot_array_free(out);
    free(all);
    free(logits);
  }
  ingot_free(ids);
  ingot_free(eos);
  ingot_tokenizer_free(t);
  return loss;
}

static int params_equal(ingot_adapter x, ingot_adapter y) {
  ingot_named_arrays px = NULL, py = NULL;
  size_t nx = 0, ny = 0;
  int same = 0;
  OK(ingot_adapter_parameters(x, &px));
  OK(ingot_adapter_parameters(y, &py));
  OK(ingot_named_arrays_size(px, &nx));
  OK(ingot_named_arrays_size(py, &ny));
  if (nx == ny && nx > 0) {
    same = 1;
    for (size_t i = 0; i < nx && same; ++i) {
      const char* name = NULL;
      ingot_array a = NULL, b = NULL;
      size_t na = 0, nb = 0;
      OK(ingot_named_arrays_name(px, i, &name));
      OK(ingot_named_arrays_get(px, name, &a));
      if (ingot_named_arrays_get(py, name, &b) != INGOT_OK) {
        same = 0;
      } else {
        OK(ingot_array_nbytes(a, &na));
        OK(ingot_array_nbytes(b, &nb));
        float* va = malloc(na);
        float* vb = malloc(nb);
        same = na == nb && ingot_array_to_host(a, va, na) == INGOT_OK &&
               ingot_array_to_host(b, vb, nb) == INGOT_OK && memcmp(va, vb, na) == 0;
        free(va);
        free(vb);
      }
      ingot_array_free(a);
      ingot_array_free(b);
    }
  }
  ingot_named_arrays_free(px);
  ingot_named_arrays_free(py);
  return same;
}

static void test_train(void) {
  ingot_model m = NULL;
  ingot_model_options o = {"cpu", "float32", NULL};
  OK(ingot_model_load(FIXTURES "llama_bf16_tied", &o, &m));
  if (!m) return;
  char data[128], adapter_dir[128];
  path_in_tmp(data, sizeof data, "train.jsonl");
  path_in_tmp(adapter_dir, sizeof adapter_dir, "trained");
  char line[256];
  snprintf(line, sizeof line, "{\"text\": \"%s\"}\n", k_text);
  write_file(data, line);
  const double want0 = reference_loss(m);

  ingot_lora_config c = ingot_lora_config_default();
  c.rank = 4;
  c.targets = "q_proj, v_proj";
  c.seed = 3;
  ingot_adapter a = NULL, fresh = NULL;
  OK(ingot_adapter_new(m, &c, &a));
  OK(ingot_adapter_new(m, &c, &fresh));
  if (!a || !fresh) {
    ingot_model_free(m);
    return;
  }
  ingot_train_options to = ingot_train_options_default();
  to.iters = 12;
  to.batch_size = 1;
  to.learning_rate = 1e-2f;
  to.schedule = "constant";
  to.out_dir = adapter_dir;
  progress_log log;
  memset(&log, 0, sizeof log);
  ingot_train_result r;
  OK(ingot_lora_train(m, a, data, NULL, &to, on_step, &log, &r));
  /* the fresh adapter (B = 0) starts at the base model's loss */
  CHECK(log.calls == 12 && log.iters == 12);
  CHECK(log.steps[0] == 1 && log.steps[11] == 12);
  CHECK(fabs(log.losses[0] - want0) < 1e-5 * want0);
  CHECK(log.losses[11] < 0.5f * log.losses[0]);
  CHECK(r.steps == 12 && r.cancelled == 0 && r.final_loss == log.losses[11]);
  CHECK(isnan(r.val_loss));
  CHECK(r.tokens == 12 * g_ref_targets); /* one example per step, every target counted */
  CHECK(!params_equal(a, fresh));

  /* the saved adapter reloads to the same factors; loading it with the model gives the logits
   * of the trained adapter applied */
  ingot_adapter back = NULL;
  OK(ingot_adapter_load(m, adapter_dir, &back));
  if (back) CHECK(params_equal(a, back));
  const int64_t shape[2] = {1, 6};
  const int32_t ids[6] = {1, 375, 288, 83, 16, 331};
  ingot_array x = NULL, y1 = NULL, y2 = NULL;
  OK(ingot_array_from_data(ids, shape, 2, INGOT_INT32, &x));
  OK(ingot_model_apply_adapter(m, a));
  OK(ingot_model_forward(m, x, &y1));
  OK(ingot_eval(&y1, 1));
  /* training with an applied adapter is refused */
  CHECK(ingot_lora_train(m, fresh, data, NULL, &to, NULL, NULL, &r) == INGOT_ERR_INVALID_ARGUMENT);
  OK(ingot_model_remove_adapter(m));
  ingot_model m2 = NULL;
  ingot_model_options o2 = {"cpu", "float32", adapter_dir};
  OK(ingot_model_load(FIXTURES "llama_bf16_tied", &o2, &m2));
  if (m2) {
    static float v1[6 * 384], v2[6 * 384];
    OK(ingot_model_forward(m2, x, &y2));
    OK(ingot_array_to_host(y1, v1, sizeof v1));
    OK(ingot_array_to_host(y2, v2, sizeof v2));
    CHECK(memcmp(v1, v2, sizeof v1) == 0);
  }
  ingot_array_free(x);
  ingot_array_free(y1);
  ingot_array_free(y2);
  ingot_model_free(m2);
  ingot_adapter_free(back);

  /* cancellation: the callback stops the run after 3 of 10 steps; the call succeeds */
  ingot_adapter b = NULL;
  OK(ingot_adapter_new(m, &c, &b));
  memset(&log, 0, sizeof log);
  log.stop_after = 3;
  to.iters = 10;
  to.out_dir = NULL;
  OK(ingot_lora_train(m, b, data, NULL, &to, on_step, &log, &r));
  CHECK(r.cancelled == 1 && r.steps == 3 && log.calls == 3);
  CHECK(!params_equal(b, fresh));
  /* continuing the same adapter picks up where it stopped (a new run of the optimizer) */
  memset(&log, 0, sizeof log);
  to.iters = 1;
  OK(ingot_lora_train(m, b, data, NULL, &to, on_step, &log, &r));
  CHECK(r.steps == 1 && r.cancelled == 0);
  CHECK(log.losses[0] < (float)want0);

  /* validation loss is reported */
  char valid[128];
  path_in_tmp(valid, sizeof valid, "valid.jsonl");
  write_file(valid, "{\"prompt\": \"the quick\", \"completion\": \" brown fox\"}\n");
  to.iters = 2;
  to.eval_every = 1;
  to.mask_prompt = 1;
  OK(ingot_lora_train(m, b, data, valid, &to, NULL, NULL, &r));
  CHECK(r.steps == 2 && isfinite(r.val_loss) && r.val_loss > 0);
  to.eval_every = 0;
  to.mask_prompt = 0;

  /* errors: missing and malformed data, bad options, foreign adapters, null handles */
  CHECK(ingot_lora_train(m, b, "/nonexistent.jsonl", NULL, &to, NULL, NULL, &r) == INGOT_ERR_IO);
  char bad[128];
  path_in_tmp(bad, sizeof bad, "bad.jsonl");
  write_file(bad, "{\"text\": \"fine\"}\n{\"txt\": 3}\nnot json\n");
  CHECK(ingot_lora_train(m, b, bad, NULL, &to, NULL, NULL, &r) == INGOT_ERR_FORMAT);
  CHECK(strstr(ingot_last_error(), "bad.jsonl:2") != NULL);
  CHECK(strstr(ingot_last_error(), "bad.jsonl:3") != NULL);
  to.iters = 0;
  CHECK(ingot_lora_train(m, b, data, NULL, &to, NULL, NULL, &r) == INGOT_ERR_INVALID_ARGUMENT);
  to.iters = 1;
  to.schedule = "exponential";
  CHECK(ingot_lora_train(m, b, data, NULL, &to, NULL, NULL, &r) == INGOT_ERR_INVALID_ARGUMENT);
  to.schedule = NULL;
  CHECK(ingot_lora_train(NULL, b, data, NULL, &to, NULL, NULL, &r) == INGOT_ERR_INVALID_ARGUMENT);
  CHECK(ingot_lora_train(m, NULL, data, NULL, &to, NULL, NULL, &r) == INGOT_ERR_INVALID_ARGUMENT);
  CHECK(ingot_lora_train(m, b, NULL, NULL, &to, NULL, NULL, &r) == INGOT_ERR_INVALID_ARGUMENT);
  CHECK(ingot_lora_train(m, b, data, NULL, &to, NULL, NULL, NULL) == INGOT_ERR_INVALID_ARGUMENT);
  ingot_model other = NULL;
  OK(ingot_model_load(FIXTURES "llama_bf16_tied", &o, &other));
  CHECK(ingot_lora_train(other, b, data, NULL, &to, NULL, NULL, &r) == INGOT_ERR_INVALID_ARGUMENT);
  /* a model without a tokenizer cannot tokenize training data */
  ingot_model notok = NULL;
  ingot_adapter nb = NULL;
  OK(ingot_model_load(FIXTURES "llama_f32", &o, &notok));
  OK(ingot_adapter_new(notok, NULL, &nb));
  CHECK(ingot_lora_train(notok, nb, data, NULL, &to, NULL, NULL, &r) == INGOT_ERR_INVALID_ARGUMENT);
  ingot_adapter_free(nb);
  ingot_model_free(notok);

  /* out of memory under a limit: a clean error, and training works again without it */
  ingot_device cpu = {INGOT_CPU, 0};
  size_t prev = 0;
  OK(ingot_memory_set_limit(cpu, 4096, &prev));
  CHECK(ingot_lora_train(m, b, data, NULL, &to, NULL, NULL, &r) == INGOT_ERR_OUT_OF_MEMORY);
  ingot_model oom = NULL; /* loading casts bf16 -> float32: allocations over the limit */
  CHECK(ingot_model_load(FIXTURES "llama_bf16_tied", &o2, &oom) == INGOT_ERR_OUT_OF_MEMORY);
  CHECK(oom == NULL);
  OK(ingot_memory_set_limit(cpu, prev, NULL));
  OK(ingot_lora_train(m, b, data, NULL, &to, NULL, NULL, &r));
  CHECK(r.steps == 1 && isfinite(r.final_loss));
  ingot_model_free(other);

  ingot_adapter_free(a);
  ingot_adapter_free(b);
  ingot_adapter_free(fresh);
  ingot_model_free(m);
}

int main(void) {
  snprintf(g_tmp, sizeof g_tmp, "/tmp/ingot_capi_lora_XXXXXX");
  if (!mkdtemp(g_tmp)) {
    fprintf(stderr, "cannot create a temporary directory\n");
    return 1;
  }
  test_peft_adapter();
  test_adapter_errors();
  test_train();
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
  if (g_failures) {
    fprintf(stderr, "%d check(s) failed\n", g_failures);
    return 1;
  }
  printf("capi LoRA C test: all checks passed\n");
  return 0;
}
