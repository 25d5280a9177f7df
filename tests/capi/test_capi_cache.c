/* The prompt-cache entry points of the C API driven from C (C99). Greedy continuations through a
 * cache (prefix prefilled once, rewound between prompts, copied, saved and loaded) equal
 * transformers' (reference.json of the Llama fixture, and of the Gemma 3 fixture whose
 * sliding-window layers have a window of 4); label probabilities of prompts classified over a
 * cached prefix equal the softmax of transformers' float64 logits at the labels (single-token
 * and whole-sequence labels, several batches with padding between the prefix and each row);
 * texts classified through a template prefix cache equal ingot_classify_texts; and the error
 * paths (NULL and freed handles, a cache of another model, stale weights after an adapter is
 * applied, bad ids, prompts that do not start with the cache, bad files, a memory limit) return
 * their status codes and leave the cache usable. Exits nonzero on any failure. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ingot/ingot.h"

#define INVALID(call) CHECK((call) == INGOT_ERR_INVALID_ARGUMENT)

#define FIXTURES INGOT_SOURCE_DIR "/tests/data/models/"

static char g_tmp[64];

/* reference.json of llama_bf16_tied: greedy.prompts / greedy.single (transformers, float32) */
static const int32_t kPrompt0[4] = {1, 375, 288, 83};
static const int32_t kWant0[12] = {293, 152, 192, 186, 228, 108, 231, 228, 232, 215, 70, 205};
static const int32_t kPrompt1[8] = {1, 376, 383, 352, 84, 285, 263, 357};
static const int32_t kWant1[12] = {77, 181, 124, 336, 9, 266, 229, 266, 266, 368, 152, 217};
/* sequences[2].ids, whose logits_f64 (transformers, float64) give the classify references */
static const int32_t kSeq[37] = {1,   41,  315, 93,  300, 284, 347, 264, 278, 69,  79, 270, 265,
                                 84,  282, 277, 264, 319, 284, 280, 264, 316, 83,  84, 271, 264,
                                 266, 294, 288, 280, 367, 274, 76,  278, 372, 334, 288};
/* logits_f64[L - 1][label] for L = 21, 25, 30, 37 and labels 5, 100, 300 */
static const double kLogits[4][3] = {{1.561791065, 0.3603072874, 0.9813453603},
                                     {1.853002826, -1.723293397, -1.306204666},
                                     {2.170147349, -1.412249173, -1.900067188},
                                     {1.942975836, -1.180752428, -0.6172203362}};
/* logits_f64[25][266] and logits_f64[25][7] (kSeq[25] = 264, kSeq[26] = 266) */
static const double kL25[2] = {3.314816134, -1.447262271};

/* gemma3_f32 reference.json: the same figures (labels 5, 100, 200) */
static const int32_t kGPrompt2[11] = {53, 151, 94, 78, 159, 92, 27, 158, 187, 189, 18};
static const int32_t kGWant2[12] = {141, 141, 69, 69, 69, 233, 192, 192, 192, 66, 95, 130};
static const int32_t kGSeq[37] = {240, 125, 55,  173, 107, 44,  5,   72,  149, 183, 157, 28,  125,
                                  69,  182, 252, 50,  101, 103, 162, 95,  41,  103, 63,  160, 151,
                                  123, 234, 160, 98,  51,  244, 9,   106, 66,  116, 13};
static const double kGLogits[4][3] = {{-2.566400828, -0.9535154287, 2.438477359},
                                      {-1.676675847, 1.633231871, -0.9949597984},
                                      {0.2560134085, 1.871194654, -3.985346462},
                                      {-0.8621838354, 1.505177471, 0.3030982475}};
static const int kLens[4] = {21, 25, 30, 37};

static ingot_model load(const char* fixture) {
  ingot_model m = NULL;
  ingot_model_options o = {"cpu", "float32", NULL};
  char dir[512];
  snprintf(dir, sizeof dir, "%s%s", FIXTURES, fixture);
  OK(ingot_model_load(dir, &o, &m));
  return m;
}

static int64_t cache_len(ingot_prompt_cache c) {
  int64_t n = -1;
  OK(ingot_prompt_cache_length(c, &n));
  return n;
}

