/* The C API driven from C (compiled as C99): arrays round trip, ops against naive double loops,
 * errors as status codes, a VJP through a C callback against finite differences, AdamW against
 * its closed form, safetensors round trip, and the fixture model against transformers' greedy
 * reference. Prints one line per failed check; exits nonzero on any failure. */
#define _POSIX_C_SOURCE 200809L /* mkstemp */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ingot/ingot.h"

static ingot_array make_f32(const float* v, const int64_t* shape, int ndim) {
  ingot_array a = NULL;
  OK(ingot_array_from_data(v, shape, ndim, INGOT_FLOAT32, &a));
  return a;
}

static void read_f32(ingot_array a, float* dst, size_t n) {
  OK(ingot_array_to_host(a, dst, n * sizeof(float)));
}

static void test_version(void) {
  CHECK(ingot_abi_version() == INGOT_ABI_VERSION);
  CHECK(strlen(ingot_version()) >= 5);
  CHECK(ingot_dtype_size(INGOT_BFLOAT16) == 2);
  CHECK(strcmp(ingot_dtype_name(INGOT_FLOAT32), "float32") == 0);
  CHECK(ingot_dtype_size(99) == 0);
}

static void test_round_trip(void) {
  const float v[6] = {1, 2, 3, 4, 5, 6};
  const int64_t shape[2] = {2, 3};
  ingot_array a = make_f32(v, shape, 2);
  int ndim = 0, dt = -1;
  int64_t got_shape[4] = {0}, size = 0;
  OK(ingot_array_shape(a, got_shape, 4, &ndim));
  CHECK(ndim == 2 && got_shape[0] == 2 && got_shape[1] == 3);
  OK(ingot_array_dtype(a, &dt));
  CHECK(dt == INGOT_FLOAT32);
  OK(ingot_array_size(a, &size));
  CHECK(size == 6);
  float back[6];
  read_f32(a, back, 6);
  CHECK(memcmp(back, v, sizeof v) == 0);
  /* int64 and bool survive too */
  const int64_t iv[3] = {-5, 0, 1LL << 40};
  const int64_t ishape[1] = {3};
  ingot_array b = NULL;
  OK(ingot_array_from_data(iv, ishape, 1, INGOT_INT64, &b));
  int64_t iback[3];
  OK(ingot_array_to_host(b, iback, sizeof iback));
  CHECK(memcmp(iback, iv, sizeof iv) == 0);
  /* transpose: host reads are row-major of the view */
  ingot_array t = NULL;
  OK(ingot_transpose(a, NULL, 0, &t));
  read_f32(t, back, 6);
  CHECK(back[0] == 1 && back[1] == 4 && back[2] == 2 && back[5] == 6);
  ingot_array_free(t);
  ingot_array_free(b);
  ingot_array_free(a);
}

static int g_released = 0;
static void on_release(void* ctx, void* data) {
  (void)data;
  ++*(int*)ctx;
}

static void test_zero_copy(void) {
  float* buf = malloc(4 * sizeof(float));
  for (int i = 0; i < 4; ++i) buf[i] = (float)i;
  const int64_t shape[1] = {4};
  ingot_array a = NULL, s = NULL;
  OK(ingot_array_from_data_nocopy(buf, shape, 1, INGOT_FLOAT32, on_release, &g_released, &a));
  buf[3] = 10; /* no copy: the array sees the change */
  OK(ingot_sum(a, NULL, 0, 0, &s));
  double total = 0;
  OK(ingot_array_item_double(s, &total));
  CHECK(total == 13.0);
  CHECK(g_released == 0);
  ingot_array_free(s);
  ingot_array_free(a);
  CHECK(g_released == 1);
  free(buf);
}

