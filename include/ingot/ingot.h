/* ingot.h: the stable C ABI of ingot (C99). Arrays and ops, transforms over C callbacks,
 * optimizers, safetensors, and the LLM level (model, tokenizer, generate, score, classify,
 * embed). Every call returns an ingot_status; ingot_last_error() holds the message.
 *
 * Ownership: every handle a call writes to an `out` parameter belongs to the caller and is
 * released with its *_free function (free functions accept NULL). Strings and id lists the
 * library allocates (char**, int32_t**) are released with ingot_free. Handles passed to a
 * callback are borrowed for the duration of the call. */
#ifndef INGOT_INGOT_H
#define INGOT_INGOT_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define INGOT_API __declspec(dllexport)
#elif defined(__GNUC__)
#define INGOT_API __attribute__((visibility("default")))
#else
#define INGOT_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** ABI version: bumped on any incompatible change of this header. */
#define INGOT_ABI_VERSION 1

/* ---------------------------------------------------------------- status, errors, memory */

/** Status of every call (DESIGN.md §8 error kinds map one to one). */
typedef enum ingot_status {
  INGOT_OK = 0,
  INGOT_ERR_INVALID_ARGUMENT = 1, /**< bad handle, shape, dtype, axis, option */
  INGOT_ERR_IO = 2,               /**< a file could not be read or written */
  INGOT_ERR_FORMAT = 3,           /**< a corrupt or unsupported file */
  INGOT_ERR_OUT_OF_MEMORY = 4,
  INGOT_ERR_UNSUPPORTED = 5, /**< not available in this build or for this input */
  INGOT_ERR_DEVICE = 6,      /**< a CUDA call failed */
  INGOT_ERR_CALLBACK = 7,    /**< a user callback reported failure */
  INGOT_ERR_INTERNAL = 8     /**< an internal invariant failed (a bug) */
} ingot_status;

/** Library version string, e.g. "0.1.0". */
INGOT_API const char* ingot_version(void);
/** The ABI version the library was built with (compare with INGOT_ABI_VERSION). */
INGOT_API int ingot_abi_version(void);
/** Message of the last failed call on this thread ("" after a success). Valid until the next
 * ingot call on this thread. */
INGOT_API const char* ingot_last_error(void);
/** Sets this thread's error message (for callbacks that fail: return nonzero after this). */
INGOT_API void ingot_set_error(const char* message);
/** Frees a string or buffer the library allocated (NULL is fine). */
INGOT_API void ingot_free(void* p);
/** Name of a status ("INVALID_ARGUMENT"). */
INGOT_API const char* ingot_status_name(int status);

/* ---------------------------------------------------------------- dtypes and devices */

typedef enum ingot_dtype {
  INGOT_BOOL = 0,
  INGOT_UINT8 = 1,
  INGOT_INT8 = 2,
  INGOT_INT32 = 3,
  INGOT_UINT32 = 4,
  INGOT_INT64 = 5,
  INGOT_FLOAT16 = 6,
  INGOT_BFLOAT16 = 7,
  INGOT_FLOAT32 = 8,
  INGOT_FLOAT64 = 9
} ingot_dtype;

/** Bytes per element of a dtype (0 for an invalid value). */
INGOT_API size_t ingot_dtype_size(int dtype);
/** Name of a dtype ("float32"; "" for an invalid value). */
INGOT_API const char* ingot_dtype_name(int dtype);

typedef enum ingot_device_type { INGOT_CPU = 0, INGOT_CUDA = 1 } ingot_device_type;
/** A device: {INGOT_CPU, 0} or {INGOT_CUDA, N}. */
typedef struct ingot_device {
  int type;
  int index;
} ingot_device;

/** Parses "cpu", "cuda", "cuda:N", "gpu". */
INGOT_API int ingot_device_parse(const char* name, ingot_device* out);
/** Number of devices of a type (1 for the CPU; 0 CUDA devices in a CPU build). */
INGOT_API int ingot_device_count(int type, int* out);
INGOT_API int ingot_default_device(ingot_device* out);
INGOT_API int ingot_set_default_device(ingot_device d);
/** Waits for all queued work on a device. */
INGOT_API int ingot_synchronize(ingot_device d);

/** Allocator figures of a device, in bytes. */
typedef struct ingot_memory_stats {
  size_t active;
  size_t peak;
  size_t cache;
} ingot_memory_stats;
INGOT_API int ingot_memory_get_stats(ingot_device d, ingot_memory_stats* out);
/** Caps active memory (0 = none); `previous` (may be NULL) receives the old limit. */
INGOT_API int ingot_memory_set_limit(ingot_device d, size_t bytes, size_t* previous);
INGOT_API int ingot_memory_set_cache_limit(ingot_device d, size_t bytes, size_t* previous);
INGOT_API int ingot_memory_clear_cache(ingot_device d);
INGOT_API int ingot_memory_reset_peak(ingot_device d);

/* ---------------------------------------------------------------- arrays */

/** A lazily evaluated n-dimensional array (a reference to a graph node). */
typedef struct ingot_array_s* ingot_array;
/** Called when a zero-copy array no longer needs the caller's buffer. */
typedef void (*ingot_release_fn)(void* ctx, void* data);

/** Array of `shape` copied from row-major host `data` of `dtype`. */
INGOT_API int ingot_array_from_data(const void* data, const int64_t* shape, int ndim, int dtype,
                                    ingot_array* out);
/** Array over the caller's buffer without a copy (CPU); `release(ctx, data)` is called once when
 * the last array using it is gone (may be NULL). `data` must be aligned for the dtype. */