/* The cache's ids equal a[0..na) followed by b[0..nb). */
static int cache_holds(ingot_prompt_cache c, const int32_t* a, size_t na, const int32_t* b,
                       size_t nb) {
  int32_t* ids = NULL;
  size_t n = 0;
  OK(ingot_prompt_cache_tokens(c, &ids, &n));
  int ok = n == na + nb && (na == 0 || memcmp(ids, a, na * sizeof *a) == 0) &&
           (nb == 0 || memcmp(ids + na, b, nb * sizeof *b) == 0);
  ingot_free(ids);
  return ok;
}

static ingot_generate_options greedy12(void) {
  ingot_generate_options go = ingot_generate_options_default();
  go.max_tokens = 12;
  go.stop_at_eos = 0;
  return go;
}

/* Generates through the cache and checks the ids against `want` (12). */
static void gen_check(ingot_model m, ingot_prompt_cache c, const int32_t* p, size_t np,
                      const int32_t* want) {
  ingot_generate_options go = greedy12();
  ingot_generation g;
  OK(ingot_generate_cached(m, c, p, np, &go, NULL, NULL, NULL, &g));
  CHECK(g.n_tokens == 12 && memcmp(g.tokens, want, 12 * sizeof(int32_t)) == 0);
  CHECK(g.metrics.generated_tokens == 12);
  ingot_generation_free(&g);
  /* the cache holds the prompt and every generated id but the last */
  CHECK(cache_holds(c, p, np, want, 11));
}

static int stop_after_three(void* ctx, int row, int32_t id) {
  (void)row, (void)id;
  return ++*(int*)ctx >= 3;
}

static void test_generate(void) {
  ingot_model m = load("llama_bf16_tied");
  if (!m) return;
  ingot_prompt_cache c = NULL;
  OK(ingot_prompt_cache_new(m, &c));
  CHECK(cache_len(c) == 0);
  int32_t dummy = 0;
  int32_t* ids = &dummy; /* overwritten with NULL */
  size_t n = 99;
  OK(ingot_prompt_cache_tokens(c, &ids, &n));
  CHECK(ids == NULL && n == 0);
  int64_t bytes = -1;
  OK(ingot_prompt_cache_nbytes(c, &bytes));
  CHECK(bytes == 0);

  /* prefill a prefix once, then continue it */
  OK(ingot_prompt_cache_prefill(m, c, kPrompt0, 2));
  CHECK(cache_len(c) == 2 && cache_holds(c, kPrompt0, 2, NULL, 0));
  OK(ingot_prompt_cache_nbytes(c, &bytes));
  CHECK(bytes > 0);
  OK(ingot_prompt_cache_prefill(m, c, kPrompt0 + 2, 1)); /* appends */
  CHECK(cache_holds(c, kPrompt0, 3, NULL, 0));
  gen_check(m, c, kPrompt0, 4, kWant0);
  gen_check(m, c, kPrompt0, 4, kWant0); /* the whole prompt is cached: rewinds to 3 ids */
  gen_check(m, c, kPrompt1, 8, kWant1); /* shares only BOS: rewinds to 1 */

  /* a copy is independent of the original */
  ingot_prompt_cache d = NULL;
  OK(ingot_prompt_cache_copy(c, &d));
  CHECK(cache_holds(d, kPrompt1, 8, kWant1, 11));
  gen_check(m, d, kPrompt0, 4, kWant0);
  CHECK(cache_holds(c, kPrompt1, 8, kWant1, 11));
  gen_check(m, c, kPrompt1, 8, kWant1);

  /* trim and clear */
  OK(ingot_prompt_cache_trim(c, 5));
  CHECK(cache_holds(c, kPrompt1, 5, NULL, 0));
  INVALID(ingot_prompt_cache_trim(c, 6));
  INVALID(ingot_prompt_cache_trim(c, -1));
  CHECK(cache_len(c) == 5);
  gen_check(m, c, kPrompt1, 8, kWant1);
  OK(ingot_prompt_cache_clear(c));
  CHECK(cache_len(c) == 0);
  OK(ingot_prompt_cache_nbytes(c, &bytes));
  CHECK(bytes == 0);
  gen_check(m, c, kPrompt0, 4, kWant0);

  /* cancelled from the token callback: the cache holds what was generated */
  int count = 0;
  ingot_generate_options go = greedy12();
  ingot_generation g;
  OK(ingot_prompt_cache_clear(c));
  OK(ingot_generate_cached(m, c, kPrompt0, 4, &go, NULL, NULL, NULL, &g));
  ingot_generation_free(&g);
  count = 0;
  OK(ingot_generate_cached(m, c, kPrompt0, 4, &go, stop_after_three, NULL, &count, &g));
  CHECK(g.finish_reason == INGOT_FINISH_CANCELLED && g.n_tokens == 3);
  CHECK(memcmp(g.tokens, kWant0, 3 * sizeof(int32_t)) == 0);
  ingot_generation_free(&g);
  CHECK(cache_holds(c, kPrompt0, 4, kWant0, 2));

  /* save, load into a new cache, continue */
  char path[128], bad[128];
  snprintf(path, sizeof path, "%s/cache.safetensors", g_tmp);
  snprintf(bad, sizeof bad, "%s/bad.safetensors", g_tmp);
  OK(ingot_prompt_cache_save(c, path));
  ingot_prompt_cache l = NULL;
  OK(ingot_prompt_cache_load(m, path, &l));
  CHECK(cache_holds(l, kPrompt0, 4, kWant0, 2));
  gen_check(m, l, kPrompt0, 4, kWant0);
  ingot_prompt_cache_free(l);
  l = NULL;
  FILE* f = fopen(bad, "w");
  CHECK(f != NULL);
  if (f) {
    fputs("not a safetensors file", f);
    fclose(f);
  }
  CHECK(ingot_prompt_cache_load(m, bad, &l) == INGOT_ERR_FORMAT && l == NULL);
  CHECK(ingot_prompt_cache_load(m, "/nonexistent/cache.safetensors", &l) == INGOT_ERR_IO);
  CHECK(l == NULL);
  /* a file of another model */
  ingot_model gm = load("gemma3_f32");
  if (gm) {
    CHECK(ingot_prompt_cache_load(gm, path, &l) == INGOT_ERR_FORMAT && l == NULL);
    ingot_model_free(gm);
  }
  remove(path);
  remove(bad);

  ingot_prompt_cache_free(d);
  ingot_prompt_cache_free(c);
  ingot_model_free(m);
}

