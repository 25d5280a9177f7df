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

/* A handle entry point called with a NULL handle fails with INVALID_ARGUMENT and a message. */
#define NULL_HANDLE(call)                              \
  do {                                                 \
    CHECK((call) == INGOT_ERR_INVALID_ARGUMENT);       \
    CHECK(ingot_last_error()[0] != '\0');              \
    CHECK(strstr(ingot_last_error(), "null") != NULL); \
  } while (0)

/* f(x) = sum(x * stop_gradient(x)): the value is sum(x^2), the gradient x (not 2x). */
static int x_times_stopped_x(void* ctx, const ingot_array* in, size_t n, ingot_array_list out) {
  (void)ctx;
  if (n != 1) {
    ingot_set_error("x_times_stopped_x: one input expected");
    return 1;
  }
  ingot_array sg = NULL, p = NULL, r = NULL;
  int rc = ingot_stop_gradient(in[0], &sg);
  if (!rc) rc = ingot_multiply(in[0], sg, &p);
  if (!rc) rc = ingot_sum(p, NULL, 0, 0, &r);
  if (!rc) rc = ingot_array_list_push(out, r);
  ingot_array_free(sg);
  ingot_array_free(p);
  ingot_array_free(r);
  return rc;
}

static double gelu_ref(double x) {
  return 0.5 * x * (1 + erf(x / sqrt(2.0)));
}

/* Reads a key (uint32 [.., 2]) into `dst` (n words). */
static void read_u32(ingot_array a, uint32_t* dst, size_t n) {
  OK(ingot_array_to_host(a, dst, n * sizeof(uint32_t)));
}

/* The entry points no other C test calls: each with valid input against a reference computed
 * here, and each that takes a handle once with a NULL handle. */