INGOT_API int ingot_array_from_data_nocopy(void* data, const int64_t* shape, int ndim, int dtype,
                                           ingot_release_fn release, void* ctx, ingot_array* out);
/** 0-d array of a value converted to dtype. */
INGOT_API int ingot_array_from_double(double value, int dtype, ingot_array* out);
INGOT_API int ingot_array_from_int64(int64_t value, int dtype, ingot_array* out);
/** A new handle to the same array (free both). */
INGOT_API int ingot_array_retain(ingot_array a, ingot_array* out);
INGOT_API int ingot_array_free(ingot_array a);

INGOT_API int ingot_array_ndim(ingot_array a, int* out);
/** Copies up to `cap` dimensions into `shape`; *ndim gets the real count (may be NULL). */
INGOT_API int ingot_array_shape(ingot_array a, int64_t* shape, int cap, int* ndim);
INGOT_API int ingot_array_dim(ingot_array a, int axis, int64_t* out);
INGOT_API int ingot_array_size(ingot_array a, int64_t* out);
INGOT_API int ingot_array_nbytes(ingot_array a, size_t* out);
INGOT_API int ingot_array_dtype(ingot_array a, int* out);
INGOT_API int ingot_array_device(ingot_array a, ingot_device* out);

/** Evaluates and waits for the results. */
INGOT_API int ingot_eval(const ingot_array* arrays, size_t n);
/** Evaluates without waiting for device work (CUDA); errors may surface at the next read or
 * ingot_synchronize. On the CPU this is the same as ingot_eval. */
INGOT_API int ingot_eval_async(const ingot_array* arrays, size_t n);
/** Evaluates and copies the elements row-major in the array's dtype into `dst`; `dst_bytes`
 * must equal the array's nbytes. */
INGOT_API int ingot_array_to_host(ingot_array a, void* dst, size_t dst_bytes);
/** The single value of a size-1 array. */
INGOT_API int ingot_array_item_double(ingot_array a, double* out);
INGOT_API int ingot_array_item_int64(ingot_array a, int64_t* out);

/** A growable list of array handles (results of multi-output calls, callback outputs). */
typedef struct ingot_array_list_s* ingot_array_list;
INGOT_API int ingot_array_list_new(ingot_array_list* out);
INGOT_API int ingot_array_list_free(ingot_array_list l);
INGOT_API int ingot_array_list_size(ingot_array_list l, size_t* out);
/** Appends a reference to `a` (the caller keeps its own handle). */
INGOT_API int ingot_array_list_push(ingot_array_list l, ingot_array a);
/** A new handle (owned by the caller) to element i. */
INGOT_API int ingot_array_list_get(ingot_array_list l, size_t i, ingot_array* out);
INGOT_API int ingot_array_list_clear(ingot_array_list l);

/* ---------------------------------------------------------------- creation */

INGOT_API int ingot_zeros(const int64_t* shape, int ndim, int dtype, ingot_array* out);
INGOT_API int ingot_ones(const int64_t* shape, int ndim, int dtype, ingot_array* out);
INGOT_API int ingot_full(const int64_t* shape, int ndim, double value, int dtype, ingot_array* out);
INGOT_API int ingot_arange(double start, double stop, double step, int dtype, ingot_array* out);
/** `a` on device `d` (the only way arrays change device). */
INGOT_API int ingot_to_device(ingot_array a, ingot_device d, ingot_array* out);

/* ---------------------------------------------------------------- elementwise ops */

INGOT_API int ingot_negative(ingot_array a, ingot_array* out);
INGOT_API int ingot_abs(ingot_array a, ingot_array* out);
INGOT_API int ingot_exp(ingot_array a, ingot_array* out);
INGOT_API int ingot_log(ingot_array a, ingot_array* out);
INGOT_API int ingot_sigmoid(ingot_array a, ingot_array* out);
INGOT_API int ingot_silu(ingot_array a, ingot_array* out);
INGOT_API int ingot_gelu(ingot_array a, ingot_array* out);
INGOT_API int ingot_tanh(ingot_array a, ingot_array* out);
INGOT_API int ingot_sin(ingot_array a, ingot_array* out);
INGOT_API int ingot_cos(ingot_array a, ingot_array* out);
INGOT_API int ingot_sqrt(ingot_array a, ingot_array* out);
INGOT_API int ingot_rsqrt(ingot_array a, ingot_array* out);
INGOT_API int ingot_reciprocal(ingot_array a, ingot_array* out);
INGOT_API int ingot_square(ingot_array a, ingot_array* out);
INGOT_API int ingot_stop_gradient(ingot_array a, ingot_array* out);

INGOT_API int ingot_add(ingot_array a, ingot_array b, ingot_array* out);
INGOT_API int ingot_subtract(ingot_array a, ingot_array b, ingot_array* out);
INGOT_API int ingot_multiply(ingot_array a, ingot_array b, ingot_array* out);
INGOT_API int ingot_divide(ingot_array a, ingot_array b, ingot_array* out);
INGOT_API int ingot_power(ingot_array a, ingot_array b, ingot_array* out);
INGOT_API int ingot_maximum(ingot_array a, ingot_array b, ingot_array* out);
INGOT_API int ingot_minimum(ingot_array a, ingot_array b, ingot_array* out);
INGOT_API int ingot_equal(ingot_array a, ingot_array b, ingot_array* out);
INGOT_API int ingot_less(ingot_array a, ingot_array b, ingot_array* out);
INGOT_API int ingot_greater(ingot_array a, ingot_array b, ingot_array* out);
/** cond ? a : b with broadcasting. */
INGOT_API int ingot_where(ingot_array cond, ingot_array a, ingot_array b, ingot_array* out);
INGOT_API int ingot_astype(ingot_array a, int dtype, ingot_array* out);
/** a @ b (NumPy rules, batch dimensions broadcast). */
INGOT_API int ingot_matmul(ingot_array a, ingot_array b, ingot_array* out);