/* Softmax of three values. */
static void softmax3(const double* x, double* p) {
  double m = x[0] > x[1] ? x[0] : x[1];
  m = m > x[2] ? m : x[2];
  double z = 0;
  for (int k = 0; k < 3; ++k) z += (p[k] = exp(x[k] - m));
  for (int k = 0; k < 3; ++k) p[k] /= z;
}

/* Prompts kSeq[:21], [:25], [:30], [:37] classified over a cache holding kSeq[:20] (batches of
 * two, so rows of different lengths are padded), against the reference logits. */
static void classify_check(ingot_model m, const int32_t* seq, const int32_t* labels3,
                           const double (*logits)[3]) {
  ingot_prompt_cache c = NULL;
  OK(ingot_prompt_cache_new(m, &c));
  OK(ingot_prompt_cache_prefill(m, c, seq, 20));
  const int32_t* prompts[4] = {seq, seq, seq, seq};
  size_t lens[4];
  for (int i = 0; i < 4; ++i) lens[i] = (size_t)kLens[i];
  const int32_t* labels[3] = {labels3, labels3 + 1, labels3 + 2};
  const size_t label_lens[3] = {1, 1, 1};
  double probs[12], plain[12];
  OK(ingot_classify_cached(m, c, prompts, lens, 4, labels, label_lens, 3, 2, probs));
  for (int i = 0; i < 4; ++i) {
    double want[3];
    softmax3(logits[i], want);
    for (int k = 0; k < 3; ++k) CHECK(fabs(probs[i * 3 + k] - want[k]) < 1e-4);
  }
  /* the same as ingot_classify, and the cache is unchanged */
  OK(ingot_classify(m, prompts, lens, 4, labels, label_lens, 3, 0, plain));
  for (int j = 0; j < 12; ++j) CHECK(fabs(probs[j] - plain[j]) < 1e-5);
  CHECK(cache_holds(c, seq, 20, NULL, 0));
  /* batch size 0 (64: one batch) gives the same */
  OK(ingot_classify_cached(m, c, prompts, lens, 4, labels, label_lens, 3, 0, plain));
  for (int j = 0; j < 12; ++j) CHECK(fabs(probs[j] - plain[j]) < 1e-5);
  ingot_prompt_cache_free(c);
}

