#!/usr/bin/env python3
# `ingot bench lora` (issue 11's training speed benchmark) on the tiny bf16 model fixtures, on the
# CPU, 1 warm-up + 2 measured steps: the JSON line has every field, finite; the adapted module
# count and trainable parameter count follow from config.json (7 modules per layer, r x (in + out)
# each); every step feeds and predicts batch x len tokens; gradient checkpointing gives the same
# losses; AdamW on one repeated batch lowers the loss; bad options are errors, not crashes.
# Usage: test_cli_bench_lora.py INGOT_BINARY REPO_ROOT
import json
import math
import os
import subprocess
import sys

ingot, root = sys.argv[1:3]
models = os.path.join(root, "tests", "data", "models")
failures = 0
checks = 0
B, L, R = 2, 24, 4
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def run(args):
    return subprocess.run([ingot, "bench", "lora", *args], capture_output=True, timeout=120)


def check(cond, what, r=None):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print("FAIL:", what)
        if r is not None:
            print("  rc:", r.returncode, "stderr:", r.stderr.decode(errors="replace")[-600:])


def bench(model, *extra):
    r = run(["--model", model, "--device", "cpu", "--batch", str(B), "--len", str(L), "--rank",
             str(R), "--steps", "2", "--warmup-steps", "1", "--lr", "1e-2", *extra])
    check(r.returncode == 0, f"bench lora {model} {extra} exits 0", r)
    if r.returncode != 0:
        return None
    lines = r.stdout.decode().strip().splitlines()
    check(len(lines) == 1, f"one JSON line, got {len(lines)}")
    return json.loads(lines[-1])


def module_shapes(cfg):
    """(in, out) of each of the seven linear modules of one decoder layer, from config.json."""
    h, f = cfg["hidden_size"], cfg["intermediate_size"]
    d = cfg.get("head_dim") or h // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d
    return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, f), "up_proj": (h, f), "down_proj": (f, h)}


for name in ("qwen3_bf16", "llama_bf16_tied", "gemma3_bf16"):
    model = os.path.join(models, name)
    cfg = json.load(open(os.path.join(model, "config.json")))
    cfg = cfg.get("text_config", cfg)
    layers = cfg["num_hidden_layers"]
    shapes = module_shapes(cfg)
    plain = bench(model)
    gc = bench(model, "--grad-checkpoint")
    if plain is None or gc is None:
        continue
    for res, mode in ((plain, "plain"), (gc, "grad-checkpoint")):
        tag = f"{name} {mode}"
        for k in ("tok_s", "step_ms", "step_ms_min", "step_ms_max", "peak_memory_mib",
                  "loss_first", "loss_last", "load_s"):
            v = res.get(k)
            check(isinstance(v, (int, float)) and math.isfinite(v), f"{tag}: {k} finite ({v})")
        check(res.get("tok_s", 0) > 0 and res.get("step_ms", 0) > 0, f"{tag}: positive rates")
        check(res.get("peak_memory_mib", 0) > 0, f"{tag}: peak memory recorded")
        if res.get("tok_s") and res.get("step_ms"):
            # tok_s is batch x len tokens per step over the mean step time
            want = B * L / (res["step_ms"] / 1e3)
            check(abs(res["tok_s"] - want) <= 1e-6 * want, f"{tag}: tok_s {res['tok_s']} = {want}")
        check(res.get("step_ms_min", 0) <= res.get("step_ms", -1) <= res.get("step_ms_max", -2),
              f"{tag}: min <= mean <= max step time")
        check(res.get("predicted_tokens_per_step") == B * L,
              f"{tag}: {B} x {L} targets per step, got {res.get('predicted_tokens_per_step')}")
        check(res.get("lora_modules") == 7 * layers,
              f"{tag}: 7 x {layers} adapted modules, got {res.get('lora_modules')}")
        want_params = layers * sum(R * (i + o) for i, o in shapes.values())
        check(res.get("trainable_params") == want_params,
              f"{tag}: {want_params} trainable parameters, got {res.get('trainable_params')}")
        check(res.get("alpha") == 2 * R and res.get("rank") == R, f"{tag}: rank {R}, alpha 2r")
        check(res.get("grad_checkpoint") == (mode != "plain"), f"{tag}: grad_checkpoint flag")
        check(res.get("batch") == B and res.get("len") == L and res.get("task") == "lora",
              f"{tag}: batch/len/task echoed")
        wl = res.get("warmup_losses") or [None]
        check(len(res.get("warmup_losses", [])) == 1, f"{tag}: one warm-up loss")
        # The same batch every step: AdamW (lr 1e-2, far above the bf16 rounding noise of the
        # activations) lowers its loss step after step.
        if all(isinstance(x, float) for x in (wl[0], res.get("loss_first"), res.get("loss_last"))):
            check(wl[0] > res["loss_first"] > res["loss_last"],
                  f"{tag}: loss falls {wl[0]} > {res['loss_first']} > {res['loss_last']}")
    # Checkpointing recomputes the same blocks: the same losses (same ids, same adapter init).
    for k in ("loss_first", "loss_last"):
        a, b = plain.get(k), gc.get(k)
        if isinstance(a, float) and isinstance(b, float):
            check(abs(a - b) <= 1e-4 * abs(a), f"{name}: {k} with and without checkpointing {a} {b}")
    wa, wb = plain.get("warmup_losses", [0]), gc.get("warmup_losses", [1])
    check(abs(wa[0] - wb[0]) <= 1e-4 * abs(wa[0]), f"{name}: warm-up loss equal {wa} {wb}")

# Named targets: only those modules get adapters.
qwen = os.path.join(models, "qwen3_bf16")
qcfg = json.load(open(os.path.join(qwen, "config.json")))
res = bench(qwen, "--targets", "q_proj,v_proj")
if res:
    sh = module_shapes(qcfg)
    n = qcfg["num_hidden_layers"]
    check(res.get("lora_modules") == 2 * n, f"q,v: {2 * n} modules, got {res.get('lora_modules')}")
    want = n * R * (sum(sh["q_proj"]) + sum(sh["v_proj"]))
    check(res.get("trainable_params") == want, f"q,v: {want} params, got {res.get('trainable_params')}")

# Errors: a clear message and exit code 1, no crash.
for extra, what, word in ((["--targets", "nonexistent_proj"], "unknown target", "nonexistent_proj"),
                          (["--adapter", os.path.join(models, "qwen3_bf16")], "--adapter",
                           "--adapter is not supported")):
    r = run(["--model", qwen, "--device", "cpu", "--steps", "1", "--batch", "1", "--len", "8",
             *extra])
    err = r.stderr.decode(errors="replace")
    check(r.returncode == 1 and err.startswith("error: ") and word in err,
          f"{what}: exit 1 with an error naming {word!r}", r)
    check(r.stdout.decode().strip() == "", f"{what}: nothing on stdout")
r = run(["--model", qwen, "--device", "cpu", "--steps", "0"])
check(r.returncode == 2, "--steps 0 is a usage error (exit 2)", r)

print(f"{checks - failures}/{checks} checks passed")
sys.exit(1 if failures else 0)