static void test_ops_against_loops(void) {
  /* matmul [2,3] x [3,2] and a broadcast add, against double loops */
  const float av[6] = {0.5f, -1, 2, 3, 0.25f, -2};
  const float bv[6] = {1, 2, -1, 0.5f, 4, -3};
  const int64_t as[2] = {2, 3}, bs[2] = {3, 2};
  ingot_array a = make_f32(av, as, 2), b = make_f32(bv, bs, 2), c = NULL;
  OK(ingot_matmul(a, b, &c));
  float got[4];
  read_f32(c, got, 4);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) {
      double want = 0;
      for (int k = 0; k < 3; ++k) want += (double)av[i * 3 + k] * bv[k * 2 + j];
      CHECK(fabs(got[i * 2 + j] - want) < 1e-5);
    }
  ingot_array_free(c);

  /* softmax over the last axis */
  OK(ingot_softmax(a, NULL, 0, &c));
  float sm[6];
  read_f32(c, sm, 6);
  for (int i = 0; i < 2; ++i) {
    double z = 0;
    for (int k = 0; k < 3; ++k) z += exp((double)av[i * 3 + k]);
    for (int k = 0; k < 3; ++k) CHECK(fabs(sm[i * 3 + k] - exp((double)av[i * 3 + k]) / z) < 1e-6);
  }
  ingot_array_free(c);

  /* argmax along axis 1 gives uint32 */
  OK(ingot_argmax(a, 1, 0, &c));
  int dt = -1;
  OK(ingot_array_dtype(c, &dt));
  CHECK(dt == INGOT_UINT32);
  uint32_t am[2];
  OK(ingot_array_to_host(c, am, sizeof am));
  CHECK(am[0] == 2 && am[1] == 0);
  ingot_array_free(c);
  ingot_array_free(a);
  ingot_array_free(b);
}

static void test_errors(void) {
  const float v[6] = {0};
  const int64_t s23[2] = {2, 3}, s4[1] = {4};
  ingot_array a = make_f32(v, s23, 2), b = make_f32(v, s4, 1), c = NULL;
  /* bad shapes */
  CHECK(ingot_add(a, b, &c) == INGOT_ERR_INVALID_ARGUMENT);
  CHECK(c == NULL);
  CHECK(ingot_last_error()[0] == '[');
  CHECK(strstr(ingot_last_error(), "[2, 3]") != NULL);
  /* success clears the message */
  OK(ingot_add(a, a, &c));
  CHECK(ingot_last_error()[0] == '\0');
  ingot_array_free(c);
  c = NULL;
  /* null handles and outputs */
  CHECK(ingot_add(NULL, a, &c) == INGOT_ERR_INVALID_ARGUMENT);
  CHECK(strstr(ingot_last_error(), "null") != NULL);
  CHECK(ingot_add(a, a, NULL) == INGOT_ERR_INVALID_ARGUMENT);
  CHECK(ingot_array_free(NULL) == INGOT_OK);
  CHECK(ingot_model_free(NULL) == INGOT_OK);
  /* wrong dtype value, wrong buffer size, bad axis, reshape to a wrong size */
  CHECK(ingot_astype(a, 42, &c) == INGOT_ERR_INVALID_ARGUMENT);
  float small[2];
  CHECK(ingot_array_to_host(a, small, sizeof small) == INGOT_ERR_INVALID_ARGUMENT);
  CHECK(ingot_argmax(a, 5, 0, &c) == INGOT_ERR_INVALID_ARGUMENT);
  const int64_t s5[1] = {5};
  CHECK(ingot_reshape(a, s5, 1, &c) == INGOT_ERR_INVALID_ARGUMENT);
  /* integer matmul is rejected */
  ingot_array ia = NULL;
  OK(ingot_astype(a, INGOT_INT32, &ia));
  CHECK(ingot_matmul(ia, ia, &c) != INGOT_OK);
  ingot_array_free(ia);
  /* files */
  ingot_named_arrays m = NULL;
  CHECK(ingot_safetensors_load("/nonexistent/x.safetensors", &m) == INGOT_ERR_IO);
  CHECK(strstr(ingot_last_error(), "/nonexistent/x.safetensors") != NULL);
  ingot_model model = NULL;
  CHECK(ingot_model_load("/nonexistent-model", NULL, &model) != INGOT_OK);
  CHECK(model == NULL);
  /* a checkpoint directory with a corrupt config.json is a FORMAT error naming the file */
  char dir[] = "/tmp/ingot_capi_model_XXXXXX";
  if (mkdtemp(dir)) {
    char cfg[64];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    FILE* f = fopen(cfg, "w");
    fputs("{\"model_type\": \"llama\", \"hidden_size\": ", f);
    fclose(f);
    CHECK(ingot_model_load(dir, NULL, &model) == INGOT_ERR_FORMAT);
    CHECK(strstr(ingot_last_error(), "config.json") != NULL);
    remove(cfg);
    remove(dir);
  }
  ingot_device d;
  CHECK(ingot_device_parse("tpu:0", &d) == INGOT_ERR_INVALID_ARGUMENT);
  ingot_array_free(a);
  ingot_array_free(b);
}

