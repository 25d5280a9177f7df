/* Resumable LoRA training through the C API (C99): ingot_lora_train_ex with checkpoints, resume
 * and a loss curve. A run stopped by its callback at step 3 of 6 after checkpoint-3 was saved,
 * then resumed from that directory with a fresh model handle and an adapter of other initial
 * values, gives bit for bit the losses and final factors of an uninterrupted 6-step run (the
 * trainer is deterministic on the CPU: same data order, same dropout masks, same float32
 * arithmetic, so the comparison is exact); the loss-curve files of both runs hold every step's
 * loss (equal to the progress callback's) and the validation losses. Bad checkpoints (missing,
 * corrupt JSON, corrupt or mismatched optimizer state, another rank, other target modules,
 * other data options) and bad options return their status codes with a message and leave the
 * adapter as it was. Exits nonzero on any failure. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "ingot/ingot.h"

#define FIXTURE INGOT_SOURCE_DIR "/tests/data/models/llama_bf16_tied"

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

static int is_file(const char* path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int copy_file(const char* from, const char* to) {
  FILE* in = fopen(from, "rb");
  FILE* out = in ? fopen(to, "wb") : NULL;
  int ok = in && out;
  char buf[4096];
  size_t n;
  while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, out) == n;
  if (in) fclose(in);
  if (out) fclose(out);
  return ok;
}

static ingot_model load_model(void) {
  ingot_model m = NULL;
  ingot_model_options o = {"cpu", "float32", NULL};
  OK(ingot_model_load(FIXTURE, &o, &m));
  return m;
}

/* ---------------------------------------------------------------- progress and loss curves */

enum { MAX_STEPS = 16 };

typedef struct progress_log {
  int calls;
  int stop_after; /* 0: never */
  int64_t steps[MAX_STEPS];
  float losses[MAX_STEPS];
  double val_losses[MAX_STEPS];
} progress_log;

static int on_step(void* ctx, const ingot_train_progress* p) {
  progress_log* log = (progress_log*)ctx;
  if (log->calls < MAX_STEPS) {
    log->steps[log->calls] = p->step;
    log->losses[log->calls] = p->loss;
    log->val_losses[log->calls] = p->val_loss;
  }
  ++log->calls;
  return log->stop_after > 0 && log->calls >= log->stop_after;
}

/* A loss-curve file: the step lines' step and loss, the validation lines' step and val_loss. */
typedef struct loss_curve {
  int n, n_val;
  int64_t steps[MAX_STEPS], val_steps[MAX_STEPS];
  double losses[MAX_STEPS], val_losses[MAX_STEPS];
} loss_curve;

static double number_after(const char* line, const char* key, int* found) {
  const char* p = strstr(line, key);
  *found = p != NULL;
  return p ? strtod(p + strlen(key), NULL) : NAN;
}

static int read_loss_curve(const char* path, loss_curve* c) {
  memset(c, 0, sizeof *c);
  FILE* f = fopen(path, "r");
  if (!f) return 0;
  char line[512];
  int ok = 1;
  while (fgets(line, sizeof line, f)) {
    int has_step = 0, has_loss = 0, has_val = 0;
    const double step = number_after(line, "\"step\":", &has_step);
    const double loss = number_after(line, "\"loss\":", &has_loss);
    const double val = number_after(line, "\"val_loss\":", &has_val);
    if (!has_step) ok = 0;
    if (has_val && c->n_val < MAX_STEPS) {
      c->val_steps[c->n_val] = (int64_t)step;
      c->val_losses[c->n_val++] = val;
    } else if (has_loss && c->n < MAX_STEPS) {
      /* every step line carries the other figures too */
      int a = 0, b = 0, d = 0;
      (void)number_after(line, "\"lr\":", &a);
      (void)number_after(line, "\"grad_norm\":", &b);
      (void)number_after(line, "\"tokens\":", &d);
      if (!(a && b && d)) ok = 0;
      c->steps[c->n] = (int64_t)step;
      c->losses[c->n++] = loss;
    } else {
      ok = 0;
    }
  }
  fclose(f);
  return ok;
}

/* ---------------------------------------------------------------- adapters */

/* 1 when the two adapters' factors are the same names with bitwise equal values. */
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