/* ---------------------------------------------------------------- reductions */

/** Reductions over `axes` (n_axes == 0: over all axes). */
INGOT_API int ingot_sum(ingot_array a, const int* axes, int n_axes, int keepdims, ingot_array* out);
INGOT_API int ingot_mean(ingot_array a, const int* axes, int n_axes, int keepdims,
                         ingot_array* out);
INGOT_API int ingot_max(ingot_array a, const int* axes, int n_axes, int keepdims, ingot_array* out);
INGOT_API int ingot_logsumexp(ingot_array a, const int* axes, int n_axes, int keepdims,
                              ingot_array* out);
/** Softmax over `axes` (n_axes == 0: the last axis). */
INGOT_API int ingot_softmax(ingot_array a, const int* axes, int n_axes, ingot_array* out);
/** Index (uint32) of the first maximum along an axis. */
INGOT_API int ingot_argmax(ingot_array a, int axis, int keepdims, ingot_array* out);
/** The k largest values along an axis, descending. */
INGOT_API int ingot_topk(ingot_array a, int k, int axis, ingot_array* out);
/** Their indices (uint32). */
INGOT_API int ingot_topk_indices(ingot_array a, int k, int axis, ingot_array* out);

/* ---------------------------------------------------------------- shape and indexing */

INGOT_API int ingot_reshape(ingot_array a, const int64_t* shape, int ndim, ingot_array* out);
/** Permutes axes (n_axes == 0: reverses them). */
INGOT_API int ingot_transpose(ingot_array a, const int* axes, int n_axes, ingot_array* out);
INGOT_API int ingot_expand_dims(ingot_array a, const int* axes, int n_axes, ingot_array* out);
/** Removes size-1 axes (all of them when n_axes == 0). */
INGOT_API int ingot_squeeze(ingot_array a, const int* axes, int n_axes, ingot_array* out);
INGOT_API int ingot_broadcast_to(ingot_array a, const int64_t* shape, int ndim, ingot_array* out);
INGOT_API int ingot_concatenate(const ingot_array* arrays, size_t n, int axis, ingot_array* out);
INGOT_API int ingot_stack(const ingot_array* arrays, size_t n, int axis, ingot_array* out);
/** a[start:stop:strides] over all axes (strides may be NULL for 1). */
INGOT_API int ingot_slice(ingot_array a, const int64_t* start, const int64_t* stop,
                          const int64_t* strides, int ndim, ingot_array* out);
/** Copy of a with the slice replaced by update (broadcast). */
INGOT_API int ingot_slice_update(ingot_array a, ingot_array update, const int64_t* start,
                                 const int64_t* stop, const int64_t* strides, int ndim,
                                 ingot_array* out);
INGOT_API int ingot_take(ingot_array a, ingot_array indices, int axis, ingot_array* out);
INGOT_API int ingot_take_along_axis(ingot_array a, ingot_array indices, int axis, ingot_array* out);
INGOT_API int ingot_put_along_axis(ingot_array a, ingot_array indices, ingot_array values, int axis,
                                   ingot_array* out);

/* ---------------------------------------------------------------- random */

/** A key from a seed. */
INGOT_API int ingot_random_key(uint64_t seed, ingot_array* out);
/** `num` keys derived from `key` ([num, 2]). */
INGOT_API int ingot_random_split(ingot_array key, int num, ingot_array* out);
/** Seeds the global key used when `key` is NULL. */
INGOT_API int ingot_random_seed(uint64_t seed);
INGOT_API int ingot_random_normal(const int64_t* shape, int ndim, int dtype, double loc,
                                  double scale, ingot_array key, ingot_array* out);
INGOT_API int ingot_random_uniform(const int64_t* shape, int ndim, int dtype, double low,
                                   double high, ingot_array key, ingot_array* out);

/* ---------------------------------------------------------------- fast ops */

/** RMS norm over the last axis; weight may be NULL. */
INGOT_API int ingot_fast_rms_norm(ingot_array x, ingot_array weight, float eps, ingot_array* out);
/** Layer norm over the last axis; weight and bias may be NULL. */
INGOT_API int ingot_fast_layer_norm(ingot_array x, ingot_array weight, ingot_array bias, float eps,
                                    ingot_array* out);
/** Rotary embedding of the first `dims` features of x [..., L, D]; traditional = interleaved. */
INGOT_API int ingot_fast_rope(ingot_array x, int dims, int traditional, float base, float scale,
                              int64_t offset, ingot_array* out);
/** softmax(q k^T * scale [+ mask]) v; mask may be NULL (bool keep-mask or additive float). */
INGOT_API int ingot_fast_sdpa(ingot_array q, ingot_array k, ingot_array v, float scale, int causal,
                              ingot_array mask, ingot_array* out);

/* ---------------------------------------------------------------- functions and transforms */

/** A user function: reads `n` borrowed inputs, pushes its outputs to `outputs`, returns 0 (or
 * nonzero after ingot_set_error on failure). */
