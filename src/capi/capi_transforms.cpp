// C ABI: closures over C callbacks and the transforms on them (vjp, jvp, value_and_grad,
// checkpoint, compile), named array maps, safetensors and the AdamW optimizer.
#include "capi/capi_internal.h"
#include "core/io/safetensors.h"
#include "nn/optimizers.h"

using namespace ingot;        // NOLINT
using namespace ingot::capi;  // NOLINT

struct ingot_optimizer_s {
  std::unique_ptr<nn::Optimizer> opt;
};

namespace {

/// Owns a callback's context: runs ctx_free once when the last closure copy is gone.
struct CallbackContext {
  ingot_fn fn;
  void* ctx;
  void (*ctx_free)(void*);
  CallbackContext(ingot_fn f, void* c, void (*cf)(void*)) : fn(f), ctx(c), ctx_free(cf) {}
  CallbackContext(const CallbackContext&) = delete;
  CallbackContext& operator=(const CallbackContext&) = delete;
  ~CallbackContext() {
    if (ctx_free) ctx_free(ctx);
  }
};

/// An ArrayFn calling a C callback: inputs are lent as handles for the call, outputs come back
/// through a list; a nonzero return becomes CallbackFailed (carried to the caller's status).
ArrayFn wrap_callback(std::shared_ptr<CallbackContext> cb) {
  return [cb](const std::vector<Array>& inputs) {
    std::vector<ingot_array_s> held;
    held.reserve(inputs.size());
    for (const Array& a : inputs) held.push_back(ingot_array_s{a});
    std::vector<ingot_array> handles;
    for (ingot_array_s& h : held) handles.push_back(&h);
    ingot_array_list_s outs;
    clear_error();
    const int rc = cb->fn(cb->ctx, handles.data(), handles.size(), &outs);
    if (rc != 0) throw CallbackFailed(error_message());
    return outs.v;
  };
}

const ArrayFn& closure_fn(ingot_closure f, const char* what) {
  if (!f) raise("[capi] {}: null closure handle", what);
  return f->fn;
}

ingot_array_list_s& list(ingot_array_list l, const char* what) {
  if (!l) raise("[capi] {}: null list handle", what);
  return *l;
}

void append(ingot_array_list l, const std::vector<Array>& v) {
  if (l) l->v.insert(l->v.end(), v.begin(), v.end());
}

ingot_named_arrays_s& named(ingot_named_arrays m, const char* what) {
  if (!m) raise("[capi] {}: null named-arrays handle", what);
  return *m;
}

}  // namespace

