#!/usr/bin/env python3
"""LoRA training speed (issue 11): PEFT next to `ingot bench lora`, same card, same run.

For each of Gemma3-1B (text), Llama-3.2-1B and Qwen3-0.6B (random weights at the published
shapes: the configs and builder of scripts/parity_real_shapes.py, checkpoints written as
scripts/gpu_bench_table.py writes them), bf16 base, batch 8 x 512 tokens, LoRA r=16 alpha=32 on
q,k,v,o,gate,up,down of every layer, AdamW (lr 1e-4, weight decay 0.01, gradient clipping at 1),
without and with gradient checkpointing:

  PEFT   transformers model (sdpa attention) + peft LoraConfig / get_peft_model (adapters in
         float32, PEFT's default for a bf16 base), torch.optim.AdamW (fused when available),
         loss from `labels` (transformers' float32 cross entropy), gradient checkpointing with
         model.gradient_checkpointing_enable(use_reentrant=False)
  ingot  `ingot bench lora --device cuda` on the saved checkpoint (the `ingot train` trainer)

Each side runs --warmup steps, then --steps timed steps (the device synchronised after each);
tokens/s = batch x len x steps / seconds; peak = the device allocator's peak over the timed steps
(torch.cuda.max_memory_allocated after reset_peak_memory_stats; ingot's memory::peak after
reset_peak), weights included on both sides. One JSON line per run on stdout, then a markdown
table; everything also in <out>/lora_bench.{json,md}.

The floor column: the card's measured bf16 matmul rate over the matmul FLOPs of a token with
frozen base weights (4 x weight-matrix parameters without checkpointing: forward + input
gradients; 6 x with it: the forward runs twice); attention scores are left out.

  python3 scripts/lora_bench.py --ingot build-gpu/tools/cli/ingot --out $OUT [--steps 3]
  python3 scripts/lora_bench.py --out /tmp/x --models llama-3.2-1b --modes gc   # PEFT only
"""
import argparse
import gc
import json
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from parity_real_shapes import CONFIGS, make_model  # noqa: E402
from gpu_bench_table import ceilings, hf_sdpa, ids, log, write_checkpoint  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MODES = {"plain": False, "gc": True}  # mode name -> gradient checkpointing
T0 = time.time()


def free_cuda():
    gc.collect()
    torch.cuda.empty_cache()


def matmul_params(name):
    """Parameters of the weight matrices a token goes through: the decoder's linear layers and
    the (tied) output head; norms and the embedding lookup do no matmuls."""
    c = CONFIGS[name]
    h, f, n = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    d = c.get("head_dim") or h // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * d, c["num_key_value_heads"] * d
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * f
    return n * per_layer + c["vocab_size"] * h


def peft_run(name, checkpoint, a):
    """One PEFT configuration on a fresh random-weight model; returns the result dict."""
    import peft
    import transformers
    from peft import LoraConfig, get_peft_model

    model = hf_sdpa(make_model(name, CONFIGS[name], None, "cuda", 0))
    model.config.use_cache = False
    if checkpoint:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    cfg = LoraConfig(r=a.rank, lora_alpha=a.alpha, lora_dropout=0.0, target_modules=TARGETS,
                     bias="none", task_type="CAUSAL_LM")
    pm = get_peft_model(model, cfg)
    pm.train()
    params = [p for p in pm.parameters() if p.requires_grad]
    lora_modules = sum(1 for n, _ in pm.named_parameters() if "lora_A" in n)
    try:
        opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.01, fused=True)
        fused = True
    except (TypeError, RuntimeError):
        opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.01)
        fused = False
    x = torch.tensor(ids(a.batch, a.len, CONFIGS[name]["vocab_size"], 7), device="cuda")

    def step():
        loss = pm(input_ids=x, labels=x, use_cache=False).loss
        loss.backward()
        if a.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, a.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    warm = [float(step()) for _ in range(a.warmup)]
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    t0 = time.perf_counter()
    for _ in range(a.steps):
        ts = time.perf_counter()
        losses.append(step())
        torch.cuda.synchronize()
        times.append(time.perf_counter() - ts)
    total = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated()
    losses = [float(v) for v in losses]
    res = {"tok_s": a.batch * a.len * a.steps / total, "step_ms": total / a.steps * 1e3,
           "step_ms_min": min(times) * 1e3, "step_ms_max": max(times) * 1e3,
           "peak_memory_mib": peak / 2**20, "loss_first": losses[0], "loss_last": losses[-1],
           "warmup_losses": warm, "lora_modules": lora_modules,
           "trainable_params": sum(p.numel() for p in params),
           "adapter_dtype": str(params[0].dtype), "fused_adamw": fused,
           "peft": peft.__version__, "transformers": transformers.__version__,
           "torch": torch.__version__}
    del pm, model, opt, params, x
    free_cuda()
    return res