typedef int (*ingot_fn)(void* ctx, const ingot_array* inputs, size_t n, ingot_array_list outputs);
/** A function handle: a C callback, or what a transform made from one. */
typedef struct ingot_closure_s* ingot_closure;
/** Wraps a callback; `ctx_free(ctx)` (may be NULL) runs when the last closure using it is gone. */
INGOT_API int ingot_closure_new(ingot_fn fn, void* ctx, void (*ctx_free)(void*),
                                ingot_closure* out);
INGOT_API int ingot_closure_free(ingot_closure f);
/** Calls f; its outputs are appended to `outputs`. */
INGOT_API int ingot_closure_apply(ingot_closure f, const ingot_array* inputs, size_t n,
                                  ingot_array_list outputs);

/** Outputs of f(primals) and cotangents of the primals for the outputs' cotangents. */
INGOT_API int ingot_vjp(ingot_closure f, const ingot_array* primals, size_t n_primals,
                        const ingot_array* cotangents, size_t n_cotangents,
                        ingot_array_list outputs, ingot_array_list grads);
/** Outputs of f(primals) and their tangents for the primals' tangents (forward mode). */
INGOT_API int ingot_jvp(ingot_closure f, const ingot_array* primals, size_t n_primals,
                        const ingot_array* tangents, size_t n_tangents, ingot_array_list outputs,
                        ingot_array_list tangents_out);
/** f's outputs and the gradients of its first output (a scalar) w.r.t. inputs[argnums[i]]
 * (argnums NULL / n_argnums 0: input 0). */
INGOT_API int ingot_value_and_grad(ingot_closure f, const ingot_array* inputs, size_t n,
                                   const int* argnums, size_t n_argnums, ingot_array_list outputs,
                                   ingot_array_list grads);
/** f that recomputes its forward graph in the backward pass (gradient checkpointing). */
INGOT_API int ingot_checkpoint(ingot_closure f, ingot_closure* out);
/** f traced and optimised once per input signature (f must be pure). */
INGOT_API int ingot_compile(ingot_closure f, int shapeless, ingot_closure* out);

/* ---------------------------------------------------------------- named arrays, io, optim */

/** An ordered map name -> array (safetensors contents, parameter sets). */
typedef struct ingot_named_arrays_s* ingot_named_arrays;
INGOT_API int ingot_named_arrays_new(ingot_named_arrays* out);
INGOT_API int ingot_named_arrays_free(ingot_named_arrays m);
INGOT_API int ingot_named_arrays_size(ingot_named_arrays m, size_t* out);
/** Name of entry i (sorted order), valid while the map is unchanged. */
INGOT_API int ingot_named_arrays_name(ingot_named_arrays m, size_t i, const char** out);
/** Entry by name (a new handle). */
INGOT_API int ingot_named_arrays_get(ingot_named_arrays m, const char* name, ingot_array* out);
/** Sets or replaces an entry (stores a reference). */
INGOT_API int ingot_named_arrays_set(ingot_named_arrays m, const char* name, ingot_array a);

/** Every tensor of a safetensors file (memory-mapped, zero-copy where possible). */
INGOT_API int ingot_safetensors_load(const char* path, ingot_named_arrays* out);
INGOT_API int ingot_safetensors_save(const char* path, ingot_named_arrays arrays);

/** An optimizer with per-parameter state. */
typedef struct ingot_optimizer_s* ingot_optimizer;
/** AdamW (PyTorch semantics) with a constant learning rate. */
INGOT_API int ingot_optimizer_adamw(float lr, float beta1, float beta2, float eps,
                                    float weight_decay, ingot_optimizer* out);
/** New parameter values after one step, written to `updated` (a new map; params unchanged). */
INGOT_API int ingot_optimizer_apply(ingot_optimizer o, ingot_named_arrays params,
                                    ingot_named_arrays grads, ingot_named_arrays* updated);
INGOT_API int ingot_optimizer_step(ingot_optimizer o, int64_t* out);
INGOT_API int ingot_optimizer_free(ingot_optimizer o);

/* ---------------------------------------------------------------- tokenizer */

typedef struct ingot_tokenizer_s* ingot_tokenizer;
/** Loads dir/tokenizer.json (+ tokenizer_config.json, generation_config.json). */
INGOT_API int ingot_tokenizer_load(const char* dir, ingot_tokenizer* out);
INGOT_API int ingot_tokenizer_free(ingot_tokenizer t);
/** Encodes UTF-8 text; *ids is freed with ingot_free. */
INGOT_API int ingot_tokenizer_encode(ingot_tokenizer t, const char* text, int add_special_tokens,
                                     int32_t** ids, size_t* n);
/** Decodes ids to a NUL-terminated UTF-8 string freed with ingot_free. */
INGOT_API int ingot_tokenizer_decode(ingot_tokenizer t, const int32_t* ids, size_t n,
                                     int skip_special_tokens, char** text);
INGOT_API int ingot_tokenizer_vocab_size(ingot_tokenizer t, int32_t* out);
/** Id of a token string; INGOT_ERR_INVALID_ARGUMENT when absent. */
INGOT_API int ingot_tokenizer_token_to_id(ingot_tokenizer t, const char* token, int32_t* out);
/** The EOS ids (freed with ingot_free; *n may be 0). */
INGOT_API int ingot_tokenizer_eos_ids(ingot_tokenizer t, int32_t** ids, size_t* n);
/** Renders a conversation (JSON array of {"role","content"} or an object with "messages")
 * with the chat template. add_generation_prompt: 1/0, or -1 for the conversation's own flag. */
