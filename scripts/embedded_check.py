#!/usr/bin/env python3
"""Checks the embedded model against Hugging Face's own libraries (run on the device machine,
which has torch, transformers and tokenizers):

1. tokenizers loads models/<name>/tokenizer.json and gives the same ids as `ingot tokenize` on
   every text of a corpus (JSONL {"text"} lines, e.g. the validation split);
2. transformers loads the checkpoint and its float32 logits match `ingot logits --dtype
   float32` on a few texts (max |diff| relative to max |logit|, top-1 agreement), and the bf16
   logits (transformers eager vs ingot eager) agree within bf16 rounding;
3. with --adapter, PEFT loads the adapter and its logits match `ingot logits --adapter`.

  python3 scripts/embedded_check.py --ingot build/tools/cli/ingot --model models/ingot-tiny \
      --corpus valid.jsonl [--adapter models/ingot-tiny-topics] --out report.json
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

PROMPTS = [
    "The meaning of life is",
    "A computer is a machine that",
    "Never trust a man who",
    "Sentence: I had pasta with tomato sauce for dinner.\nTopic:",
]


def ingot(binary, *args, stdin=None):
    p = subprocess.run([binary, *args], input=stdin, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        sys.exit(f"ingot {' '.join(args[:2])} failed ({p.returncode}): {p.stderr[-2000:]}")
    return p.stdout


def check_tokenizer(a, report):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))
    texts = [json.loads(line)["text"] for line in open(a.corpus) if line.strip()]
    lines = "".join(json.dumps(t) + "\n" for t in texts)
    ours = [[int(x) for x in ln.split()] for ln in
            ingot(a.ingot, "tokenize", "--tokenizer", a.model, "--jsonl", stdin=lines).splitlines()]
    ref = [e.ids for e in tok.encode_batch(texts)]
    bad = [i for i, (x, y) in enumerate(zip(ours, ref)) if x != y]
    report["tokenizer"] = {"texts": len(texts), "tokens": sum(map(len, ref)),
                           "mismatches": len(bad), "first_mismatch": texts[bad[0]] if bad else None,
                           "count_equal": len(ours) == len(ref)}
    print("tokenizer:", report["tokenizer"])
    return tok


def ingot_logits(a, ids, dtype, attention, adapter=None):
    with tempfile.TemporaryDirectory() as d:
        npy = os.path.join(d, "l.npy")
        args = ["logits", "--model", a.model, "--ids", ",".join(map(str, ids)), "--all-positions",
                "--dtype", dtype, "--attention", attention, "--npy", npy, "--device", a.device]
        if adapter:
            args += ["--adapter", adapter]
        ingot(a.ingot, *args)
        return np.load(npy)


def compare(ours, ref):
    return {"max_rel_err": float(np.abs(ours - ref).max() / np.abs(ref).max()),
            "top1": float((ours.argmax(-1) == ref.argmax(-1)).mean()),
            "positions": int(ref.shape[0])}


def check_logits(a, tok, report):
    from transformers import AutoModelForCausalLM
    dev = "cuda" if a.device.startswith("cuda") and torch.cuda.is_available() else "cpu"
    rows = {}
    for dt_name, dt, attn in (("float32", torch.float32, "fast"), ("bfloat16", torch.bfloat16,
                                                                      "eager")):
        m = AutoModelForCausalLM.from_pretrained(a.model, dtype=dt, attn_implementation="eager")
        m = m.to(dev).eval()
        peft_m = None
        if a.adapter:
            from peft import PeftModel
            peft_m = PeftModel.from_pretrained(m, a.adapter).eval()
        for p in PROMPTS:
            ids = tok.encode(p).ids
            with torch.no_grad():
                x = torch.tensor([ids], device=dev)
                base = (peft_m.get_base_model() if peft_m else m)
                if peft_m:
                    with peft_m.disable_adapter():
                        ref = base(input_ids=x).logits[0].float().cpu().numpy()
                    ref_ad = peft_m(input_ids=x).logits[0].float().cpu().numpy()
                else:
                    ref = m(input_ids=x).logits[0].float().cpu().numpy()
            r = compare(ingot_logits(a, ids, dt_name, attn), ref)
            rows.setdefault(dt_name, []).append(r)
            if peft_m:
                rows.setdefault(dt_name + "+adapter", []).append(
                    compare(ingot_logits(a, ids, dt_name, attn, a.adapter), ref_ad))
        del m, peft_m
    report["logits"] = {k: {"max_rel_err": max(r["max_rel_err"] for r in v),
                            "top1": float(np.mean([r["top1"] for r in v])),
                            "positions": sum(r["positions"] for r in v)} for k, v in rows.items()}
    for k, v in report["logits"].items():
        print(f"logits {k}: {v}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ingot", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--corpus", required=True, help="JSONL {\"text\"} lines for the tokenizer")
    ap.add_argument("--adapter")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    report = {"model": a.model, "adapter": a.adapter}
    tok = check_tokenizer(a, report)
    check_logits(a, tok, report)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)
    ok = (report["tokenizer"]["mismatches"] == 0 and report["tokenizer"]["count_equal"]
          and report["logits"]["float32"]["max_rel_err"] < 1e-4
          and report["logits"]["float32"]["top1"] == 1.0)
    print("embedded check:", "PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