extern "C" {

int ingot_closure_new(ingot_fn fn, void* ctx, void (*ctx_free)(void*), ingot_closure* out) {
  return guard([&] {
    need_out(out, "ingot_closure_new");
    if (!fn) raise("[capi] ingot_closure_new: null function pointer");
    auto cb = std::make_shared<CallbackContext>(fn, ctx, ctx_free);
    *out = new ingot_closure_s{wrap_callback(std::move(cb))};
  });
}
int ingot_closure_free(ingot_closure f) {
  return guard([&] { delete f; });
}
int ingot_closure_apply(ingot_closure f, const ingot_array* inputs, size_t n,
                        ingot_array_list outputs) {
  return guard([&] {
    auto& out = list(outputs, "ingot_closure_apply");
    std::vector<Array> r =
        closure_fn(f, "ingot_closure_apply")(to_arrays(inputs, n, "ingot_closure_apply"));
    out.v.insert(out.v.end(), r.begin(), r.end());
  });
}

int ingot_vjp(ingot_closure f, const ingot_array* primals, size_t n_primals,
              const ingot_array* cotangents, size_t n_cotangents, ingot_array_list outputs,
              ingot_array_list grads) {
  return guard([&] {
    list(grads, "ingot_vjp");
    auto [outs, gs] = vjp(closure_fn(f, "ingot_vjp"), to_arrays(primals, n_primals, "ingot_vjp"),
                          to_arrays(cotangents, n_cotangents, "ingot_vjp"));
    append(outputs, outs);
    append(grads, gs);
  });
}
int ingot_jvp(ingot_closure f, const ingot_array* primals, size_t n_primals,
              const ingot_array* tangents, size_t n_tangents, ingot_array_list outputs,
              ingot_array_list tangents_out) {
  return guard([&] {
    list(tangents_out, "ingot_jvp");
    auto [outs, ts] = jvp(closure_fn(f, "ingot_jvp"), to_arrays(primals, n_primals, "ingot_jvp"),
                          to_arrays(tangents, n_tangents, "ingot_jvp"));
    append(outputs, outs);
    append(tangents_out, ts);
  });
}
int ingot_value_and_grad(ingot_closure f, const ingot_array* inputs, size_t n, const int* argnums,
                         size_t n_argnums, ingot_array_list outputs, ingot_array_list grads) {
  return guard([&] {
    list(grads, "ingot_value_and_grad");
    if (n_argnums > 0 && !argnums) raise("[capi] ingot_value_and_grad: null argnums");
    std::vector<int> an(argnums, argnums + n_argnums);
    if (an.empty()) an.push_back(0);
    for (int i : an)
      if (i < 0 || static_cast<size_t>(i) >= n)
        raise("[capi] ingot_value_and_grad: argnum {} for {} inputs", i, n);
    auto vg = value_and_grad(closure_fn(f, "ingot_value_and_grad"), an);
    auto [outs, gs] = vg(to_arrays(inputs, n, "ingot_value_and_grad"));
    append(outputs, outs);
    append(grads, gs);
  });
}
int ingot_checkpoint(ingot_closure f, ingot_closure* out) {
  return guard([&] {
    need_out(out, "ingot_checkpoint");
    *out = new ingot_closure_s{checkpoint(closure_fn(f, "ingot_checkpoint"))};
  });
}
int ingot_compile(ingot_closure f, int shapeless, ingot_closure* out) {
  return guard([&] {
    need_out(out, "ingot_compile");
    CompileOptions o;
    o.shapeless = shapeless != 0;
    *out = new ingot_closure_s{compile(closure_fn(f, "ingot_compile"), o)};
  });
}

// ---- named arrays and safetensors

int ingot_named_arrays_new(ingot_named_arrays* out) {
  return guard([&] {
    need_out(out, "ingot_named_arrays_new");
    *out = new ingot_named_arrays_s{};
  });
}
int ingot_named_arrays_free(ingot_named_arrays m) {
  return guard([&] { delete m; });
}
int ingot_named_arrays_size(ingot_named_arrays m, size_t* out) {
  return guard([&] {
    need_out(out, "ingot_named_arrays_size");
    *out = named(m, "ingot_named_arrays_size").m.size();
  });
}
int ingot_named_arrays_name(ingot_named_arrays m, size_t i, const char** out) {
  return guard([&] {
    need_out(out, "ingot_named_arrays_name");
    auto& mm = named(m, "ingot_named_arrays_name").m;
    if (i >= mm.size()) raise("[capi] ingot_named_arrays_name: index {} of {}", i, mm.size());
    *out = std::next(mm.begin(), static_cast<std::ptrdiff_t>(i))->first.c_str();
  });
}
int ingot_named_arrays_get(ingot_named_arrays m, const char* name, ingot_array* out) {
  return guard([&] {
    auto& mm = named(m, "ingot_named_arrays_get").m;
    if (!name) raise("[capi] ingot_named_arrays_get: null name");
    auto it = mm.find(name);
    if (it == mm.end()) raise("[capi] ingot_named_arrays_get: no array named '{}'", name);
    put(out, it->second);
  });
}
int ingot_named_arrays_set(ingot_named_arrays m, const char* name, ingot_array a) {
  return guard([&] {
    auto& mm = named(m, "ingot_named_arrays_set").m;
    if (!name) raise("[capi] ingot_named_arrays_set: null name");
    mm[name] = arr(a, "ingot_named_arrays_set");
  });
}
int ingot_safetensors_load(const char* path, ingot_named_arrays* out) {
  return guard([&] {
    need_out(out, "ingot_safetensors_load");
    if (!path) raise("[capi] ingot_safetensors_load: null path");
    auto m = std::make_unique<ingot_named_arrays_s>();
    m->m = load_safetensors(path);
    *out = m.release();
  });
}
int ingot_safetensors_save(const char* path, ingot_named_arrays arrays) {
  return guard([&] {
    if (!path) raise("[capi] ingot_safetensors_save: null path");
    save_safetensors(path, named(arrays, "ingot_safetensors_save").m);
  });
}

// ---- optimizers

int ingot_optimizer_adamw(float lr, float beta1, float beta2, float eps, float weight_decay,
                          ingot_optimizer* out) {
  return guard([&] {
    need_out(out, "ingot_optimizer_adamw");
    if (!(lr >= 0) || !(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1) || !(eps > 0) ||
        !(weight_decay >= 0))
      raise(
          "[capi] ingot_optimizer_adamw: invalid hyperparameters lr={} betas=({}, {}) eps={} "
          "weight_decay={}",
          lr, beta1, beta2, eps, weight_decay);
    nn::AdamOptions o{.beta1 = beta1, .beta2 = beta2, .eps = eps, .weight_decay = weight_decay};
    *out = new ingot_optimizer_s{std::make_unique<nn::AdamW>(nn::constant_schedule(lr), o)};
  });
}
int ingot_optimizer_apply(ingot_optimizer o, ingot_named_arrays params, ingot_named_arrays grads,
                          ingot_named_arrays* updated) {
  return guard([&] {
    if (!o) raise("[capi] ingot_optimizer_apply: null optimizer handle");
    need_out(updated, "ingot_optimizer_apply");
    auto m = std::make_unique<ingot_named_arrays_s>();
    m->m = o->opt->apply(named(params, "ingot_optimizer_apply").m,
                         named(grads, "ingot_optimizer_apply").m);
    *updated = m.release();
  });
}
int ingot_optimizer_step(ingot_optimizer o, int64_t* out) {
  return guard([&] {
    if (!o) raise("[capi] ingot_optimizer_step: null optimizer handle");
    need_out(out, "ingot_optimizer_step");
    *out = o->opt->step();
  });
}
int ingot_optimizer_free(ingot_optimizer o) {
  return guard([&] { delete o; });
}

}  // extern "C"