INGOT_API int ingot_tokenizer_apply_chat_template(ingot_tokenizer t, const char* conversation,
                                                  int add_generation_prompt, char** text);

/** Incremental detokenizer (never splits a UTF-8 character). Keeps the tokenizer alive. */
typedef struct ingot_stream_decoder_s* ingot_stream_decoder;
INGOT_API int ingot_stream_decoder_new(ingot_tokenizer t, int skip_special_tokens,
                                       ingot_stream_decoder* out);
INGOT_API int ingot_stream_decoder_free(ingot_stream_decoder d);
/** Adds one id; *piece gets the newly completed text (maybe ""), freed with ingot_free. */
INGOT_API int ingot_stream_decoder_step(ingot_stream_decoder d, int32_t id, char** piece);
/** The text held back, and resets. */
INGOT_API int ingot_stream_decoder_finish(ingot_stream_decoder d, char** piece);

/* ---------------------------------------------------------------- models */

typedef struct ingot_model_s* ingot_model;
/** How a model is loaded (strings may be NULL: the defaults). */
typedef struct ingot_model_options {
  const char* device;  /**< "cpu", "cuda:0"; NULL: the default device */
  const char* dtype;   /**< "bfloat16", "float32"; NULL: the checkpoint's */
  const char* adapter; /**< LoRA adapter directory applied unfused (PEFT or mlx-lm); NULL: none */
} ingot_model_options;
/** Loads a Hugging Face checkpoint directory (and its tokenizer when present), with a LoRA
 * adapter when opts->adapter is set. opts may be NULL. */
INGOT_API int ingot_model_load(const char* dir, const ingot_model_options* opts, ingot_model* out);
INGOT_API int ingot_model_free(ingot_model m);
/** The model's tokenizer (a new handle); INGOT_ERR_INVALID_ARGUMENT when it has none. */
INGOT_API int ingot_model_tokenizer(ingot_model m, ingot_tokenizer* out);
INGOT_API int ingot_model_vocab_size(ingot_model m, int64_t* out);
INGOT_API int ingot_model_hidden_size(ingot_model m, int64_t* out);
INGOT_API int ingot_model_num_layers(ingot_model m, int* out);
INGOT_API int ingot_model_dtype(ingot_model m, int* out);
INGOT_API int ingot_model_device(ingot_model m, ingot_device* out);
/** Architecture name ("llama"), valid while the model lives. */
INGOT_API int ingot_model_architecture(ingot_model m, const char** out);
/** ids [B, L] -> logits [B, L, V] float32 (lazy). */
INGOT_API int ingot_model_forward(ingot_model m, ingot_array ids, ingot_array* out);

/** Why a generation row stopped. */
typedef enum ingot_finish_reason {
  INGOT_FINISH_LENGTH = 0,
  INGOT_FINISH_EOS = 1,
  INGOT_FINISH_STOP = 2,
  INGOT_FINISH_CANCELLED = 3
} ingot_finish_reason;

/** Options of generation; start from ingot_generate_options_default(). */
typedef struct ingot_generate_options {
  int64_t max_tokens;
  float temperature; /**< 0: greedy */
  int top_k;
  float top_p;
  float min_p;
  float repetition_penalty;
  uint64_t seed;
  int stop_at_eos;         /**< add the tokenizer's EOS ids to the stop ids */
  int skip_special_tokens; /**< drop special tokens from the text */
  const int32_t* stop_ids; /**< extra ids that end a row */
  size_t n_stop_ids;
  int64_t prefill_chunk;           /**< prompt columns per forward pass (0: all) */
  const char* const* stop_strings; /**< text that ends generation (cut before it) */
  size_t n_stop_strings;
} ingot_generate_options;
INGOT_API ingot_generate_options ingot_generate_options_default(void);

/** Called after each sampled token: return 0 to continue, nonzero to cancel that row. */
typedef int (*ingot_token_fn)(void* ctx, int row, int32_t id);
/** Called with each piece of streamed text (whole UTF-8 characters, `len` bytes). */
typedef void (*ingot_text_fn)(void* ctx, const char* piece, size_t len);

/** Timing and size figures of a generation. */
typedef struct ingot_generation_metrics {
  int64_t prompt_tokens;
  int64_t generated_tokens;
  double prefill_seconds;
  double decode_seconds;
  double time_to_first_token;
  double prefill_tokens_per_second;
  double decode_tokens_per_second;
  int64_t peak_memory_bytes;
} ingot_generation_metrics;

/** Result of ingot_generate; release with ingot_generation_free. */
typedef struct ingot_generation {
  int32_t* tokens; /**< generated ids */
  size_t n_tokens;
  char* text; /**< decoded text ("" without a tokenizer) */
  int finish_reason;
  ingot_generation_metrics metrics;
} ingot_generation;
/** Generates from prompt ids; on_token / on_text (may be NULL) stream the output. */
INGOT_API int ingot_generate(ingot_model m, const int32_t* prompt, size_t n_prompt,
                             const ingot_generate_options* opts, ingot_token_fn on_token,
                             ingot_text_fn on_text, void* ctx, ingot_generation* out);
INGOT_API void ingot_generation_free(ingot_generation* g);

/** Result of ingot_generate_batch: row i's ids are tokens[offsets[i] .. offsets[i+1]). */
typedef struct ingot_batch_generation {
  int32_t* tokens;
  size_t* offsets; /**< n_rows + 1 entries */
  int* finish_reasons;
  size_t n_rows;
  ingot_generation_metrics metrics;
} ingot_batch_generation;
/** Generates continuations of several prompts in one left-padded batch. */
INGOT_API int ingot_generate_batch(ingot_model m, const int32_t* const* prompts,
                                   const size_t* lengths, size_t n,
                                   const ingot_generate_options* opts, ingot_token_fn on_token,
                                   void* ctx, ingot_batch_generation* out);