static ingot_adapter new_adapter(ingot_model m, int rank, const char* targets, uint64_t seed) {
  ingot_lora_config c = ingot_lora_config_default();
  c.rank = rank;
  c.alpha = 8.0f;
  c.dropout = 0.1f; /* dropout masks must be redrawn identically after a resume */
  c.targets = targets;
  c.seed = seed;
  ingot_adapter a = NULL;
  OK(ingot_adapter_new(m, &c, &a));
  return a;
}

static char g_data[128], g_valid[128];

static void write_data(void) {
  path_in_tmp(g_data, sizeof g_data, "train.jsonl");
  path_in_tmp(g_valid, sizeof g_valid, "valid.jsonl");
  write_file(g_data,
             "{\"text\": \"the quick brown fox jumps over the lazy dog\"}\n"
             "{\"text\": \"a stitch in time saves nine\"}\n"
             "{\"prompt\": \"two plus two is\", \"completion\": \" four\"}\n"
             "{\"text\": \"all that glitters is not gold, they say\"}\n"
             "{\"text\": \"red sky at night\"}\n");
  write_file(g_valid, "{\"prompt\": \"the quick\", \"completion\": \" brown fox\"}\n");
}

/* 6 steps of 2 micro-batches of 2 examples over 5 examples: batches cross epoch boundaries, so
 * the data position matters; warmup then cosine decay, so the step matters. */
static ingot_train_options train_options(void) {
  ingot_train_options o = ingot_train_options_default();
  o.iters = 6;
  o.batch_size = 2;
  o.grad_accum = 2;
  o.learning_rate = 1e-2f;
  o.warmup = 2;
  o.seed = 5;
  o.eval_every = 3;
  return o;
}

/* ---------------------------------------------------------------- resume equals uninterrupted */

