#!/usr/bin/env python3
"""GPU speed table (issue 10): ingot next to transformers on the same card in the same run.

Measures the card's ceilings (device-to-device copy GB/s, 8192^3 bf16 matmul TFLOP/s), writes
random-weight bf16 checkpoints at the published shapes of Gemma3-1B, Qwen3-0.6B and
Llama-3.2-1B (the configs of scripts/parity_real_shapes.py; real tokenizers copied in from
--tokenizers when given), then for each model:

  decode     batch 1, 32-token prompt + 256 new tokens (transformers: static cache, sdpa)
  classify   512 prompts x 64 tokens, label logits of the last position
             (transformers: logits_to_keep=1; ingot: `ingot bench classify`); ingot also on
             512 prompts of 16-64 tokens (`--min-len 16`: mixed lengths)
  prefill    64 x 512 tokens (Llama only), last-position hidden state
  batch      decode at 8 / 32 / 128 rows (Llama only), TTFT of a 512-token prompt
  cli        `ingot classify` end to end, 40-token template + ~24-token texts (Gemma3 only,
             needs --tokenizers)

and prints one table with each figure's share of its floor (decode: weight bytes / copy
bandwidth; classify/prefill: 2 x non-embedding parameters x tokens / matmul rate) and the peak
device memory of each row. Everything goes to <out>/gpu_bench_table.{json,md}.

  python3 scripts/gpu_bench_table.py --ingot build-gpu/tools/cli/ingot --out $OUT \\
      --tokenizers /tmp/tok   # dirs gemma3/, qwen3/, llama3_1/ with tokenizer.json
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from parity_real_shapes import CONFIGS, make_model  # noqa: E402

TOKENIZER_DIRS = {"gemma3-1b": "gemma3", "qwen3-0.6b": "qwen3", "llama-3.2-1b": "llama3_1"}
T0 = time.time()


def log(*a):
    print(f"[{time.time() - T0:6.1f}s]", *a, flush=True)


def timed(fn, repeat=3):
    """Best wall time of fn() over `repeat` runs after one warm-up, GPU synchronised."""
    fn()
    torch.cuda.synchronize()
    best = 1e30
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def ceilings():
    n = 1 << 30  # 1 GiB of bf16
    x = torch.empty(n // 2, dtype=torch.bfloat16, device="cuda")
    y = torch.empty_like(x)
    t = timed(lambda: y.copy_(x), 5)
    copy_gbs = 2 * n / t / 1e9  # bytes read + written
    del x, y
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    t = timed(lambda: a @ b, 5)
    tflops = 2 * 8192**3 / t / 1e12
    del a, b
    torch.cuda.empty_cache()
    return copy_gbs, tflops


def param_counts(model):
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel()
    return total, total - emb


def write_checkpoint(name, work, tokdir):
    d = os.path.join(work, name)
    model = make_model(name, CONFIGS[name], None, "cuda", 0)
    if not os.path.exists(os.path.join(d, "config.json")):
        model.save_pretrained(d)
    if tokdir:
        src = os.path.join(tokdir, TOKENIZER_DIRS[name])
        for f in ("tokenizer.json", "tokenizer_config.json"):
            if os.path.exists(os.path.join(src, f)):
                shutil.copy(os.path.join(src, f), d)
    return d, model


def hf_sdpa(model):
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("sdpa")
        return model
    model.config._attn_implementation = "sdpa"
    for m in model.modules():
        if hasattr(m, "config") and hasattr(m.config, "_attn_implementation"):
            m.config._attn_implementation = "sdpa"
    return model


def ids(rows, length, vocab, seed=0, shared=0):
    g = random.Random(seed)
    hi = min(vocab, 32000)
    pre = [g.randrange(16, hi) for _ in range(shared)]
    return [pre + [g.randrange(16, hi) for _ in range(length - shared)] for _ in range(rows)]


@torch.no_grad()
def hf_generate_time(model, prompt, new):
    x = torch.tensor(prompt, device="cuda")
    kw = dict(max_new_tokens=new, min_new_tokens=new, do_sample=False,
              cache_implementation="static", pad_token_id=0)

    def run():
        model.generate(x, attention_mask=torch.ones_like(x), **kw)
    return timed(run, 2)


@torch.no_grad()
def hf_decode(model, rows, plen, new, vocab):
    """Decode tok/s over all rows: (rows x (new - 1)) / (t(new) - t(1)); also t(1) = TTFT."""
    p = ids(rows, plen, vocab, 1)
    torch.cuda.reset_peak_memory_stats()
    t1 = hf_generate_time(model, p, 1)
    tn = hf_generate_time(model, p, new)
    peak = torch.cuda.max_memory_allocated() / 2**20
    return rows * (new - 1) / max(tn - t1, 1e-9), t1, peak


@torch.no_grad()
def hf_classify(model, n, length, batch, labels, vocab, shared=0):
    p = torch.tensor(ids(n, length, vocab, 2, shared), device="cuda")
    lab = torch.tensor(labels, device="cuda")

    def run():
        out = []
        for i in range(0, n, batch):
            logits = model(input_ids=p[i:i + batch], logits_to_keep=1, use_cache=False).logits
            out.append(torch.softmax(logits[:, -1, lab].float(), -1))
        return torch.cat(out).cpu()
    torch.cuda.reset_peak_memory_stats()
    t = timed(run, 2)
    return n / t, torch.cuda.max_memory_allocated() / 2**20


@torch.no_grad()
def hf_prefill(model, rows, length, vocab):
    p = torch.tensor(ids(rows, length, vocab, 3), device="cuda")
    torch.cuda.reset_peak_memory_stats()
    t = timed(lambda: model(input_ids=p, logits_to_keep=1, use_cache=False), 2)
    return rows * length / t, torch.cuda.max_memory_allocated() / 2**20


def ingot_bench(binary, model_dir, task, *args):
    cmd = [binary, "bench", task, "--model", model_dir, "--device", "cuda", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        log("ingot bench failed:", " ".join(cmd), r.stderr[-2000:])
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def ingot_cli_classify(binary, model_dir, work, n):
    """`ingot classify` end to end: JSONL in/out with the real tokenizer; seq/s over the
    process's wall time, and with the load time taken out."""
    words = ("market team election vaccine goal senate orbit protein striker ballot galaxy "
             "tariff league rover genome coach budget telescope patient referee minister "
             "quantum injury vote startup season neuron treaty cell playoff").split()
    g = random.Random(5)
    texts = os.path.join(work, "texts.jsonl")
    with open(texts, "w") as f:
        for _ in range(n):
            f.write(json.dumps({"text": " ".join(g.choice(words) for _ in range(16))}) + "\n")
    tmpl = os.path.join(work, "template.txt")
    with open(tmpl, "w") as f:
        f.write("You are a careful news editor. Read the short text below and decide which "
                "section of the paper it belongs to.\nText: {text}\nSection:")
    cmd = [binary, "classify", "--model", model_dir, "--device", "cuda", "--labels",
           " sports, politics, science", "--template", tmpl, "--metrics"]
    t = time.perf_counter()
    with open(texts) as fin:
        r = subprocess.run(cmd, stdin=fin, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        log("ingot classify failed:", r.stderr[-2000:])
        return None
    lines = r.stdout.strip().splitlines()
    assert len(lines) == n, (len(lines), n)
    # The CLI's own metrics line: the classify phase (tokenization included) without process
    # start, reading the input and loading the model.
    m = {}
    for line in r.stderr.splitlines():
        if line.startswith("metrics: "):
            log("ingot classify CLI", line, f"(process wall {wall:.3f}s)")
            m = dict(kv.split("=", 1) for kv in line[len("metrics: "):].split())
    return {"seq_s_wall": n / wall, "wall_s": wall, "texts": n,
            "seq_s_classify": float(m["texts/s"]) if "texts/s" in m else None,
            "load_s": float(m["load_s"]) if "load_s" in m else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ingot", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/ingot-bench-table")
    ap.add_argument("--tokenizers", default="")
    ap.add_argument("--models", default="qwen3-0.6b,llama-3.2-1b,gemma3-1b")
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--tasks", default="decode,classify,prefill,batch,ttft",
                    help="rows to run: decode (b1), classify, prefill, batch (decode b8/32/128), "
                    "ttft, quant (Llama decode b1 of `ingot quantize` 8- and 4-bit copies)")
    a = ap.parse_args()
    tasks = set(a.tasks.split(","))
    os.makedirs(a.out, exist_ok=True)
    os.makedirs(a.work, exist_ok=True)
    res = {"card": torch.cuda.get_device_name(0), "torch": torch.__version__}
    import transformers
    res["transformers"] = transformers.__version__
    copy_gbs, tflops = ceilings()
    res.update(copy_gbs=copy_gbs, matmul_tflops=tflops)
    log(f"ceilings: copy {copy_gbs:.0f} GB/s, bf16 matmul {tflops:.0f} TFLOP/s")
    rows = []

    def add(bench, model, hf, ing, unit, floor=None, hf_mem=None, ing_mem=None):
        rows.append(dict(bench=bench, model=model, transformers=hf, ingot=ing, unit=unit,
                         floor=floor, hf_peak_mib=hf_mem, ingot_peak_mib=ing_mem))
        share = f"{ing / floor:.0%}" if ing and floor else "-"
        log(f"{bench:38s} {model:13s} hf={hf} ingot={ing} floor={floor} share={share}")

    for name in a.models.split(","):
        log("checkpoint", name)
        d, model = write_checkpoint(name, a.work, a.tokenizers)
        total, nonemb = param_counts(model)
        vocab = CONFIGS[name]["vocab_size"]
        weight_bytes = 2 * total
        decode_floor = copy_gbs * 1e9 / weight_bytes
        flops_per_token = 2 * nonemb
        model = hf_sdpa(model)
        if "decode" in tasks:
            hf = (None, None, None) if a.skip_hf else hf_decode(model, 1, 32, 256, vocab)
            ing = ingot_bench(a.ingot, d, "decode", "--batch", 1, "--len", 32, "--new", 256)
            add("decode b1, 32 + 256 new, tok/s", name, hf[0], ing and ing["decode_tok_s"],
                "tok/s", decode_floor, hf[2], ing and ing["peak_memory_mib"])
        cls_floor = tflops * 1e12 / (flops_per_token * 64)
        labels = [100, 107, 114]
        if "classify" in tasks:
            hf = (None, None) if a.skip_hf else hf_classify(model, 512, 64, 64, labels, vocab)
            ing = ingot_bench(a.ingot, d, "classify", "--texts", 512, "--len", 64)
            add("classify 512 x 64, seq/s", name, hf[0], ing and ing["seq_s"], "seq/s",
                cls_floor, hf[1], ing and ing["peak_memory_mib"])
            # Mixed lengths (16-64 tokens, 40 on average): what padding-free packed batches
            # save; the floor counts the tokens there are.
            ing = ingot_bench(a.ingot, d, "classify", "--texts", 512, "--len", 64,
                              "--min-len", 16)
            add("classify 512 x 16-64 mixed, seq/s", name, None, ing and ing["seq_s"], "seq/s",
                tflops * 1e12 / (flops_per_token * 40), None, ing and ing["peak_memory_mib"])
        if name == "gemma3-1b" and "classify" in tasks:
            ing = ingot_bench(a.ingot, d, "classify", "--texts", 4096, "--len", 64,
                              "--shared-prefix", 40)
            add("classify shared 40 + 24, seq/s", name, None, ing and ing["seq_s"], "seq/s",
                None, None, ing and ing["peak_memory_mib"])
            if a.tokenizers:
                cli = ingot_cli_classify(a.ingot, d, a.work, 32768)
                add("ingot classify CLI end to end, seq/s", name, None,
                    cli and cli["seq_s_wall"], "seq/s")
                add("ingot classify CLI, classify phase (after load), seq/s", name, None,
                    cli and cli["seq_s_classify"], "seq/s")
        if name == "llama-3.2-1b":
            pf_floor = tflops * 1e12 / flops_per_token
            if "prefill" in tasks:
                hf = (None, None) if a.skip_hf else hf_prefill(model, 64, 512, vocab)
                ing = ingot_bench(a.ingot, d, "prefill", "--batch", 64, "--len", 512,
                                  "--repeat", 2)
                add("prefill 64 x 512, tok/s", name, hf[0], ing and ing["prefill_tok_s"],
                    "tok/s", pf_floor, hf[1], ing and ing["peak_memory_mib"])
            for b in (8, 32, 128) if "batch" in tasks else ():
                hf = (None, None, None) if a.skip_hf else hf_decode(model, b, 32, 64, vocab)
                ing = ingot_bench(a.ingot, d, "decode", "--batch", b, "--len", 32, "--new", 64,
                                  "--repeat", 2)
                add(f"decode b{b}, 32 + 64 new, tok/s", name, hf[0],
                    ing and ing["decode_tok_s"], "tok/s", None, hf[2],
                    ing and ing["peak_memory_mib"])
            if "quant" in tasks:  # issue 14: quantized decode against the bf16 row
                for bits in (8, 4):
                    q = f"{d}-q{bits}"
                    if not os.path.exists(os.path.join(q, "config.json")):
                        subprocess.run([a.ingot, "quantize", "--model", d, "--out", q, "--bits",
                                        str(bits), "--group-size", "64"], check=True,
                                       capture_output=True, timeout=300)
                    ing = ingot_bench(a.ingot, q, "decode", "--batch", 1, "--len", 32, "--new", 256)
                    qbytes = sum(os.path.getsize(os.path.join(q, f)) for f in os.listdir(q)
                                 if f.endswith(".safetensors"))
                    add(f"decode b1 {bits}-bit g64, 32 + 256 new, tok/s", name, None,
                        ing and ing["decode_tok_s"], "tok/s", copy_gbs * 1e9 / qbytes, None,
                        ing and ing["peak_memory_mib"])
            if "ttft" in tasks:
                hf = (None, None, None) if a.skip_hf else hf_decode(model, 1, 512, 2, vocab)
                ing = ingot_bench(a.ingot, d, "decode", "--batch", 1, "--len", 512, "--new", 2)
                add("TTFT 512-token prompt, ms", name, hf[1] and hf[1] * 1e3,
                    ing and ing["ttft_ms"], "ms")
        del model
        torch.cuda.empty_cache()

    res["rows"] = rows
    with open(os.path.join(a.out, "gpu_bench_table.json"), "w") as f:
        json.dump(res, f, indent=1)
    fmt = lambda v: "-" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.1f}")
    md = [f"Card: {res['card']}; torch {res['torch']}, transformers {res['transformers']}; "
          f"copy {copy_gbs:,.0f} GB/s, bf16 matmul {tflops:.0f} TFLOP/s (measured in this run)",
          "", "| benchmark | model | transformers | ingot | floor | ingot / floor | "
          "ingot / transformers | peak MiB hf / ingot |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['ingot'] / r['transformers']:.2f}x" if r["ingot"] and r["transformers"] else "-"
        share = f"{r['ingot'] / r['floor']:.0%}" if r["ingot"] and r["floor"] else "-"
        if r["unit"] == "ms" and r["ingot"] and r["transformers"]:
            ratio = f"{r['transformers'] / r['ingot']:.2f}x faster"
        md.append(f"| {r['bench']} | {r['model']} | {fmt(r['transformers'])} | {fmt(r['ingot'])} "
                  f"| {fmt(r['floor'])} | {share} | {ratio} | {fmt(r['hf_peak_mib'])} / "
                  f"{fmt(r['ingot_peak_mib'])} |")
    text = "\n".join(md)
    with open(os.path.join(a.out, "gpu_bench_table.md"), "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