INGOT_API void ingot_batch_generation_free(ingot_batch_generation* g);

/** Log-probabilities of continuations after prompts. sums[n] receives the totals;
 * token_logprobs (may be NULL) receives every continuation token's log-probability,
 * concatenated (sum of cont_lengths entries). batch_size 0: 16. */
INGOT_API int ingot_score(ingot_model m, const int32_t* const* prompts,
                          const size_t* prompt_lengths, const int32_t* const* continuations,
                          const size_t* cont_lengths, size_t n, int64_t batch_size, double* sums,
                          double* token_logprobs);
/** Label probabilities of token-id prompts: probs[i * n_labels + k]. batch_size 0: sized
 * automatically (64 prompts on the CPU; on a GPU from the prompt lengths and free memory). */
INGOT_API int ingot_classify(ingot_model m, const int32_t* const* prompts, const size_t* lengths,
                             size_t n, const int32_t* const* labels, const size_t* label_lengths,
                             size_t n_labels, int64_t batch_size, double* probs);
/** Label probabilities of texts through a template containing "{text}" once (labels are
 * strings, tokenized as they continue the filled template): probs[i * n_labels + k].
 * batch_size 0: sized automatically, as ingot_classify. */
INGOT_API int ingot_classify_texts(ingot_model m, const char* template_text,
                                   const char* const* labels, size_t n_labels,
                                   const char* const* texts, size_t n_texts, int64_t batch_size,
                                   double* probs);
typedef enum ingot_pooling { INGOT_POOL_LAST = 0, INGOT_POOL_MEAN = 1 } ingot_pooling;
/** Pooled final hidden states (float32): out[i * hidden_size + j]. batch_size 0: sized
 * automatically, as ingot_classify. */
INGOT_API int ingot_embed(ingot_model m, const int32_t* const* prompts, const size_t* lengths,
                          size_t n, int pooling, int64_t batch_size, float* out);

/* ---------------------------------------------------------------- prompt caches */

/** The keys and values of every layer of one model for a sequence of token ids (one row), and
 * those ids: prefill a shared prompt prefix once, then continue it (ingot_generate_cached) or
 * score or classify prompts that start with it (ingot_score_cached, ingot_classify_cached,
 * ingot_classify_texts_cached)
 * without computing the prefix again. Buffers live on the model's device; every layer keeps all
 * positions (sliding-window layers too), so the cache can be rewound anywhere. A cache fits only
 * the model it was made for, and only while that model's weights stay as they were when it was
 * filled: after an adapter is applied, removed or fused, a non-empty cache is refused
 * (INGOT_ERR_INVALID_ARGUMENT) until it is cleared. One call at a time per cache. */
typedef struct ingot_prompt_cache_s* ingot_prompt_cache;
/** An empty cache for model m. */
INGOT_API int ingot_prompt_cache_new(ingot_model m, ingot_prompt_cache* out);
INGOT_API int ingot_prompt_cache_free(ingot_prompt_cache c);
/** An independent copy (cheap: buffers are shared until one of the two is extended). */
INGOT_API int ingot_prompt_cache_copy(ingot_prompt_cache c, ingot_prompt_cache* out);
/** Appends ids (n > 0, inside the vocabulary) to the cache, computing their keys and values
 * now. On failure the cache is left as it was. */
INGOT_API int ingot_prompt_cache_prefill(ingot_model m, ingot_prompt_cache c, const int32_t* ids,
                                         size_t n);
/** Fills an empty cache with the ids every filling of `template_text` ("{text}" once) starts
 * with: the text before "{text}" encoded with special tokens (BOS), minus its last token
 * (which could merge with the text). Needs the model's tokenizer. */
INGOT_API int ingot_prompt_cache_prefill_template(ingot_model m, ingot_prompt_cache c,
                                                  const char* template_text);
/** Number of token ids (positions) held. */
INGOT_API int ingot_prompt_cache_length(ingot_prompt_cache c, int64_t* out);
/** The ids held (freed with ingot_free; NULL when *n is 0). */
INGOT_API int ingot_prompt_cache_tokens(ingot_prompt_cache c, int32_t** ids, size_t* n);
/** Bytes of keys and values held. */
INGOT_API int ingot_prompt_cache_nbytes(ingot_prompt_cache c, int64_t* out);
/** Rewinds to the first `length` ids (0 <= length <= the length held). */
INGOT_API int ingot_prompt_cache_trim(ingot_prompt_cache c, int64_t length);
/** Empties the cache (it may then be filled again, also after the model's weights changed). */
INGOT_API int ingot_prompt_cache_clear(ingot_prompt_cache c);
/** Writes the cache to a safetensors file (keys, values, ids; loadable on any device). Refused
 * for a cache filled while an adapter was applied (the file cannot record it). */
INGOT_API int ingot_prompt_cache_save(ingot_prompt_cache c, const char* path);
/** A new cache for model m read from a file written by ingot_prompt_cache_save:
 * INGOT_ERR_IO when it cannot be read, INGOT_ERR_FORMAT when it is not a prompt cache of a model
 * of this architecture, shapes and dtype (a file of `ingot generate --prompt-cache` fits when
 * the model has no sliding-window layers). Refused while m has an adapter applied. */