static void test_classify(void) {
  ingot_model m = load("llama_bf16_tied");
  if (!m) return;
  const int32_t labels3[3] = {5, 100, 300};
  classify_check(m, kSeq, labels3, kLogits);

  /* whole-sequence labels (same first id): P(A) : P(B) = exp(l25[266]) : exp(l25[7]) */
  ingot_prompt_cache c = NULL;
  OK(ingot_prompt_cache_new(m, &c));
  OK(ingot_prompt_cache_prefill(m, c, kSeq, 20));
  const int32_t la[2] = {264, 266}, lb[2] = {264, 7};
  const int32_t* labels[2] = {la, lb};
  const size_t label_lens[2] = {2, 2};
  const int32_t* prompts[2] = {kSeq, kSeq};
  const size_t lens[2] = {25, 22};
  double probs[4];
  OK(ingot_classify_cached(m, c, prompts, lens, 2, labels, label_lens, 2, 0, probs));
  const double pa = 1.0 / (1.0 + exp(kL25[1] - kL25[0]));
  CHECK(fabs(probs[0] - pa) < 1e-4 && fabs(probs[1] - (1 - pa)) < 1e-4);
  double plain[4];
  OK(ingot_classify(m, prompts, lens, 2, labels, label_lens, 2, 0, plain));
  for (int j = 0; j < 4; ++j) CHECK(fabs(probs[j] - plain[j]) < 1e-5);

  /* an empty cache classifies as ingot_classify */
  ingot_prompt_cache e = NULL;
  OK(ingot_prompt_cache_new(m, &e));
  OK(ingot_classify_cached(m, e, prompts, lens, 2, labels, label_lens, 2, 0, probs));
  for (int j = 0; j < 4; ++j) CHECK(fabs(probs[j] - plain[j]) < 1e-5);
  ingot_prompt_cache_free(e);

  /* a prompt may equal the cached prefix (the batch then reuses one id fewer) */
  const size_t eq_lens[2] = {25, 20};
  OK(ingot_classify_cached(m, c, prompts, eq_lens, 2, labels, label_lens, 2, 1, probs));
  OK(ingot_classify(m, prompts, eq_lens, 2, labels, label_lens, 2, 0, plain));
  for (int j = 0; j < 4; ++j) CHECK(fabs(probs[j] - plain[j]) < 1e-5);
  CHECK(fabs(probs[0] - pa) < 1e-4);

  /* errors: prompts that do not continue the cache, bad labels and arguments */
  const size_t short_lens[2] = {25, 19}; /* shorter than the cached prefix */
  INVALID(ingot_classify_cached(m, c, prompts, short_lens, 2, labels, label_lens, 2, 0, probs));
  const int32_t* other[2] = {kSeq, kPrompt0};
  const size_t other_lens[2] = {25, 4};
  INVALID(ingot_classify_cached(m, c, other, other_lens, 2, labels, label_lens, 2, 0, probs));
  INVALID(ingot_classify_cached(m, c, prompts, lens, 2, labels, label_lens, 1, 0, probs));
  INVALID(ingot_classify_cached(m, c, prompts, lens, 2, labels, label_lens, 2, -1, probs));
  INVALID(ingot_classify_cached(m, c, prompts, lens, 2, labels, label_lens, 2, 0, NULL));
  INVALID(ingot_classify_cached(m, c, NULL, lens, 2, labels, label_lens, 2, 0, probs));
  const int32_t lbad[1] = {384}; /* vocab is 384 */
  const int32_t* bad_labels[2] = {la, lbad};
  const size_t bad_lens[2] = {2, 1};
  INVALID(ingot_classify_cached(m, c, prompts, lens, 2, bad_labels, bad_lens, 2, 0, probs));
  const size_t empty_lens[2] = {2, 0};
  INVALID(ingot_classify_cached(m, c, prompts, lens, 2, labels, empty_lens, 2, 0, probs));
  OK(ingot_classify_cached(m, c, prompts, lens, 0, labels, label_lens, 2, 0, NULL)); /* none */
  CHECK(cache_holds(c, kSeq, 20, NULL, 0));
  ingot_prompt_cache_free(c);
  ingot_model_free(m);
}

/* Continuations scored after prompts that start with a cached kSeq[:20], against transformers'
 * log-softmax of the float64 logits (computed from reference.json). */
