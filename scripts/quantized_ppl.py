#!/usr/bin/env python3
"""Perplexity of the quantized fixtures next to their bf16 originals, on the float path
(INGOT_CPU_INT8=0) and with the int8-activation kernels (the default), in one run on the CPU.

    python3 scripts/quantized_ppl.py [--ingot build/tools/cli/ingot]

Text: the first 60 lines of docs/architecture.md, in chunks of 128 ids, each scored as
`ingot score` prompt_ids = its first id, continuation_ids = the rest (raw UTF-8 bytes as ids
for fixtures without a tokenizer). Random-weight fixtures: only the deltas mean something.
"""
import argparse
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAIRS = [("qwen3_bf16", "qwen3_q4_mlx"), ("llama_bf16_tied", "llama_q8_mlx")]


def model_dir(name):
    return os.path.join(ROOT, "tests", "data", "models", name)


def ids_for(ingot, model, text):
    if os.path.exists(os.path.join(model_dir(model), "tokenizer.json")):
        r = subprocess.run([ingot, "tokenize", "--tokenizer", model_dir(model)], input=text.encode(),
                           capture_output=True, check=True)
        return [int(t) for t in r.stdout.decode().replace(",", " ").split()]
    return list(text.encode())


def perplexity(ingot, model, ids, env):
    lines = []
    for i in range(0, len(ids) - 1, 128):
        c = ids[i:i + 128]
        if len(c) < 2:
            break
        lines.append(json.dumps({"prompt_ids": c[:1], "continuation_ids": c[1:]}))
    r = subprocess.run([ingot, "score", "--model", model_dir(model), "--device", "cpu"],
                       input=("\n".join(lines) + "\n").encode(), capture_output=True,
                       env={**os.environ, **env})
    if r.returncode:
        sys.exit(r.stderr.decode()[-2000:])
    total, n = 0.0, 0
    for line in r.stdout.decode().splitlines():
        o = json.loads(line)
        total += o["logprob_sum"]
        n += len(o["tokens"])
    return math.exp(-total / n), n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ingot", default=os.path.join(ROOT, "build", "tools", "cli", "ingot"))
    a = ap.parse_args()
    with open(os.path.join(ROOT, "docs", "architecture.md")) as f:
        text = "".join(f.readlines()[:60])
    for base, q in PAIRS:
        ids = ids_for(a.ingot, base, text)
        pb, n = perplexity(a.ingot, base, ids, {})
        pf, _ = perplexity(a.ingot, q, ids, {"INGOT_CPU_INT8": "0"})
        pi, _ = perplexity(a.ingot, q, ids, {"INGOT_CPU_INT8": "1"})
        print(f"{base} -> {q}: {n} tokens, bf16 {pb:,.1f}, float path {pf:,.1f} ({pf / pb - 1:+.1%}),"
              f" int8 {pi:,.1f} ({pi / pb - 1:+.1%}; {pi / pf - 1:+.2%} vs the float path)")


if __name__ == "__main__":
    main()