INGOT_API int ingot_prompt_cache_load(ingot_model m, const char* path, ingot_prompt_cache* out);

/** ingot_generate through a cache: the longest common prefix of the prompt and the cache's ids
 * is reused (the cache is rewound to it and only the rest is prefilled); afterwards the cache
 * holds the prompt and the generated ids (all but the last). To continue one prefix many ways,
 * pass each call the prefix plus its own tokens (the cache rewinds to the prefix each time), or
 * generate from ingot_prompt_cache_copy copies to keep the original as it is. After a failed
 * call the cache may be left empty. */
INGOT_API int ingot_generate_cached(ingot_model m, ingot_prompt_cache c, const int32_t* prompt,
                                    size_t n_prompt, const ingot_generate_options* opts,
                                    ingot_token_fn on_token, ingot_text_fn on_text, void* ctx,
                                    ingot_generation* out);
/** ingot_score of full prompts that all start with the cache's ids (a prompt may equal them, as
 * when every continuation follows one shared prompt): the cached prefix is not computed again,
 * and the cache is not changed (it may be reused by any number of calls). batch_size 0: 16. */
INGOT_API int ingot_score_cached(ingot_model m, ingot_prompt_cache c, const int32_t* const* prompts,
                                 const size_t* prompt_lengths, const int32_t* const* continuations,
                                 const size_t* cont_lengths, size_t n, int64_t batch_size,
                                 double* sums, double* token_logprobs);
/** ingot_classify of full prompts that all start with the cache's ids (a prompt may equal
 * them): the cached prefix is not computed again, and the cache is not changed (it may be
 * reused by any number of calls). An empty cache classifies as ingot_classify does. batch_size
 * 0: sized automatically, as ingot_classify. */
INGOT_API int ingot_classify_cached(ingot_model m, ingot_prompt_cache c,
                                    const int32_t* const* prompts, const size_t* lengths, size_t n,
                                    const int32_t* const* labels, const size_t* label_lengths,
                                    size_t n_labels, int64_t batch_size, double* probs);
/** ingot_classify_texts through a cache (see ingot_prompt_cache_prefill_template): every filled
 * and tokenized template must start with the cache's ids (INGOT_ERR_INVALID_ARGUMENT naming the
 * first text that does not). The cache is not changed. batch_size 0: sized automatically, as
 * ingot_classify. */
INGOT_API int ingot_classify_texts_cached(ingot_model m, ingot_prompt_cache c,
                                          const char* template_text, const char* const* labels,
                                          size_t n_labels, const char* const* texts, size_t n_texts,
                                          int64_t batch_size, double* probs);

/* ---------------------------------------------------------------- LoRA adapters and training */

/** A LoRA adapter made for one model (its float32 factors, config and target layers). */
typedef struct ingot_adapter_s* ingot_adapter;

/** What a fresh adapter adapts; start from ingot_lora_config_default(). */
typedef struct ingot_lora_config {
  int rank;            /**< r (default 8) */
  float alpha;         /**< scale = alpha / r (default 16) */
  float dropout;       /**< LoRA dropout while training (default 0) */
  const char* targets; /**< "q_proj,v_proj" (the default when NULL), module names, "all-linear" */
  int num_layers;      /**< adapt only the last N decoder layers (0: all) */
  int use_rslora;      /**< scale = alpha / sqrt(r) */
  uint64_t seed;       /**< seed of lora_A's init (lora_B starts at 0) */
} ingot_lora_config;
INGOT_API ingot_lora_config ingot_lora_config_default(void);

/** A fresh adapter for model m (PEFT's init: the adapted model equals the base). */
INGOT_API int ingot_adapter_new(ingot_model m, const ingot_lora_config* c, ingot_adapter* out);
/** Loads an adapter directory (PEFT adapter_model.safetensors or mlx-lm adapters.safetensors,
 * with adapter_config.json) for model m, without applying it. */
INGOT_API int ingot_adapter_load(ingot_model m, const char* dir, ingot_adapter* out);
INGOT_API int ingot_adapter_free(ingot_adapter a);
/** Writes dir/adapter_model.safetensors and dir/adapter_config.json (PEFT layout); creates dir. */
INGOT_API int ingot_adapter_save(ingot_adapter a, const char* dir);
INGOT_API int ingot_adapter_rank(ingot_adapter a, int* out);
INGOT_API int ingot_adapter_scale(ingot_adapter a, float* out);
/** Number of adapted linear layers. */
INGOT_API int ingot_adapter_num_targets(ingot_adapter a, size_t* out);
/** Number of trainable elements. */
INGOT_API int ingot_adapter_num_parameters(ingot_adapter a, int64_t* out);
/** The factors ("<module>.lora_A.weight" [r, in], "...lora_B.weight" [out, r]) as a new map. */
INGOT_API int ingot_adapter_parameters(ingot_adapter a, ingot_named_arrays* out);

/** Applies the adapter to its model unfused (base weights untouched; a snapshot of the factors is
 * taken now). One adapter at a time: INGOT_ERR_INVALID_ARGUMENT when one is applied already. */
INGOT_API int ingot_model_apply_adapter(ingot_model m, ingot_adapter a);
/** Removes the applied adapter (fine when there is none). */
INGOT_API int ingot_model_remove_adapter(ingot_model m);
/** Merges the adapter into the model's weights (W + scale * B A in float32, rounded once to the
 * model's dtype); an applied adapter must be this one, and is removed. */