static void test_score(void) {
  ingot_model m = load("llama_bf16_tied");
  if (!m) return;
  ingot_prompt_cache c = NULL;
  OK(ingot_prompt_cache_new(m, &c));
  OK(ingot_prompt_cache_prefill(m, c, kSeq, 20));
  /* (prompt length, continuation length): kSeq[:P] then kSeq[P:P+C] */
  const size_t pl[4] = {25, 20, 22, 30}, cl[4] = {3, 2, 1, 7};
  const double want_tok[13] = {-9.5417690395,  -5.5238538658, -6.664760707,   -7.1502219675,
                               -12.634691845,  -2.9656353854, -10.0316258672, -10.1366563307,
                               -13.0922530517, -8.6766831628, -8.4536377355,  -6.1343932702,
                               -8.7483257672};
  const double want_sum[4] = {-21.7303836123, -19.7849138125, -2.9656353854, -65.2735751853};
  const int32_t* prompts[4] = {kSeq, kSeq, kSeq, kSeq};
  const int32_t* conts[4] = {kSeq + 25, kSeq + 20, kSeq + 22, kSeq + 30};
  for (int bs = 0; bs <= 3; bs += 3) { /* 0: one batch of 16; 3: batches of 3 and 1 */
    double sums[4], toks[13];
    OK(ingot_score_cached(m, c, prompts, pl, conts, cl, 4, bs, sums, toks));
    for (int i = 0; i < 4; ++i) CHECK(fabs(sums[i] - want_sum[i]) < 1e-4);
    for (int j = 0; j < 13; ++j) CHECK(fabs(toks[j] - want_tok[j]) < 1e-4);
    double plain[4], plain_toks[13];
    OK(ingot_score(m, prompts, pl, conts, cl, 4, 0, plain, plain_toks));
    for (int i = 0; i < 4; ++i) CHECK(fabs(sums[i] - plain[i]) < 1e-4);
    OK(ingot_score_cached(m, c, prompts, pl, conts, cl, 4, bs, sums, NULL)); /* sums only */
    for (int i = 0; i < 4; ++i) CHECK(fabs(sums[i] - want_sum[i]) < 1e-4);
  }
  CHECK(cache_holds(c, kSeq, 20, NULL, 0));
  /* errors */
  double sums[4];
  const size_t short_pl[1] = {19}, zero_cl[1] = {0};
  INVALID(ingot_score_cached(m, c, prompts, short_pl, conts, cl, 1, 0, sums, NULL));
  INVALID(ingot_score_cached(m, c, prompts, pl, conts, zero_cl, 1, 0, sums, NULL));
  const int32_t* other[1] = {kPrompt0};
  const size_t other_pl[1] = {4};
  INVALID(ingot_score_cached(m, c, other, other_pl, conts, cl, 1, 0, sums, NULL));
  INVALID(ingot_score_cached(m, c, prompts, pl, conts, cl, 1, -1, sums, NULL));
  INVALID(ingot_score_cached(m, c, prompts, pl, conts, cl, 1, 0, NULL, NULL));
  INVALID(ingot_score_cached(m, c, prompts, pl, NULL, cl, 1, 0, sums, NULL));
  const int32_t bad[1] = {384};
  const int32_t* bad_conts[1] = {bad};
  const size_t one[1] = {1};
  INVALID(ingot_score_cached(m, c, prompts, pl, bad_conts, one, 1, 0, sums, NULL));
  INVALID(ingot_score_cached(m, NULL, prompts, pl, conts, cl, 1, 0, sums, NULL));
  INVALID(ingot_score_cached(NULL, c, prompts, pl, conts, cl, 1, 0, sums, NULL));
  OK(ingot_score_cached(m, c, NULL, NULL, NULL, NULL, 0, 0, NULL, NULL)); /* none */
  /* an empty cache scores as ingot_score */
  ingot_prompt_cache e = NULL;
  OK(ingot_prompt_cache_new(m, &e));
  double es[4];
  OK(ingot_score_cached(m, e, prompts, pl, conts, cl, 4, 0, es, NULL));
  for (int i = 0; i < 4; ++i) CHECK(fabs(es[i] - want_sum[i]) < 1e-4);
  ingot_prompt_cache_free(e);
  ingot_prompt_cache_free(c);
  ingot_model_free(m);
}

/* Gemma 3 (sliding-window layers, window 4): generation and classification over a cached
 * prefix longer than the window. */