/* f(x) = sum(x^3 * sin(x)): a C callback */
static int cube_sin(void* ctx, const ingot_array* in, size_t n, ingot_array_list out) {
  (void)ctx;
  if (n != 1) {
    ingot_set_error("cube_sin: one input expected");
    return 1;
  }
  ingot_array sq = NULL, cu = NULL, s = NULL, p = NULL, r = NULL;
  int rc = ingot_square(in[0], &sq);
  if (!rc) rc = ingot_multiply(sq, in[0], &cu);
  if (!rc) rc = ingot_sin(in[0], &s);
  if (!rc) rc = ingot_multiply(cu, s, &p);
  if (!rc) rc = ingot_sum(p, NULL, 0, 0, &r);
  if (!rc) rc = ingot_array_list_push(out, r);
  ingot_array_free(sq);
  ingot_array_free(cu);
  ingot_array_free(s);
  ingot_array_free(p);
  ingot_array_free(r);
  return rc;
}

static int failing_fn(void* ctx, const ingot_array* in, size_t n, ingot_array_list out) {
  (void)ctx, (void)in, (void)n, (void)out;
  ingot_set_error("failing_fn says no");
  return 1;
}

static int g_ctx_freed = 0;
static void ctx_free(void* ctx) {
  ++*(int*)ctx;
}

static double f_cube_sin(const double* x, int n) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += x[i] * x[i] * x[i] * sin(x[i]);
  return s;
}

static void test_vjp_finite_differences(void) {
  const double xv[4] = {0.3, -1.2, 2.0, 0.7};
  const int64_t shape[1] = {4};
  ingot_array x = NULL, ct = NULL;
  OK(ingot_array_from_data(xv, shape, 1, INGOT_FLOAT64, &x));
  OK(ingot_array_from_double(1.0, INGOT_FLOAT64, &ct));
  ingot_closure f = NULL;
  OK(ingot_closure_new(cube_sin, &g_ctx_freed, ctx_free, &f));
  ingot_array_list outs = NULL, grads = NULL;
  OK(ingot_array_list_new(&outs));
  OK(ingot_array_list_new(&grads));
  OK(ingot_vjp(f, &x, 1, &ct, 1, outs, grads));
  size_t ng = 0;
  OK(ingot_array_list_size(grads, &ng));
  CHECK(ng == 1);
  ingot_array g = NULL, val = NULL;
  OK(ingot_array_list_get(grads, 0, &g));
  OK(ingot_array_list_get(outs, 0, &val));
  double gv[4], value = 0;
  OK(ingot_array_to_host(g, gv, sizeof gv));
  OK(ingot_array_item_double(val, &value));
  CHECK(fabs(value - f_cube_sin(xv, 4)) < 1e-12);
  for (int i = 0; i < 4; ++i) {
    double xp[4], xm[4];
    memcpy(xp, xv, sizeof xp);
    memcpy(xm, xv, sizeof xm);
    const double h = 1e-6;
    xp[i] += h;
    xm[i] -= h;
    const double fd = (f_cube_sin(xp, 4) - f_cube_sin(xm, 4)) / (2 * h);
    CHECK(fabs(gv[i] - fd) < 1e-6 * (1 + fabs(fd)));
  }
  ingot_array_free(g);
  ingot_array_free(val);

  /* value_and_grad and the checkpointed / compiled closures agree with the plain one */
  ingot_closure ck = NULL, cp = NULL;
  OK(ingot_checkpoint(f, &ck));
  OK(ingot_compile(f, 0, &cp));
  ingot_closure fns[3] = {f, ck, cp};
  for (int k = 0; k < 3; ++k) {
    OK(ingot_array_list_clear(outs));
    OK(ingot_array_list_clear(grads));
    OK(ingot_value_and_grad(fns[k], &x, 1, NULL, 0, outs, grads));
    OK(ingot_array_list_get(grads, 0, &g));
    double g2[4];
    OK(ingot_array_to_host(g, g2, sizeof g2));
    for (int i = 0; i < 4; ++i) CHECK(fabs(g2[i] - gv[i]) < 1e-12);
    ingot_array_free(g);
  }
  /* jvp with a one-hot tangent equals the gradient entry */
  const double tv[4] = {0, 0, 1, 0};
  ingot_array t = NULL, jt = NULL;
  OK(ingot_array_from_data(tv, shape, 1, INGOT_FLOAT64, &t));
  OK(ingot_array_list_clear(grads));
  OK(ingot_jvp(f, &x, 1, &t, 1, NULL, grads));
  OK(ingot_array_list_get(grads, 0, &jt));
  double jv = 0;
  OK(ingot_array_item_double(jt, &jv));
  CHECK(fabs(jv - gv[2]) < 1e-12);
  ingot_array_free(jt);
  ingot_array_free(t);

  /* a failing callback comes back as INGOT_ERR_CALLBACK with its message */
  ingot_closure bad = NULL;
  OK(ingot_closure_new(failing_fn, NULL, NULL, &bad));
  CHECK(ingot_vjp(bad, &x, 1, &ct, 1, outs, grads) == INGOT_ERR_CALLBACK);
  CHECK(strstr(ingot_last_error(), "failing_fn says no") != NULL);
  ingot_closure_free(bad);

  ingot_closure_free(ck);
  ingot_closure_free(cp);
  CHECK(g_ctx_freed == 0);
  ingot_closure_free(f);
  CHECK(g_ctx_freed == 1);
  ingot_array_list_free(outs);
  ingot_array_list_free(grads);
  ingot_array_free(x);
  ingot_array_free(ct);
}