static void test_resume_equals_uninterrupted(void) {
  char dir_a[128], dir_b[128], dir_c[128], log_a[160], log_b[160], ckpt[160], file[200];
  path_in_tmp(dir_a, sizeof dir_a, "straight");
  path_in_tmp(dir_b, sizeof dir_b, "interrupted");
  path_in_tmp(dir_c, sizeof dir_c, "resumed");
  snprintf(log_a, sizeof log_a, "%s/curve/loss.jsonl", dir_a); /* parent made on demand */
  snprintf(log_b, sizeof log_b, "%s/loss.jsonl", dir_b);
  snprintf(ckpt, sizeof ckpt, "%s/checkpoint-3", dir_b);

  /* A: 6 steps straight */
  ingot_model ma = load_model();
  if (!ma) return;
  ingot_adapter aa = new_adapter(ma, 4, "q_proj,v_proj,down_proj", 3);
  ingot_train_options o = train_options();
  o.out_dir = dir_a;
  ingot_train_checkpoint_options c = ingot_train_checkpoint_options_default();
  CHECK(c.save_every == 0 && c.checkpoint_dir == NULL && c.resume == NULL && c.loss_log == NULL);
  c.loss_log = log_a;
  progress_log pa;
  memset(&pa, 0, sizeof pa);
  ingot_train_result r;
  OK(ingot_lora_train_ex(ma, aa, g_data, g_valid, &o, &c, on_step, &pa, &r));
  CHECK(r.steps == 6 && pa.calls == 6 && !r.cancelled);
  CHECK(isfinite(pa.val_losses[2]) && isfinite(pa.val_losses[5]) && isnan(pa.val_losses[0]));
  snprintf(file, sizeof file, "%s/checkpoint-3", dir_a);
  CHECK(!is_file(file)); /* save_every 0: no checkpoints */

  /* B: the same run with a checkpoint every 3 steps (into out_dir), stopped after step 3 */
  ingot_model mb = load_model();
  ingot_adapter ab = mb ? new_adapter(mb, 4, "q_proj,v_proj,down_proj", 3) : NULL;
  o.out_dir = dir_b;
  c.save_every = 3;
  c.loss_log = log_b;
  progress_log pb;
  memset(&pb, 0, sizeof pb);
  pb.stop_after = 3;
  OK(ingot_lora_train_ex(mb, ab, g_data, g_valid, &o, &c, on_step, &pb, &r));
  CHECK(r.steps == 3 && r.cancelled == 1 && pb.calls == 3);
  snprintf(file, sizeof file, "%s/trainer_state.json", ckpt);
  CHECK(is_file(file));
  snprintf(file, sizeof file, "%s/optimizer.safetensors", ckpt);
  CHECK(is_file(file));
  snprintf(file, sizeof file, "%s/adapter_model.safetensors", ckpt);
  CHECK(is_file(file));
  for (int i = 0; i < 3; ++i) CHECK(pb.losses[i] == pa.losses[i]);
  ingot_adapter_free(ab);
  ingot_model_free(mb);

  /* C: a fresh model handle and an adapter of other initial values resume from checkpoint-3 */
  ingot_model mc = load_model();
  ingot_adapter ac = mc ? new_adapter(mc, 4, "q_proj,v_proj,down_proj", 99) : NULL;
  o.out_dir = dir_c;
  c.save_every = 0;
  c.resume = ckpt;
  progress_log pc;
  memset(&pc, 0, sizeof pc);
  OK(ingot_lora_train_ex(mc, ac, g_data, g_valid, &o, &c, on_step, &pc, &r));
  CHECK(r.steps == 3 && pc.calls == 3 && !r.cancelled);
  for (int i = 0; i < 3; ++i) {
    CHECK(pc.steps[i] == 4 + i);
    CHECK(pc.losses[i] == pa.losses[3 + i]); /* bit for bit */
  }
  CHECK(r.final_loss == pa.losses[5]);
  CHECK(pc.val_losses[2] == pa.val_losses[5]);
  if (ac) CHECK(params_equal(aa, ac));
  /* the final adapters saved in out_dir are the same too */
  ingot_adapter fa = NULL, fc = NULL;
  OK(ingot_adapter_load(ma, dir_a, &fa));
  OK(ingot_adapter_load(ma, dir_c, &fc));
  if (fa && fc) CHECK(params_equal(fa, fc));
  ingot_adapter_free(fa);
  ingot_adapter_free(fc);

  /* the loss curves: A's has the 6 losses the callback saw and validation at steps 3 and 6;
   * B's, appended to by the resumed run, has the same */
  loss_curve la, lb;
  CHECK(read_loss_curve(log_a, &la));
  CHECK(read_loss_curve(log_b, &lb));
  CHECK(la.n == 6 && lb.n == 6 && la.n_val == 2 && lb.n_val == 2);
  for (int i = 0; i < 6 && i < la.n && i < lb.n; ++i) {
    CHECK(la.steps[i] == i + 1 && lb.steps[i] == i + 1);
    CHECK((float)la.losses[i] == pa.losses[i]); /* a float printed as a double round-trips */
    CHECK(la.losses[i] == lb.losses[i]);
  }
  if (la.n_val == 2 && lb.n_val == 2) {
    CHECK(la.val_steps[0] == 3 && la.val_steps[1] == 6 && lb.val_steps[1] == 6);
    CHECK((float)la.val_losses[1] == (float)pa.val_losses[5]);
    CHECK(la.val_losses[0] == lb.val_losses[0] && la.val_losses[1] == lb.val_losses[1]);
  }

  /* resuming a checkpoint at iters already runs no step and leaves the checkpoint's factors */
  ingot_adapter ad = mc ? new_adapter(mc, 4, "q_proj,v_proj,down_proj", 7) : NULL;
  o.iters = 3;
  o.out_dir = NULL;
  c.loss_log = NULL;
  memset(&pc, 0, sizeof pc);
  OK(ingot_lora_train_ex(mc, ad, g_data, g_valid, &o, &c, on_step, &pc, &r));
  CHECK(r.steps == 0 && pc.calls == 0 && isnan(r.val_loss));
  ingot_adapter saved = NULL;
  OK(ingot_adapter_load(mc, ckpt, &saved));
  if (ad && saved) CHECK(params_equal(ad, saved));
  ingot_adapter_free(saved);
  ingot_adapter_free(ad);

  ingot_adapter_free(ac);
  ingot_model_free(mc);
  ingot_adapter_free(aa);
  ingot_model_free(ma);
}

/* ---------------------------------------------------------------- errors */

/* Expects `status` from a resume of a fresh rank-4 adapter from `dir` with a message containing
 * `needle`, and the adapter unchanged. */