static void test_sliding_window(void) {
  ingot_model m = load("gemma3_f32");
  if (!m) return;
  ingot_prompt_cache c = NULL;
  OK(ingot_prompt_cache_new(m, &c));
  OK(ingot_prompt_cache_prefill(m, c, kGPrompt2, 7));
  gen_check(m, c, kGPrompt2, 11, kGWant2);
  gen_check(m, c, kGPrompt2, 11, kGWant2); /* rewound across the window */
  ingot_prompt_cache_free(c);
  const int32_t labels3[3] = {5, 100, 200};
  classify_check(m, kGSeq, labels3, kGLogits);
  ingot_model_free(m);
}

static void test_classify_texts(void) {
  ingot_model m = load("llama_bf16_tied");
  if (!m) return;
  const char* tmpl = "Review: {text}\nSentiment:";
  const char* labels[3] = {" good", " bad", " mixed"};
  const char* texts[3] = {"The food was great.", "Slow service and cold soup!", "ok"};
  ingot_prompt_cache c = NULL;
  OK(ingot_prompt_cache_new(m, &c));
  OK(ingot_prompt_cache_prefill_template(m, c, tmpl));
  /* the template's head with BOS, less its last token */
  ingot_tokenizer t = NULL;
  OK(ingot_model_tokenizer(m, &t));
  int32_t* head = NULL;
  size_t nh = 0;
  OK(ingot_tokenizer_encode(t, "Review: ", 1, &head, &nh));
  CHECK(nh >= 2 && cache_holds(c, head, nh - 1, NULL, 0));
  double probs[9], plain[9];
  OK(ingot_classify_texts_cached(m, c, tmpl, labels, 3, texts, 3, 0, probs));
  OK(ingot_classify_texts(m, tmpl, labels, 3, texts, 3, 0, plain));
  for (int j = 0; j < 9; ++j) CHECK(fabs(probs[j] - plain[j]) < 1e-5);
  for (int i = 0; i < 3; ++i)
    CHECK(fabs(probs[i * 3] + probs[i * 3 + 1] + probs[i * 3 + 2] - 1) < 1e-9);
  OK(ingot_classify_texts_cached(m, c, tmpl, labels, 3, texts, 3, 1, plain)); /* batches of 1 */
  for (int j = 0; j < 9; ++j) CHECK(fabs(probs[j] - plain[j]) < 1e-5);

  /* errors */
  INVALID(ingot_prompt_cache_prefill_template(m, c, tmpl)); /* not empty */
  INVALID(ingot_classify_texts_cached(m, c, "no placeholder", labels, 3, texts, 3, 0, probs));
  INVALID(ingot_classify_texts_cached(m, c, "{text}{text}", labels, 3, texts, 3, 0, probs));
  INVALID(ingot_classify_texts_cached(m, c, NULL, labels, 3, texts, 3, 0, probs));
  INVALID(ingot_classify_texts_cached(m, c, tmpl, labels, 1, texts, 3, 0, probs));
  const char* empty_label[2] = {" good", ""};
  INVALID(ingot_classify_texts_cached(m, c, tmpl, empty_label, 2, texts, 3, 0, probs));
  const char* null_text[2] = {"fine", NULL};
  INVALID(ingot_classify_texts_cached(m, c, tmpl, labels, 3, null_text, 2, 0, probs));
  /* filled prompts that do not start with the cache's ids */
  INVALID(ingot_classify_texts_cached(m, c, "Other: {text}", labels, 3, texts, 3, 0, probs));
  ingot_prompt_cache e = NULL;
  OK(ingot_prompt_cache_new(m, &e));
  INVALID(ingot_prompt_cache_prefill_template(m, e, "no placeholder"));
  INVALID(ingot_prompt_cache_prefill_template(m, e, NULL));
  CHECK(cache_len(e) == 0);
  OK(ingot_prompt_cache_prefill_template(m, e, "{text} is")); /* BOS alone is dropped too */
  CHECK(cache_len(e) == 0);
  ingot_prompt_cache_free(e);
  /* a model without a tokenizer */
  ingot_model g = load("gemma3_f32");
  if (g) {
    OK(ingot_prompt_cache_new(g, &e));
    INVALID(ingot_prompt_cache_prefill_template(g, e, tmpl));
    INVALID(ingot_classify_texts_cached(g, e, tmpl, labels, 3, texts, 3, 0, probs));
    ingot_prompt_cache_free(e);
    ingot_model_free(g);
  }
  ingot_free(head);
  ingot_tokenizer_free(t);
  ingot_prompt_cache_free(c);
  ingot_model_free(m);
}