static void test_remaining_entry_points(void) {
  /* status names of every status code */
  const char* names[9] = {"OK",          "INVALID_ARGUMENT", "IO",       "FORMAT",  "OUT_OF_MEMORY",
                          "UNSUPPORTED", "DEVICE",           "CALLBACK", "INTERNAL"};
  for (int s = INGOT_OK; s <= INGOT_ERR_INTERNAL; ++s)
    CHECK(strcmp(ingot_status_name(s), names[s]) == 0);
  CHECK(strcmp(ingot_status_name(99), "UNKNOWN") == 0);
  CHECK(strcmp(ingot_status_name(-1), "UNKNOWN") == 0);

  /* elementwise: abs, cos, log, gelu against libm (float64 input) */
  const double xv[5] = {0.25, -1.5, 2.0, 0.7, -0.01};
  const int64_t s5[1] = {5};
  ingot_array x = NULL, r = NULL;
  OK(ingot_array_from_data(xv, s5, 1, INGOT_FLOAT64, &x));
  double got[5];
  OK(ingot_abs(x, &r));
  OK(ingot_array_to_host(r, got, sizeof got));
  for (int i = 0; i < 5; ++i) CHECK(got[i] == fabs(xv[i]));
  ingot_array_free(r);
  OK(ingot_cos(x, &r));
  OK(ingot_array_to_host(r, got, sizeof got));
  for (int i = 0; i < 5; ++i) CHECK(fabs(got[i] - cos(xv[i])) < 1e-14);
  ingot_array_free(r);
  OK(ingot_gelu(x, &r));
  OK(ingot_array_to_host(r, got, sizeof got));
  for (int i = 0; i < 5; ++i) CHECK(fabs(got[i] - gelu_ref(xv[i])) < 1e-13);
  ingot_array_free(r);
  ingot_array ax = NULL;
  OK(ingot_abs(x, &ax));
  OK(ingot_log(ax, &r));
  OK(ingot_array_to_host(r, got, sizeof got));
  for (int i = 0; i < 5; ++i) CHECK(fabs(got[i] - log(fabs(xv[i]))) < 1e-14);
  ingot_array_free(r);
  ingot_array_free(ax);
  r = NULL;
  NULL_HANDLE(ingot_abs(NULL, &r));
  NULL_HANDLE(ingot_cos(NULL, &r));
  NULL_HANDLE(ingot_log(NULL, &r));
  NULL_HANDLE(ingot_gelu(NULL, &r));
  NULL_HANDLE(ingot_stop_gradient(NULL, &r));
  CHECK(r == NULL);

  /* max over all axes and over axis 1 of a [2, 3] array */
  const float mv[6] = {0.5f, -1, 7, 3, 0.25f, -2};
  const int64_t s23[2] = {2, 3};
  ingot_array m = make_f32(mv, s23, 2);
  OK(ingot_max(m, NULL, 0, 0, &r));
  double item = 0;
  OK(ingot_array_item_double(r, &item));
  double want_max = mv[0];
  for (int i = 1; i < 6; ++i) want_max = mv[i] > want_max ? mv[i] : want_max;
  CHECK(item == want_max);
  ingot_array_free(r);
  const int ax1[1] = {1};
  OK(ingot_max(m, ax1, 1, 1, &r));
  int64_t rs[2] = {0};
  int rnd = 0;
  OK(ingot_array_shape(r, rs, 2, &rnd));
  CHECK(rnd == 2 && rs[0] == 2 && rs[1] == 1);
  float rowmax[2];
  read_f32(r, rowmax, 2);
  for (int i = 0; i < 2; ++i) {
    float w = mv[i * 3];
    for (int k = 1; k < 3; ++k) w = mv[i * 3 + k] > w ? mv[i * 3 + k] : w;
    CHECK(rowmax[i] == w);
  }
  ingot_array_free(r);
  NULL_HANDLE(ingot_max(NULL, NULL, 0, 0, &r));

  /* ndim and dim of a known shape (negative axis too; an axis out of range fails) */
  int nd = 0;
  OK(ingot_array_ndim(m, &nd));
  CHECK(nd == 2);
  int64_t d = 0;
  OK(ingot_array_dim(m, 0, &d));
  CHECK(d == 2);
  OK(ingot_array_dim(m, -1, &d));
  CHECK(d == 3);
  CHECK(ingot_array_dim(m, 2, &d) == INGOT_ERR_INVALID_ARGUMENT);
  NULL_HANDLE(ingot_array_ndim(NULL, &nd));
  NULL_HANDLE(ingot_array_dim(NULL, 0, &d));

  /* equal and less (broadcast against a [3] row) give bool */
  const float bv[3] = {0.5f, 0.25f, 7};
  const int64_t s3[1] = {3};
  ingot_array b = make_f32(bv, s3, 1);
  uint8_t eq[6], lt[6];
  int dt = -1;
  OK(ingot_equal(m, b, &r));
  OK(ingot_array_dtype(r, &dt));
  CHECK(dt == INGOT_BOOL);
  OK(ingot_array_to_host(r, eq, sizeof eq));
  ingot_array_free(r);
  OK(ingot_less(m, b, &r));
  OK(ingot_array_to_host(r, lt, sizeof lt));
  ingot_array_free(r);
  for (int i = 0; i < 6; ++i) {
    CHECK(eq[i] == (mv[i] == bv[i % 3]));
    CHECK(lt[i] == (mv[i] < bv[i % 3]));
  }
  NULL_HANDLE(ingot_equal(NULL, b, &r));
  NULL_HANDLE(ingot_equal(m, NULL, &r));
  NULL_HANDLE(ingot_less(NULL, b, &r));
  NULL_HANDLE(ingot_less(m, NULL, &r));

  /* stack of [3] rows along axes 0 and 1 */
  ingot_array rows[2] = {b, NULL};
  OK(ingot_abs(b, &rows[1]));
  ingot_array st = NULL;
  OK(ingot_stack(rows, 2, 0, &st));
  float sv[6];
  OK(ingot_array_shape(st, rs, 2, &rnd));
  CHECK(rnd == 2 && rs[0] == 2 && rs[1] == 3);
  read_f32(st, sv, 6);
  for (int k = 0; k < 3; ++k) CHECK(sv[k] == bv[k] && sv[3 + k] == fabsf(bv[k]));
  ingot_array_free(st);
  OK(ingot_stack(rows, 2, 1, &st));
  OK(ingot_array_shape(st, rs, 2, &rnd));
  CHECK(rnd == 2 && rs[0] == 3 && rs[1] == 2);
  read_f32(st, sv, 6);
  for (int k = 0; k < 3; ++k) CHECK(sv[2 * k] == bv[k] && sv[2 * k + 1] == fabsf(bv[k]));
  ingot_array_free(st);
  st = NULL;
  CHECK(ingot_stack(NULL, 2, 0, &st) == INGOT_ERR_INVALID_ARGUMENT);
  ingot_array with_null[2] = {b, NULL};
  NULL_HANDLE(ingot_stack(with_null, 2, 0, &st));
  ingot_array mixed[2] = {b, m}; /* [3] and [2, 3] */
  CHECK(ingot_stack(mixed, 2, 0, &st) == INGOT_ERR_INVALID_ARGUMENT);
  CHECK(st == NULL);
  ingot_array_free(rows[1]);
  ingot_array_free(b);
  ingot_array_free(m);

  /* zeros and arange */
  const int64_t s24[2] = {2, 4};
  ingot_array z = NULL;
  OK(ingot_zeros(s24, 2, INGOT_FLOAT32, &z));
  float zv[8];
  read_f32(z, zv, 8);
  for (int i = 0; i < 8; ++i) CHECK(zv[i] == 0.0f);
  OK(ingot_array_dtype(z, &dt));
  CHECK(dt == INGOT_FLOAT32);
  ingot_array_free(z);
  CHECK(ingot_zeros(s24, 2, 42, &z) == INGOT_ERR_INVALID_ARGUMENT);
  ingot_array ar = NULL;
  OK(ingot_arange(-1.0, 2.0, 0.5, INGOT_FLOAT64, &ar));
  int64_t n_ar = 0;
  OK(ingot_array_size(ar, &n_ar));
  CHECK(n_ar == 6);
  double arv[6];
  OK(ingot_array_to_host(ar, arv, sizeof arv));
  for (int i = 0; i < 6; ++i) CHECK(arv[i] == -1.0 + 0.5 * i);
  ingot_array_free(ar);
  OK(ingot_arange(0, 5, 1, INGOT_INT32, &ar));
  int32_t ari[5];
  OK(ingot_array_to_host(ar, ari, sizeof ari));
  for (int i = 0; i < 5; ++i) CHECK(ari[i] == i);
  ingot_array_free(ar);
  ar = NULL;
  CHECK(ingot_arange(0, 5, 0, INGOT_FLOAT32, &ar) == INGOT_ERR_INVALID_ARGUMENT);
  CHECK(ar == NULL);

  /* from_int64 / item_int64 round trip beyond 32 bits; retain gives a second handle */
  const int64_t big = -(1LL << 40) - 3;
  ingot_array iv = NULL, iv2 = NULL;
  OK(ingot_array_from_int64(big, INGOT_INT64, &iv));
  OK(ingot_array_dtype(iv, &dt));
  CHECK(dt == INGOT_INT64);
  int64_t back = 0;
  OK(ingot_array_item_int64(iv, &back));
  CHECK(back == big);
  OK(ingot_array_retain(iv, &iv2));
  CHECK(iv2 != NULL && iv2 != iv);
  OK(ingot_array_free(iv));
  back = 0;
  OK(ingot_array_item_int64(iv2, &back)); /* still alive through the retained handle */
  CHECK(back == big);
  OK(ingot_array_free(iv2));
  CHECK(ingot_array_from_int64(1, 42, &iv) == INGOT_ERR_INVALID_ARGUMENT);
  NULL_HANDLE(ingot_array_retain(NULL, &iv));
  NULL_HANDLE(ingot_array_item_int64(NULL, &back));
  CHECK(ingot_array_item_int64(x, &back) == INGOT_ERR_INVALID_ARGUMENT); /* 5 elements */

  /* closure_apply of a C callback equals the C formula; stop_gradient through value_and_grad */
  ingot_closure f = NULL;
  OK(ingot_closure_new(cube_sin, NULL, NULL, &f));
  ingot_array_list outs = NULL, grads = NULL;
  OK(ingot_array_list_new(&outs));
  OK(ingot_array_list_new(&grads));
  OK(ingot_closure_apply(f, &x, 1, outs));
  size_t n_out = 0;
  OK(ingot_array_list_size(outs, &n_out));
  CHECK(n_out == 1);
  ingot_array v = NULL;
  OK(ingot_array_list_get(outs, 0, &v));
  OK(ingot_array_item_double(v, &item));
  CHECK(fabs(item - f_cube_sin(xv, 5)) < 1e-12);
  ingot_array_free(v);
  NULL_HANDLE(ingot_closure_apply(NULL, &x, 1, outs));
  NULL_HANDLE(ingot_closure_apply(f, &x, 1, NULL));
  ingot_closure_free(f);

  ingot_closure sg = NULL;
  OK(ingot_closure_new(x_times_stopped_x, NULL, NULL, &sg));
  OK(ingot_array_list_clear(outs));
  OK(ingot_value_and_grad(sg, &x, 1, NULL, 0, outs, grads));
  ingot_array g = NULL;
  OK(ingot_array_list_get(outs, 0, &v));
  OK(ingot_array_list_get(grads, 0, &g));
  OK(ingot_array_item_double(v, &item));
  double sumsq = 0;
  for (int i = 0; i < 5; ++i) sumsq += xv[i] * xv[i];
  CHECK(fabs(item - sumsq) < 1e-12);
  OK(ingot_array_to_host(g, got, sizeof got));
  for (int i = 0; i < 5; ++i) CHECK(fabs(got[i] - xv[i]) < 1e-12);
  ingot_array_free(v);
  ingot_array_free(g);
  ingot_closure_free(sg);
  ingot_array_list_free(outs);
  ingot_array_list_free(grads);

  /* random: a seed reproduces the global key's numbers; split gives distinct keys */
  const int64_t s8[1] = {8};
  ingot_array u1 = NULL, u2 = NULL, u3 = NULL;
  OK(ingot_random_seed(1234));
  OK(ingot_random_uniform(s8, 1, INGOT_FLOAT32, 0, 1, NULL, &u1));
  OK(ingot_random_seed(1234));
  OK(ingot_random_uniform(s8, 1, INGOT_FLOAT32, 0, 1, NULL, &u2));
  OK(ingot_random_seed(1235));
  OK(ingot_random_uniform(s8, 1, INGOT_FLOAT32, 0, 1, NULL, &u3));
  float r1[8], r2[8], r3[8];
  read_f32(u1, r1, 8);
  read_f32(u2, r2, 8);
  read_f32(u3, r3, 8);
  CHECK(memcmp(r1, r2, sizeof r1) == 0);
  CHECK(memcmp(r1, r3, sizeof r1) != 0);
  for (int i = 0; i < 8; ++i) CHECK(r1[i] >= 0.0f && r1[i] < 1.0f);
  ingot_array_free(u1);
  ingot_array_free(u2);
  ingot_array_free(u3);
  ingot_array key = NULL, keys = NULL, keys_again = NULL;
  OK(ingot_random_key(7, &key));
  OK(ingot_random_split(key, 2, &keys));
  OK(ingot_array_shape(keys, rs, 2, &rnd));
  CHECK(rnd == 2 && rs[0] == 2 && rs[1] == 2);
  uint32_t kw[2], k2[4], k2b[4];
  read_u32(key, kw, 2);
  read_u32(keys, k2, 4);
  CHECK(memcmp(k2, k2 + 2, 2 * sizeof(uint32_t)) != 0); /* the two keys differ */
  CHECK(memcmp(k2, kw, sizeof kw) != 0 && memcmp(k2 + 2, kw, sizeof kw) != 0);
  OK(ingot_random_split(key, 2, &keys_again)); /* deterministic */
  read_u32(keys_again, k2b, 4);
  CHECK(memcmp(k2, k2b, sizeof k2) == 0);
  ingot_array_free(keys_again);
  ingot_array_free(keys);
  ingot_array_free(key);
  keys = NULL;
  NULL_HANDLE(ingot_random_split(NULL, 2, &keys));
  CHECK(keys == NULL);

  /* default device round trip (a CUDA device beyond the count is refused) */
  ingot_device old_dev, cur;
  OK(ingot_default_device(&old_dev));
  const ingot_device cpu = {INGOT_CPU, 0};
  OK(ingot_set_default_device(cpu));
  OK(ingot_default_device(&cur));
  CHECK(cur.type == INGOT_CPU && cur.index == 0);
  int n_cuda = 0;
  OK(ingot_device_count(INGOT_CUDA, &n_cuda));
  const ingot_device missing = {INGOT_CUDA, n_cuda};
  CHECK(ingot_set_default_device(missing) != INGOT_OK);
  CHECK(ingot_last_error()[0] != '\0');
  const ingot_device bad_type = {7, 0};
  CHECK(ingot_set_default_device(bad_type) == INGOT_ERR_INVALID_ARGUMENT);
  OK(ingot_default_device(&cur));
  CHECK(cur.type == INGOT_CPU && cur.index == 0); /* failed calls leave it unchanged */
  OK(ingot_set_default_device(old_dev));
  OK(ingot_default_device(&cur));
  CHECK(cur.type == old_dev.type && cur.index == old_dev.index);

  /* memory: reset_peak sets peak to active; set_cache_limit returns the previous limit */
  ingot_array big_arr = NULL; /* 4 MiB materialized on the CPU (arange allocates its output) */
  OK(ingot_set_default_device(cpu)); /* the suite may run with a GPU as the default device */
  OK(ingot_arange(0, 1 << 20, 1, INGOT_FLOAT32, &big_arr));
  OK(ingot_eval(&big_arr, 1));
  ingot_array_free(big_arr);
  OK(ingot_set_default_device(old_dev));
  ingot_memory_stats ms;
  OK(ingot_memory_get_stats(cpu, &ms));
  CHECK(ms.peak >= ((size_t)4 << 20));
  OK(ingot_memory_reset_peak(cpu));
  OK(ingot_memory_get_stats(cpu, &ms));
  CHECK(ms.peak == ms.active);
  size_t prev = 0, prev2 = 0;
  OK(ingot_memory_set_cache_limit(cpu, 12345, &prev));
  OK(ingot_memory_get_stats(cpu, &ms));
  CHECK(ms.cache <= 12345); /* the new limit trimmed the cache */
  OK(ingot_memory_set_cache_limit(cpu, prev, &prev2));
  CHECK(prev2 == 12345);
  OK(ingot_memory_set_cache_limit(cpu, prev, NULL));
  const ingot_device bad_dev = {7, 0};
  CHECK(ingot_memory_reset_peak(bad_dev) == INGOT_ERR_INVALID_ARGUMENT);
  CHECK(ingot_memory_set_cache_limit(bad_dev, 0, &prev) == INGOT_ERR_INVALID_ARGUMENT);
  ingot_array_free(x);

  /* the fixture model's device, dtype, layers; its tokenizer's vocabulary */
  ingot_model model = NULL;
  ingot_model_options o = {"cpu", "float32", NULL};
  OK(ingot_model_load(INGOT_SOURCE_DIR "/tests/data/models/llama_bf16_tied", &o, &model));
  if (model) {
    int layers = 0, mdt = -1;
    ingot_device mdev = {-1, -1};
    OK(ingot_model_num_layers(model, &layers));
    CHECK(layers == 2); /* config.json: num_hidden_layers */
    OK(ingot_model_dtype(model, &mdt));
    CHECK(mdt == INGOT_FLOAT32); /* the option overrides the checkpoint's bfloat16 */
    OK(ingot_model_device(model, &mdev));
    CHECK(mdev.type == INGOT_CPU && mdev.index == 0);
    ingot_tokenizer t = NULL;
    OK(ingot_model_tokenizer(model, &t));
    int32_t vs = 0, id = -1;
    OK(ingot_tokenizer_vocab_size(t, &vs));
    CHECK(vs == 384);                              /* tokenizer.json: ids 0..383 */
    OK(ingot_tokenizer_token_to_id(t, "He", &id)); /* "Hello" encodes as He, ll, o */
    CHECK(id == 375);
    OK(ingot_tokenizer_token_to_id(t, "<|eos|>", &id));
    CHECK(id == 2);
    CHECK(ingot_tokenizer_token_to_id(t, "no such token", &id) == INGOT_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ingot_last_error(), "no such token") != NULL);
    CHECK(ingot_tokenizer_token_to_id(t, NULL, &id) == INGOT_ERR_INVALID_ARGUMENT);
    ingot_tokenizer_free(t);
    ingot_model_free(model);
  }
  int i32 = 0;
  int32_t i32b = 0;
  ingot_device dd;
  NULL_HANDLE(ingot_model_num_layers(NULL, &i32));
  NULL_HANDLE(ingot_model_dtype(NULL, &i32));
  NULL_HANDLE(ingot_model_device(NULL, &dd));
  NULL_HANDLE(ingot_tokenizer_vocab_size(NULL, &i32b));
  NULL_HANDLE(ingot_tokenizer_token_to_id(NULL, "He", &i32b));
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
  test_remaining_entry_points();
  if (g_failures) {
    fprintf(stderr, "%d check(s) failed\n", g_failures);
    return 1;
  }
  printf("capi C test: all checks passed\n");
  return 0;
}