static void expect_resume_error(ingot_model m, ingot_adapter a, const char* dir,
                                const ingot_train_options* o, int status, const char* needle) {
  ingot_adapter before = new_adapter(m, 4, "q_proj,v_proj", 11);
  ingot_train_checkpoint_options c = ingot_train_checkpoint_options_default();
  c.resume = dir;
  ingot_train_result r;
  const int rc = ingot_lora_train_ex(m, a, g_data, NULL, o, &c, NULL, NULL, &r);
  CHECK(rc == status);
  if (rc != status || !strstr(ingot_last_error(), needle))
    fprintf(stderr, "  resume from %s: status %d (want %d), message '%s' (want '%s')\n", dir, rc,
            status, ingot_last_error(), needle);
  CHECK(strstr(ingot_last_error(), needle) != NULL);
  if (a && before) CHECK(params_equal(a, before)); /* the same seed: unchanged */
  ingot_adapter_free(before);
}

static void test_errors(void) {
  ingot_model m = load_model();
  if (!m) return;
  char root[128], ck1[160], ck2[160], file[200], file2[200];
  path_in_tmp(root, sizeof root, "errors");
  snprintf(ck1, sizeof ck1, "%s/checkpoint-1", root);
  snprintf(ck2, sizeof ck2, "%s/checkpoint-2", root);
  ingot_train_options o = train_options();
  o.iters = 2;
  o.eval_every = 0;

  /* two checkpoints, written into checkpoint_dir (no out_dir) */
  ingot_adapter a = new_adapter(m, 4, "q_proj,v_proj", 11);
  ingot_train_checkpoint_options c = ingot_train_checkpoint_options_default();
  c.save_every = 1;
  c.checkpoint_dir = root;
  ingot_train_result r;
  OK(ingot_lora_train_ex(m, a, g_data, NULL, &o, &c, NULL, NULL, &r));
  CHECK(r.steps == 2);
  snprintf(file, sizeof file, "%s/optimizer.safetensors", ck2);
  CHECK(is_file(file));
  ingot_adapter_free(a);

  /* each good checkpoint resumes (sanity: the failures below are the damage's) */
  ingot_adapter fresh = new_adapter(m, 4, "q_proj,v_proj", 11);
  ingot_train_checkpoint_options cr = ingot_train_checkpoint_options_default();
  cr.resume = ck1;
  OK(ingot_lora_train_ex(m, fresh, g_data, NULL, &o, &cr, NULL, NULL, &r));
  CHECK(r.steps == 1);
  ingot_adapter_free(fresh);

  ingot_adapter b = new_adapter(m, 4, "q_proj,v_proj", 11);
  /* missing directory */
  expect_resume_error(m, b, "/nonexistent-checkpoint", &o, INGOT_ERR_IO, "trainer_state.json");
  /* another rank, other target modules */
  ingot_adapter r8 = new_adapter(m, 8, "q_proj,v_proj", 11);
  c = ingot_train_checkpoint_options_default();
  c.resume = ck2;
  CHECK(ingot_lora_train_ex(m, r8, g_data, NULL, &o, &c, NULL, NULL, &r) == INGOT_ERR_FORMAT);
  CHECK(strstr(ingot_last_error(), "rank 4") != NULL);
  ingot_adapter kq = new_adapter(m, 4, "q_proj,k_proj", 11);
  CHECK(ingot_lora_train_ex(m, kq, g_data, NULL, &o, &c, NULL, NULL, &r) == INGOT_ERR_FORMAT);
  CHECK(strstr(ingot_last_error(), "target modules") != NULL);
  ingot_adapter three = new_adapter(m, 4, "q_proj,v_proj,o_proj", 11);
  CHECK(ingot_lora_train_ex(m, three, g_data, NULL, &o, &c, NULL, NULL, &r) == INGOT_ERR_FORMAT);
  CHECK(strstr(ingot_last_error(), "target modules") != NULL);
  ingot_adapter_free(r8);
  ingot_adapter_free(kq);
  ingot_adapter_free(three);
  /* other data options (batch size) */
  ingot_train_options o1 = o;
  o1.batch_size = 1;
  expect_resume_error(m, b, ck2, &o1, INGOT_ERR_FORMAT, "other data or options");
  /* an adapter of another model */
  ingot_model other = load_model();
  if (other) {
    CHECK(ingot_lora_train_ex(other, b, g_data, NULL, &o, &c, NULL, NULL, &r) ==
          INGOT_ERR_INVALID_ARGUMENT);
    ingot_model_free(other);
  }
  /* optimizer state of checkpoint-1 in checkpoint-2: the step disagrees */
  snprintf(file, sizeof file, "%s/optimizer.safetensors", ck1);
  snprintf(file2, sizeof file2, "%s/optimizer.safetensors", ck2);
  CHECK(copy_file(file, file2));
  expect_resume_error(m, b, ck2, &o, INGOT_ERR_FORMAT, "'step'");
  /* corrupt optimizer state: the adapter file was read fine, but nothing changes */
  write_file(file2, "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": broken   ");
  expect_resume_error(m, b, ck2, &o, INGOT_ERR_FORMAT, "optimizer.safetensors");
  /* missing optimizer state */
  remove(file2);
  expect_resume_error(m, b, ck2, &o, INGOT_ERR_IO, "optimizer.safetensors");
  /* corrupt trainer_state.json, and one without the step */
  snprintf(file, sizeof file, "%s/trainer_state.json", ck1);
  write_file(file, "{\"step\": 1, \"data_position\": ");
  expect_resume_error(m, b, ck1, &o, INGOT_ERR_FORMAT, "trainer_state.json");
  write_file(file, "{\"data_position\": 2}");
  expect_resume_error(m, b, ck1, &o, INGOT_ERR_FORMAT, "step");
  /* a corrupt adapter in the checkpoint */
  snprintf(file, sizeof file, "%s/adapter_config.json", ck1);
  write_file(file, "{\"peft_type\": \"LORA\", \"r\": ");
  snprintf(file, sizeof file, "%s/trainer_state.json", ck1);
  write_file(file,
             "{\"step\": 1, \"data_position\": 2, \"seed\": 5, \"batch_size\": 2, "
             "\"grad_accum\": 2, \"num_examples\": 5, \"mode\": \"lora\", \"pack\": false}");
  expect_resume_error(m, b, ck1, &o, INGOT_ERR_FORMAT, "adapter_config.json");

  /* options: save_every without a directory, negative save_every, unwritable loss log */
  c = ingot_train_checkpoint_options_default();
  c.save_every = 1;
  CHECK(ingot_lora_train_ex(m, b, g_data, NULL, &o, &c, NULL, NULL, &r) ==
        INGOT_ERR_INVALID_ARGUMENT);
  CHECK(strstr(ingot_last_error(), "save_every") != NULL);
  CHECK(strstr(ingot_last_error(), "ingot_lora_train_ex:") != NULL);
  c.save_every = -1;
  c.checkpoint_dir = root;
  CHECK(ingot_lora_train_ex(m, b, g_data, NULL, &o, &c, NULL, NULL, &r) ==
        INGOT_ERR_INVALID_ARGUMENT);
  c = ingot_train_checkpoint_options_default();
  snprintf(file, sizeof file, "%s/under-a-file/loss.jsonl", g_data); /* train.jsonl is a file */
  c.loss_log = file;
  ingot_adapter before = new_adapter(m, 4, "q_proj,v_proj", 11);
  CHECK(ingot_lora_train_ex(m, b, g_data, NULL, &o, &c, NULL, NULL, &r) == INGOT_ERR_IO);
  CHECK(strstr(ingot_last_error(), "loss log") != NULL);
  if (before && b) CHECK(params_equal(b, before));
  ingot_adapter_free(before);
  /* NULL checkpoint options: plain ingot_lora_train; the adapter still trains after all this */
  OK(ingot_lora_train_ex(m, b, g_data, NULL, &o, NULL, NULL, NULL, &r));
  CHECK(r.steps == 2 && isfinite(r.final_loss));
  CHECK(ingot_lora_train_ex(m, b, g_data, NULL, &o, NULL, NULL, NULL, NULL) ==
        INGOT_ERR_INVALID_ARGUMENT);
  ingot_adapter_free(b);
  ingot_model_free(m);
}

int main(void) {
  snprintf(g_tmp, sizeof g_tmp, "/tmp/ingot_capi_resume_XXXXXX");
  if (!mkdtemp(g_tmp)) {
    fprintf(stderr, "cannot create a temporary directory\n");
    return 1;
  }
  write_data();
  test_resume_equals_uninterrupted();
  test_errors();
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
  if (g_failures) {
    fprintf(stderr, "%d check(s) failed\n", g_failures);
    return 1;
  }
  printf("capi LoRA resume C test: all checks passed\n");
  return 0;
}