static void test_errors(void) {
  ingot_model m = load("llama_bf16_tied");
  if (!m) return;
  ingot_prompt_cache c = NULL, out = NULL;
  ingot_generation g;
  ingot_generate_options go = greedy12();
  int64_t v = 0;
  int32_t* ids = NULL;
  size_t n = 0;
  double probs[4];
  const int32_t* prompts[1] = {kPrompt0};
  const size_t lens[1] = {4};
  const int32_t l0[1] = {5}, l1[1] = {6};
  const int32_t* labels[2] = {l0, l1};
  const size_t label_lens[2] = {1, 1};

  /* NULL handles and outputs */
  INVALID(ingot_prompt_cache_new(NULL, &c));
  INVALID(ingot_prompt_cache_new(m, NULL));
  OK(ingot_prompt_cache_free(NULL));
  INVALID(ingot_prompt_cache_copy(NULL, &out));
  INVALID(ingot_prompt_cache_prefill(m, NULL, kPrompt0, 4));
  INVALID(ingot_prompt_cache_prefill_template(m, NULL, "{text}"));
  INVALID(ingot_prompt_cache_length(NULL, &v));
  INVALID(ingot_prompt_cache_tokens(NULL, &ids, &n));
  INVALID(ingot_prompt_cache_nbytes(NULL, &v));
  INVALID(ingot_prompt_cache_trim(NULL, 0));
  INVALID(ingot_prompt_cache_clear(NULL));
  INVALID(ingot_prompt_cache_save(NULL, "/tmp/x"));
  INVALID(ingot_generate_cached(m, NULL, kPrompt0, 4, &go, NULL, NULL, NULL, &g));
  INVALID(ingot_classify_cached(m, NULL, prompts, lens, 1, labels, label_lens, 2, 0, probs));
  INVALID(ingot_classify_texts_cached(m, NULL, "{text}", NULL, 0, NULL, 0, 0, NULL));
  INVALID(ingot_prompt_cache_load(NULL, "/tmp/x", &out));

  OK(ingot_prompt_cache_new(m, &c));
  INVALID(ingot_prompt_cache_copy(c, NULL));
  INVALID(ingot_prompt_cache_length(c, NULL));
  INVALID(ingot_prompt_cache_tokens(c, NULL, &n));
  INVALID(ingot_prompt_cache_tokens(c, &ids, NULL));
  INVALID(ingot_prompt_cache_nbytes(c, NULL));
  INVALID(ingot_prompt_cache_save(c, NULL));
  INVALID(ingot_prompt_cache_load(m, NULL, &out));
  INVALID(ingot_prompt_cache_load(m, "/tmp/x", NULL));
  INVALID(ingot_prompt_cache_prefill(NULL, c, kPrompt0, 4));
  INVALID(ingot_generate_cached(NULL, c, kPrompt0, 4, &go, NULL, NULL, NULL, &g));
  INVALID(ingot_generate_cached(m, c, kPrompt0, 4, &go, NULL, NULL, NULL, NULL));
  INVALID(ingot_classify_cached(NULL, c, prompts, lens, 1, labels, label_lens, 2, 0, probs));

  /* bad ids: nothing is added */
  OK(ingot_prompt_cache_prefill(m, c, kPrompt0, 2));
  INVALID(ingot_prompt_cache_prefill(m, c, kPrompt0, 0));
  INVALID(ingot_prompt_cache_prefill(m, c, NULL, 3));
  const int32_t bad[3] = {1, 384, 2}, neg[1] = {-1};
  INVALID(ingot_prompt_cache_prefill(m, c, bad, 3));
  INVALID(ingot_prompt_cache_prefill(m, c, neg, 1));
  CHECK(cache_holds(c, kPrompt0, 2, NULL, 0));
  INVALID(ingot_generate_cached(m, c, bad, 3, &go, NULL, NULL, NULL, &g));
  INVALID(ingot_generate_cached(m, c, kPrompt0, 0, &go, NULL, NULL, NULL, &g));
  go.max_tokens = -1;
  INVALID(ingot_generate_cached(m, c, kPrompt0, 4, &go, NULL, NULL, NULL, &g));
  go = greedy12();
  gen_check(m, c, kPrompt0, 4, kWant0); /* still usable */

  /* a cache of another model (a second load of the same checkpoint is another model) */
  ingot_model m2 = load("llama_bf16_tied");
  ingot_prompt_cache c2 = NULL;
  OK(ingot_prompt_cache_new(m2, &c2));
  INVALID(ingot_prompt_cache_prefill(m, c2, kPrompt0, 4));
  INVALID(ingot_generate_cached(m, c2, kPrompt0, 4, &go, NULL, NULL, NULL, &g));
  INVALID(ingot_classify_cached(m, c2, prompts, lens, 1, labels, label_lens, 2, 0, probs));
  OK(ingot_prompt_cache_prefill(m2, c2, kPrompt0, 4));
  /* ... and after that model is freed, the cache still answers what it holds and is freed */
  ingot_model_free(m2);
  INVALID(ingot_prompt_cache_prefill(m, c2, kPrompt0, 4));
  CHECK(cache_holds(c2, kPrompt0, 4, NULL, 0));
  ingot_prompt_cache_free(c2);

  /* stale weights: an adapter applied after the cache was filled */
  ingot_adapter a = NULL;
  OK(ingot_adapter_new(m, NULL, &a));
  OK(ingot_model_apply_adapter(m, a));
  INVALID(ingot_generate_cached(m, c, kPrompt0, 4, &go, NULL, NULL, NULL, &g));
  INVALID(ingot_prompt_cache_prefill(m, c, kPrompt0, 4));
  INVALID(ingot_classify_cached(m, c, prompts, lens, 1, labels, label_lens, 2, 0, probs));
  char path[128];
  snprintf(path, sizeof path, "%s/c.safetensors", g_tmp);
  INVALID(ingot_prompt_cache_load(m, path, &out)); /* an adapter is applied */
  CHECK(out == NULL);
  /* cleared, it is filled with the adapter applied (a fresh adapter equals the base model) */
  OK(ingot_prompt_cache_clear(c));
  gen_check(m, c, kPrompt0, 4, kWant0);
  INVALID(ingot_prompt_cache_save(c, path)); /* filled with an adapter: a file cannot say so */
  OK(ingot_model_remove_adapter(m));
  INVALID(ingot_generate_cached(m, c, kPrompt0, 4, &go, NULL, NULL, NULL, &g));
  OK(ingot_prompt_cache_clear(c));
  OK(ingot_prompt_cache_save(c, path)); /* an empty cache saves */
  remove(path);
  ingot_adapter_free(a);

  /* out of memory under a limit: a clean error, the cache as it was, usable again after */
  OK(ingot_prompt_cache_prefill(m, c, kPrompt0, 2));
  ingot_device cpu = {INGOT_CPU, 0};
  ingot_memory_stats st;
  OK(ingot_memory_get_stats(cpu, &st));
  size_t prev = 0;
  OK(ingot_memory_set_limit(cpu, st.active + 256, &prev));
  CHECK(ingot_prompt_cache_prefill(m, c, kPrompt0 + 2, 2) == INGOT_ERR_OUT_OF_MEMORY);
  CHECK(cache_holds(c, kPrompt0, 2, NULL, 0)); /* as it was */
  CHECK(ingot_generate_cached(m, c, kPrompt0, 4, &go, NULL, NULL, NULL, &g) ==
        INGOT_ERR_OUT_OF_MEMORY);
  CHECK(ingot_classify_cached(m, c, prompts, lens, 1, labels, label_lens, 2, 0, probs) ==
        INGOT_ERR_OUT_OF_MEMORY);
  OK(ingot_memory_set_limit(cpu, prev, NULL));
  int64_t len = cache_len(c);
  CHECK(len == 0 || len == 2); /* a failed generation may empty the cache */
  gen_check(m, c, kPrompt0, 4, kWant0);

  ingot_prompt_cache_free(c);
  ingot_model_free(m);
}

int main(void) {
  snprintf(g_tmp, sizeof g_tmp, "/tmp/ingot_capi_cache_XXXXXX");
  if (!mkdtemp(g_tmp)) {
    perror("mkdtemp");
    return 1;
  }
  test_generate();
  test_classify();
  test_score();
  test_sliding_window();
  test_classify_texts();
  test_errors();
  rmdir(g_tmp);
  if (g_failures) {
    fprintf(stderr, "%d check(s) failed\n", g_failures);
    return 1;
  }
  printf("capi prompt-cache C test: all checks passed\n");
  return 0;
}
