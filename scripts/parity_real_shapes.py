#!/usr/bin/env python3
"""Real-shape parity of `ingot logits` against Hugging Face transformers.

Creates random-weight checkpoints at the real shapes of Gemma3-1B, Qwen3-0.6B and Llama-3.2-1B
(bf16 safetensors written by transformers' save_pretrained), computes transformers' logits
(eager attention; bf16 and float32, on the GPU and on the CPU) for one sequence of 512 random
token ids, runs `ingot logits --all-positions` on the same checkpoint (bf16 with eager and fast
attention, float32 with fast attention) and reports, per model and pair: top-1 agreement over
the positions (strict; tie-tolerant; over positions whose reference top-2 gap exceeds 2 bf16
ulps) and the max relative error max |x - ref| / max |ref|. transformers is also compared with
itself (bf16 CPU vs GPU, bf16 vs f32): the noise floor of bf16 on these nearly flat random-
weight logits.

Needs python3 with torch 2.x + transformers 5.x (+ numpy), an `ingot` binary, and a GPU for the
CUDA references (without one, the CPU only). Typical use on the GPU machine:

  python3 scripts/parity_real_shapes.py --ingot build/tools/cli/ingot --out $OUT

Writes <out>/parity_real_shapes.json (all figures) and <out>/parity_real_shapes.log.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

# Hub configs (classic form) of the real models, written from the published config.json files.
CONFIGS = {
    "gemma3-1b": {  # google/gemma-3-1b-pt / -it
        "model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"],
        "vocab_size": 262144, "hidden_size": 1152, "intermediate_size": 6912,
        "num_hidden_layers": 26, "num_attention_heads": 4, "num_key_value_heads": 1,
        "head_dim": 256, "query_pre_attn_scalar": 256, "sliding_window": 512,
        "sliding_window_pattern": 6, "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
        "rope_scaling": None, "rms_norm_eps": 1e-6, "hidden_activation": "gelu_pytorch_tanh",
        "final_logit_softcapping": None, "attn_logit_softcapping": None,
        "max_position_embeddings": 32768, "tie_word_embeddings": True,
        "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0,
    },
    "qwen3-0.6b": {  # Qwen/Qwen3-0.6B
        "model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"],
        "vocab_size": 151936, "hidden_size": 1024, "intermediate_size": 3072,
        "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
        "head_dim": 128, "rope_theta": 1000000.0, "rope_scaling": None, "rms_norm_eps": 1e-6,
        "hidden_act": "silu", "attention_bias": False, "use_sliding_window": False,
        "sliding_window": None, "max_window_layers": 28, "max_position_embeddings": 40960,
        "tie_word_embeddings": True, "bos_token_id": 151643, "eos_token_id": 151645,
    },
    "llama-3.2-1b": {  # meta-llama/Llama-3.2-1B
        "model_type": "llama", "architectures": ["LlamaForCausalLM"],
        "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
        "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
        "head_dim": 64, "rope_theta": 500000.0,
        "rope_scaling": {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rms_norm_eps": 1e-5, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
        "max_position_embeddings": 131072, "tie_word_embeddings": True,
        "bos_token_id": 128000, "eos_token_id": 128001,
    },
}

T0 = time.time()
LOG = None
LIBS = ""  # extra LD_LIBRARY_PATH for the ingot binary only


def log(*a):
    msg = f"[{time.time() - T0:6.1f}s] " + " ".join(str(x) for x in a)
    print(msg, flush=True)
    if LOG:
        LOG.write(msg + "\n")
        LOG.flush()


def make_model(name, cfg, layers, device, seed):
    """Builds the model from its hub config with random weights: every matrix N(0, 0.02^2) like
    transformers' init; RMSNorm gains 1 + N(0, 0.1^2) (Gemma's (1+w) norms: w = N(0, 0.1^2)) so
    the norm weights matter."""
    import transformers
    cfg = dict(cfg)
    if layers:
        cfg["num_hidden_layers"] = layers
    cls = getattr(transformers, cfg["architectures"][0])
    config = cls.config_class.from_dict(cfg)
    mt = cfg["model_type"]
    with torch.device(device):
        try:
            model = cls._from_config(config, attn_implementation="eager", dtype=torch.bfloat16)
        except TypeError:
            model = cls._from_config(config, attn_implementation="eager",
                                     torch_dtype=torch.bfloat16)
    # Only the parameters of this in-memory model matter (it is saved, never run): .to(bf16) also
    # rounds its rotary inv_freq buffer, which from_pretrained keeps in float32.
    model = model.to(device=device, dtype=torch.bfloat16)
    g = torch.Generator(device=device).manual_seed(seed)
    gemma = mt.startswith("gemma")
    with torch.no_grad():
        for pname, p in sorted(model.named_parameters(), key=lambda t: t[0]):
            r = torch.randn(p.shape, generator=g, device=device, dtype=torch.float32)
            if "norm" in pname:
                p.copy_(0.1 * r if gemma else 1.0 + 0.1 * r)
            else:
                p.copy_(0.02 * r)
    return model.eval()


@torch.no_grad()
def hf_logits(model, ids, device):
    x = torch.tensor([ids], device=device)
    return model(input_ids=x, use_cache=False).logits[0].float().cpu().numpy()


def compare(ours, ref):
    """Top-1 agreement (numpy argmax: first index on ties, both sides), tie-tolerant agreement
    (our top-1 is also a maximum of ref), and max relative error."""
    a, b = ours.argmax(-1), ref.argmax(-1)
    agree = float((a == b).mean())
    ref_at_ours = np.take_along_axis(ref, a[:, None], -1)[:, 0]
    agree_ties = float((ref_at_ours >= ref.max(-1)).mean())
    rel = float(np.abs(ours - ref).max() / np.abs(ref).max())
    # Positions whose reference top-2 gap exceeds 2 bf16 ulps of the top logit: there a flip
    # cannot come from the last rounding of the logits alone.
    top = np.abs(ref.max(-1))
    ulp = np.exp2(np.floor(np.log2(np.maximum(top, 1e-30))) - 7)
    clear = top2_margin(ref) > 2 * ulp
    return {"top1": agree, "top1_tie_tolerant": agree_ties, "max_rel_err": rel,
            "n_positions": int(len(a)), "n_disagree": int((a != b).sum()),
            "n_clear_margin": int(clear.sum()),
            "top1_clear_margin": float((a == b)[clear].mean()) if clear.any() else None}


def top2_margin(ref):
    s = np.partition(ref, -2, axis=-1)[:, -2:]
    return s[:, 1] - s[:, 0]


INGOT_DEVICE = ""  # INGOT_DEVICE for the ingot runs ("" = ingot's default)


def run_ingot(binary, model_dir, ids, dtype, attention, npy, threads):
    cmd = [binary, "logits", "--model", model_dir, "--ids", ",".join(map(str, ids)),
           "--all-positions", "--dtype", dtype, "--attention", attention, "--npy", npy]
    env = dict(os.environ)
    if LIBS:
        env["LD_LIBRARY_PATH"] = LIBS + ":" + env.get("LD_LIBRARY_PATH", "")
    if threads:
        env["INGOT_NUM_THREADS"] = str(threads)
    if INGOT_DEVICE:
        env["INGOT_DEVICE"] = INGOT_DEVICE
    t = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    dt = time.time() - t
    if p.returncode != 0:
        raise RuntimeError(f"ingot failed ({p.returncode}): {p.stderr[-2000:]}")
    if p.stderr.strip():
        log("  ingot stderr:", p.stderr.strip()[-500:])
    return np.load(npy), dt


def hf_reference(mdir, ids, dtype, device):
    """transformers' logits for the saved checkpoint, loaded as a user would load it (rotary
    inverse frequencies stay float32: casting an in-memory model with .to(bf16) would round
    them to bf16 and shift every rotary angle)."""
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(mdir, dtype=dtype, attn_implementation="eager")
    m = m.to(device).eval()
    out = hf_logits(m, ids, device)
    del m
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


# ingot runs: name -> (dtype, attention)
INGOT_RUNS = {"bf16_eager": ("bfloat16", "eager"), "bf16_fast": ("bfloat16", "fast"),
              "f32_fast": ("float32", "fast")}


def run_model(name, i, args, device, report, out_json):
    r = report["models"].setdefault(name, {})
    g = torch.Generator().manual_seed(args.seed + i)
    ids = torch.randint(0, CONFIGS[name]["vocab_size"], (args.positions,), generator=g).tolist()
    model = make_model(name, CONFIGS[name], args.layers, device, args.seed + 100 + i)
    r["parameters"] = sum(p.numel() for p in model.parameters())
    mdir = os.path.join(args.work, name)
    model.save_pretrained(mdir)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    r["files"] = sorted(os.listdir(mdir))
    log(name, f"{r['parameters'] / 1e6:.0f}M parameters saved to", mdir, r["files"])
    # References: transformers bf16 and f32 on the GPU and on the CPU.
    refs = {}
    devices = [device] + (["cpu"] if device != "cpu" else [])
    for dev in devices:
        for dt_name, dt in (("bf16", torch.bfloat16), ("f32", torch.float32)):
            if dev == "cpu" and dt_name == "f32" and time.time() - T0 > args.budget:
                continue
            t = time.time()
            refs[f"hf_{dt_name}_{dev}"] = hf_reference(mdir, ids, dt, dev)
            r[f"hf_{dt_name}_{dev}_seconds"] = time.time() - t
    for dev in devices:
        marg = top2_margin(refs[f"hf_bf16_{dev}"])
        r[f"hf_bf16_{dev}_top2_margin"] = {"min": float(marg.min()),
                                            "median": float(np.median(marg)),
                                            "frac_exact_ties": float((marg == 0).mean())}
    # transformers against itself: the noise floor of bf16.
    keys = sorted(refs)
    for a in range(len(keys)):
        for b in range(a + 1, len(keys)):
            r[f"{keys[a]}__vs__{keys[b]}"] = compare(refs[keys[a]], refs[keys[b]])
            log(name, keys[a], "vs", keys[b], r[f"{keys[a]}__vs__{keys[b]}"])
    for run, (dtype, attention) in INGOT_RUNS.items():
        if run not in args.runs.split(","):
            continue
        if run != args.runs.split(",")[0] and time.time() - T0 > args.budget:
            log(name, f"skipping ingot {run}: over the time budget")
            continue
        npy = os.path.join(args.work, f"{name}_{run}.npy")
        ours, dt = run_ingot(args.ingot, mdir, ids, dtype, attention, npy, args.threads)
        res = {"ingot_seconds": dt}
        for k, ref in refs.items():
            res["vs_" + k] = compare(ours, ref)
        r["ingot_" + run] = res
        log(name, f"ingot {run} ({dt:.1f}s):", json.dumps(res))
        del ours
        os.remove(npy)
        json.dump(report, open(out_json, "w"), indent=1)


def main():
    global LOG, LIBS, INGOT_DEVICE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ingot", required=True, help="path of the ingot binary")
    ap.add_argument("--out", default=".", help="directory for the report and log")
    ap.add_argument("--work", default="/tmp/ingot_parity", help="checkpoints and scratch files")
    ap.add_argument("--models", default=",".join(CONFIGS), help="comma-separated subset")
    ap.add_argument("--positions", type=int, default=512)
    ap.add_argument("--layers", type=int, default=0, help="override layer count (0 = real)")
    ap.add_argument("--runs", default=",".join(INGOT_RUNS),
                    help="ingot runs (dtype_attention), the first always runs")
    ap.add_argument("--budget", type=float, default=420.0,
                    help="seconds: optional steps (fast mode, CPU reference) are skipped after")
    ap.add_argument("--threads", type=int, default=0, help="INGOT_NUM_THREADS (0 = default)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--ingot-device", default="",
                    help="device of the ingot runs (cpu, cuda; default: ingot's own default)")
    ap.add_argument("--ingot-libs", default="",
                    help="directory of shared libraries for the ingot binary (LD_LIBRARY_PATH)")
    args = ap.parse_args()
    LIBS = args.ingot_libs
    INGOT_DEVICE = args.ingot_device
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    LOG = open(os.path.join(args.out, "parity_real_shapes.log"), "w")
    import transformers
    device = "cuda" if torch.cuda.is_available() else "cpu"
    env = {"torch": torch.__version__, "transformers": transformers.__version__,
           "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
           "cpu_count": os.cpu_count(), "positions": args.positions,
           "layers_override": args.layers or None,
           "cuda_bf16_reduced_precision_reduction":
               torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction}
    try:
        env["cpu"] = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                          if l.startswith("model name"))
    except Exception:
        pass
    log("env", env)
    report = {"env": env, "models": {}}
    out_json = os.path.join(args.out, "parity_real_shapes.json")
    models = [m for m in args.models.split(",") if m]
    for i, name in enumerate(models):
        try:
            run_model(name, i, args, device, report, out_json)
        except Exception:  # report and go on with the next model
            import traceback
            log(name, "FAILED:", traceback.format_exc())
            report["models"].setdefault(name, {})["error"] = traceback.format_exc()[-2000:]
        json.dump(report, open(out_json, "w"), indent=1)
    report["total_seconds"] = time.time() - T0
    json.dump(report, open(out_json, "w"), indent=1)
    log("done", out_json)


if __name__ == "__main__":
    sys.exit(main())