INGOT_API int ingot_model_fuse_adapter(ingot_model m, ingot_adapter a);
/** Writes the model as a Hugging Face checkpoint in out_dir (model.safetensors in `dtype`, NULL:
 * the model's; config and tokenizer files copied from the directory it was loaded from). An
 * unfused adapter is refused (fuse it first). */
INGOT_API int ingot_model_save(ingot_model m, const char* out_dir, const char* dtype);

/** Options of ingot_lora_train; start from ingot_train_options_default(). */
typedef struct ingot_train_options {
  int64_t iters; /**< optimizer steps (default 100) */
  int batch_size;
  int grad_accum;
  float learning_rate;
  int64_t warmup;       /**< linear warmup steps from 0 */
  const char* schedule; /**< "cosine" (NULL), "linear", "constant" */
  float weight_decay;
  float max_grad_norm; /**< 0: no clipping */
  uint64_t seed;       /**< batch order */
  int grad_checkpoint; /**< recompute each block in the backward pass */
  int mask_prompt;     /**< loss on completions / assistant messages only */
  int64_t max_seq_len; /**< truncate examples (0: no limit) */
  int64_t eval_every;  /**< validation loss every N steps (0: never; needs valid data) */
  int64_t eval_batches;
  const char* out_dir; /**< the final adapter is saved here (NULL: not saved) */
} ingot_train_options;
INGOT_API ingot_train_options ingot_train_options_default(void);

/** One optimizer step's figures, passed to the progress callback. */
typedef struct ingot_train_progress {
  int64_t step; /**< 1-based, after the update */
  int64_t iters;
  float loss;
  float learning_rate;
  float grad_norm;
  int64_t tokens; /**< counted targets of the step */
  double seconds;
  double val_loss; /**< NaN when not evaluated at this step */
} ingot_train_progress;
/** Called after every step: return 0 to continue, nonzero to stop (the adapter keeps the values
 * of the last finished step; the call still returns INGOT_OK with cancelled = 1). */
typedef int (*ingot_train_fn)(void* ctx, const ingot_train_progress* p);

typedef struct ingot_train_result {
  int64_t steps; /**< steps run by this call */
  float final_loss;
  double val_loss; /**< last validation loss (NaN when none) */
  int64_t tokens;
  double seconds;
  int cancelled;
} ingot_train_result;

/** Fine-tunes adapter `a` on model m with JSONL data ({"text"}, {"prompt","completion"} or
 * {"messages"} lines; valid_jsonl may be NULL) tokenized by the model's tokenizer. Malformed
 * lines are INGOT_ERR_FORMAT naming FILE:LINE; the model must not have an adapter applied. */
INGOT_API int ingot_lora_train(ingot_model m, ingot_adapter a, const char* train_jsonl,
                               const char* valid_jsonl, const ingot_train_options* opts,
                               ingot_train_fn on_step, void* ctx, ingot_train_result* out);

/** Checkpoints, resuming and the loss curve of ingot_lora_train_ex: what `ingot lora train`
 * does with --save-every, --resume and --loss-log. Start from
 * ingot_train_checkpoint_options_default() (everything off). (A struct of its own, so that
 * ingot_train_options keeps its ABI 1 layout.) */
typedef struct ingot_train_checkpoint_options {
  /** A resumable checkpoint DIR/checkpoint-<step> every N steps (0: never), DIR being
   * checkpoint_dir, or opts->out_dir when that is NULL (one of them is required). Each holds
   * the adapter (PEFT layout), optimizer.safetensors (AdamW state) and trainer_state.json (step,
   * data position, seed, batch size, number of examples); it is written to DIR.tmp and renamed,
   * so an interrupted save never leaves half a checkpoint. */
  int64_t save_every;
  const char* checkpoint_dir;
  /** Continue from such a checkpoint directory (NULL: start at step 0): the adapter gets its
   * factors, the optimizer its state, and training runs steps step+1 .. opts->iters on the data
   * where the checkpoint left it. With the same data, options and adapter config as the run that
   * wrote it, the result is bit for bit that of an uninterrupted run. A missing directory is
   * INGOT_ERR_IO; a corrupt one, or one written for other data or options (number of examples,
   * batch size, seed), for an adapter of another rank, scale or target modules, or by full
   * fine-tuning is INGOT_ERR_FORMAT; the adapter is then unchanged. */
  const char* resume;
  /** Loss-curve JSONL, appended (parent directories created): one line per step
   * {"grad_norm", "loss", "lr", "step", "tok_per_s", "tokens"} and one per validation
   * {"step", "val_loss"}; non-finite numbers are null. NULL: none (unlike the CLI, there is no
   * default path). */
  const char* loss_log;
} ingot_train_checkpoint_options;
INGOT_API ingot_train_checkpoint_options ingot_train_checkpoint_options_default(void);

/** ingot_lora_train with checkpoints, resuming and a loss curve (ckpt NULL: the same as
 * ingot_lora_train). After a resume, progress steps continue from the checkpoint's step and
 * result.steps counts the steps this call ran (0 when the checkpoint is at opts->iters already).
 * Checkpoints are written before the progress callback sees their step, so a run stopped by the
 * callback at step k has checkpoint-k when save_every divides k. */
INGOT_API int ingot_lora_train_ex(ingot_model m, ingot_adapter a, const char* train_jsonl,
                                  const char* valid_jsonl, const ingot_train_options* opts,
                                  const ingot_train_checkpoint_options* ckpt,
                                  ingot_train_fn on_step, void* ctx, ingot_train_result* out);

#ifdef __cplusplus
}
#endif

#endif /* INGOT_INGOT_H */