static void test_adamw_and_safetensors(void) {
  const float pv[3] = {1.0f, -2.0f, 0.5f}, gv[3] = {0.1f, -0.3f, 2.0f};
  const int64_t shape[1] = {3};
  ingot_array p = make_f32(pv, shape, 1), g = make_f32(gv, shape, 1), np = NULL;
  ingot_named_arrays params = NULL, grads = NULL, updated = NULL;
  OK(ingot_named_arrays_new(&params));
  OK(ingot_named_arrays_new(&grads));
  OK(ingot_named_arrays_set(params, "w", p));
  OK(ingot_named_arrays_set(grads, "w", g));
  ingot_optimizer opt = NULL;
  const float lr = 0.01f, wd = 0.1f, eps = 1e-8f;
  OK(ingot_optimizer_adamw(lr, 0.9f, 0.999f, eps, wd, &opt));
  OK(ingot_optimizer_apply(opt, params, grads, &updated));
  OK(ingot_named_arrays_get(updated, "w", &np));
  float got[3];
  read_f32(np, got, 3);
  for (int i = 0; i < 3; ++i) {
    /* step 1: m_hat = g, v_hat = g^2, so the Adam direction is g / (|g| + eps) */
    const double want = pv[i] * (1 - (double)lr * wd) - lr * gv[i] / (fabs(gv[i]) + eps);
    CHECK(fabs(got[i] - want) < 1e-6);
  }
  int64_t step = 0;
  OK(ingot_optimizer_step(opt, &step));
  CHECK(step == 1);
  CHECK(ingot_optimizer_adamw(-1, 0.9f, 0.999f, eps, wd, &opt) == INGOT_ERR_INVALID_ARGUMENT);

  char path[] = "/tmp/ingot_capi_test_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  OK(ingot_safetensors_save(path, updated));
  ingot_named_arrays loaded = NULL;
  OK(ingot_safetensors_load(path, &loaded));
  size_t n = 0;
  OK(ingot_named_arrays_size(loaded, &n));
  const char* name = NULL;
  OK(ingot_named_arrays_name(loaded, 0, &name));
  CHECK(n == 1 && strcmp(name, "w") == 0);
  ingot_array lw = NULL;
  OK(ingot_named_arrays_get(loaded, "w", &lw));
  float back[3];
  read_f32(lw, back, 3);
  CHECK(memcmp(back, got, sizeof got) == 0);
  CHECK(ingot_named_arrays_get(loaded, "missing", &lw) == INGOT_ERR_INVALID_ARGUMENT);
  /* a corrupt file is a FORMAT error */
  FILE* f = fopen(path, "wb");
  fputs("\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ", f);
  fclose(f);
  ingot_named_arrays bad = NULL;
  CHECK(ingot_safetensors_load(path, &bad) == INGOT_ERR_FORMAT);
  remove(path);
  ingot_array_free(lw);
  ingot_named_arrays_free(loaded);
  ingot_optimizer_free(opt);
  ingot_named_arrays_free(params);
  ingot_named_arrays_free(grads);
  ingot_named_arrays_free(updated);
  ingot_array_free(np);
  ingot_array_free(p);
  ingot_array_free(g);
}