def ingot_run(binary, model_dir, checkpoint, a, timeout):
    cmd = [binary, "bench", "lora", "--model", model_dir, "--device", a.ingot_device,
           "--batch", str(a.batch), "--len", str(a.len), "--rank", str(a.rank),
           "--alpha", str(a.alpha), "--targets", ",".join(TARGETS), "--steps", str(a.steps),
           "--warmup-steps", str(a.warmup), "--lr", str(a.lr),
           "--max-grad-norm", str(a.max_grad_norm)]
    if checkpoint:
        cmd.append("--grad-checkpoint")
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    if r.returncode != 0:
        return {"error": f"rc={r.returncode}: " + r.stderr.strip()[-800:]}
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "no JSON line: " + r.stdout[-300:] + r.stderr[-500:]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ingot", default="", help="ingot binary (without it: the PEFT side only)")
    ap.add_argument("--ingot-device", default="cuda")
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/ingot-bench-table",
                    help="random-weight checkpoints (shared with gpu_bench_table.py)")
    ap.add_argument("--models", default="gemma3-1b,llama-3.2-1b,qwen3-0.6b")
    ap.add_argument("--modes", default="plain,gc", help="plain (no checkpointing), gc")
    ap.add_argument("--sides", default="peft,ingot")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--len", type=int, default=512)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=2, help="steps before the clock starts")
    ap.add_argument("--budget", type=float, default=0,
                    help="seconds; runs not started by then are skipped (0 = no limit)")
    a = ap.parse_args()
    modes = [m for m in a.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            sys.exit(f"unknown mode {m!r} (plain, gc)")
    sides = [s for s in a.sides.split(",") if s in ("peft", "ingot")]
    if "ingot" in sides and not a.ingot:
        sides.remove("ingot")
    os.makedirs(a.out, exist_ok=True)
    os.makedirs(a.work, exist_ok=True)
    res = {"card": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "batch": a.batch, "len": a.len, "rank": a.rank, "alpha": a.alpha, "lr": a.lr,
           "steps": a.steps, "warmup": a.warmup, "targets": TARGETS}
    _, tflops = ceilings()
    free_cuda()
    res["matmul_tflops"] = tflops
    log(f"bf16 matmul {tflops:.0f} TFLOP/s; sides {sides}, modes {modes}, "
        f"{a.warmup} + {a.steps} steps of {a.batch} x {a.len}")
    runs = []

    def over_budget():
        return a.budget > 0 and time.time() - T0 > a.budget

    for name in a.models.split(","):
        if name not in CONFIGS:
            sys.exit(f"unknown model {name!r} ({', '.join(CONFIGS)})")
        d = os.path.join(a.work, name)
        if "ingot" in sides and not over_budget():
            d, model = write_checkpoint(name, a.work, "")
            del model
            free_cuda()
        for mode in modes:
            for side in sides:
                row = {"side": side, "model": name, "mode": mode,
                       "grad_checkpoint": MODES[mode]}
                if over_budget():
                    row["error"] = "skipped: over the time budget"
                else:
                    t = time.time()
                    try:
                        if side == "peft":
                            got = peft_run(name, MODES[mode], a)
                        else:
                            left = a.budget - (time.time() - T0) if a.budget > 0 else 600
                            got = ingot_run(a.ingot, d, MODES[mode], a, max(60, left))
                        # The row keeps the table's model name (ingot reports its path).
                        row.update({k: v for k, v in got.items() if k not in ("model", "mode")})
                    except Exception as e:  # noqa: BLE001 -- one failed run keeps the table
                        row["error"] = f"{type(e).__name__}: {e}"[:800]
                    free_cuda()  # out of the except block: its traceback holds the model
                    row["wall_s"] = time.time() - t
                flops = (6 if MODES[mode] else 4) * matmul_params(name)
                row["floor_tok_s"] = tflops * 1e12 / flops
                runs.append(row)
                print(json.dumps(row), flush=True)
                if "error" in row:
                    log(f"{side} {name} {mode}: {row['error']}")

    res["runs"] = runs
    with open(os.path.join(a.out, "lora_bench.json"), "w") as f:
        json.dump(res, f, indent=1)
    text = table(res, runs, modes, a.models.split(","))
    with open(os.path.join(a.out, "lora_bench.md"), "w") as f:
        f.write(text + "\n")
    print(text, flush=True)


def table(res, runs, modes, models):
    def get(side, name, mode):
        for r in runs:
            if (r["side"], r["model"], r["mode"]) == (side, name, mode):
                return r
        return {}

    def num(v, unit=""):
        if v is None:
            return "-"
        return f"{v / 1e3:.1f}k" if unit == "k" else f"{v:.1f}"

    vers = next((r for r in runs if r["side"] == "peft" and "peft" in r), {})
    md = [f"Card: {res['card']}; torch {res['torch']}"
          + (f", transformers {vers['transformers']}, peft {vers['peft']}" if vers else "")
          + f"; bf16 matmul {res['matmul_tflops']:.0f} TFLOP/s (measured in this run). "
          f"Batch {res['batch']} x {res['len']} tokens, LoRA r={res['rank']} "
          f"alpha={res['alpha']:g} on q,k,v,o,gate,up,down, AdamW lr {res['lr']:g}, "
          f"{res['warmup']} warm-up + {res['steps']} timed steps.", "",
          "| model | mode | PEFT tok/s | PEFT peak GiB | ingot tok/s | ingot peak GiB | "
          "ingot / PEFT tok/s | ingot / PEFT peak | floor tok/s | ingot / floor |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for name in models:
        for mode in modes:
            p, i = get("peft", name, mode), get("ingot", name, mode)
            pt, it = p.get("tok_s"), i.get("tok_s")
            pm, im = p.get("peak_memory_mib"), i.get("peak_memory_mib")
            floor = (i or p).get("floor_tok_s")
            ratio = f"{it / pt:.2f}x" if it and pt else "-"
            mem = f"{im / pm:.2f}x" if im and pm else "-"
            share = f"{it / floor:.0%}" if it and floor else "-"
            label = "grad checkpoint" if mode == "gc" else "no checkpoint"
            md.append(f"| {name} | {label} | {num(pt, 'k')} | {num(pm and pm / 1024)} | "
                      f"{num(it, 'k')} | {num(im and im / 1024)} | {ratio} | {mem} | "
                      f"{num(floor, 'k')} | {share} |")
            for side, r in (("PEFT", p), ("ingot", i)):
                if r.get("error"):
                    notes.append(f"- {side} {name} {label}: {r['error'][:300]}")
            if p.get("lora_modules") and i.get("lora_modules") and \
                    p["lora_modules"] != i["lora_modules"]:
                notes.append(f"- {name}: adapted modules differ: PEFT {p['lora_modules']}, "
                             f"ingot {i['lora_modules']}")
    return "\n".join(md + ([""] + notes if notes else []))


if __name__ == "__main__":
    main()