static int stop_after_three(void* ctx, int row, int32_t id) {
  (void)row, (void)id;
  return ++*(int*)ctx >= 3;
}

static void test_model(void) {
  ingot_model m = NULL;
  ingot_model_options o = {"cpu", "float32", NULL};
  OK(ingot_model_load(INGOT_SOURCE_DIR "/tests/data/models/llama_bf16_tied", &o, &m));
  if (!m) return;
  const char* arch = NULL;
  OK(ingot_model_architecture(m, &arch));
  CHECK(arch && strcmp(arch, "llama") == 0);
  int64_t vocab = 0;
  OK(ingot_model_vocab_size(m, &vocab));
  CHECK(vocab == 384);

  /* greedy continuation equals transformers' (reference.json, greedy.single[0]) */
  const int32_t prompt[4] = {1, 375, 288, 83};
  const int32_t want[12] = {293, 152, 192, 186, 228, 108, 231, 228, 232, 215, 70, 205};
  ingot_generate_options go = ingot_generate_options_default();
  go.max_tokens = 12;
  go.stop_at_eos = 0;
  ingot_generation g;
  OK(ingot_generate(m, prompt, 4, &go, NULL, NULL, NULL, &g));
  CHECK(g.n_tokens == 12 && memcmp(g.tokens, want, sizeof want) == 0);
  CHECK(g.finish_reason == INGOT_FINISH_LENGTH);
  CHECK(g.metrics.generated_tokens == 12);
  ingot_generation_free(&g);

  /* cancellation from the token callback */
  int count = 0;
  OK(ingot_generate(m, prompt, 4, &go, stop_after_three, NULL, &count, &g));
  CHECK(g.finish_reason == INGOT_FINISH_CANCELLED);
  CHECK(g.n_tokens == 3 && memcmp(g.tokens, want, 3 * sizeof(int32_t)) == 0);
  ingot_generation_free(&g);
  CHECK(ingot_generate(m, prompt, 0, &go, NULL, NULL, NULL, &g) == INGOT_ERR_INVALID_ARGUMENT);

  /* tokenizer: encode / decode equal Hugging Face tokenizers (reference.json samples) */
  ingot_tokenizer t = NULL;
  OK(ingot_model_tokenizer(m, &t));
  int32_t* ids = NULL;
  size_t n = 0;
  OK(ingot_tokenizer_encode(t, "Hello, world!", 1, &ids, &n));
  const int32_t want_ids[8] = {1, 375, 288, 83, 16, 331, 293, 5};
  CHECK(n == 8 && memcmp(ids, want_ids, sizeof want_ids) == 0);
  char* text = NULL;
  OK(ingot_tokenizer_decode(t, ids, n, 1, &text));
  CHECK(text && strcmp(text, "Hello, world!") == 0);
  ingot_free(text);
  ingot_free(ids);
  CHECK(ingot_tokenizer_encode(t, NULL, 1, &ids, &n) == INGOT_ERR_INVALID_ARGUMENT);
  ingot_tokenizer_free(t);
  ingot_model_free(m);
}

int main(void) {
  test_version();
  test_round_trip();
  test_zero_copy();
  test_ops_against_loops();
  test_errors();
  test_vjp_finite_differences();
  test_adamw_and_safetensors();
  test_model();
  if (g_failures) {
    fprintf(stderr, "%d check(s) failed\n", g_failures);
    return 1;
  }
  printf("capi C test: all checks passed\n");
  return 0;
}
