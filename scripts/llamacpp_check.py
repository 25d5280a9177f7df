#!/usr/bin/env python3
"""Do ingot and llama.cpp run the same model? (issue 14's CPU comparison, run by
scripts/llamacpp_bench.sh check; Python standard library only.)

Fixtures (tests/data/models llama_bf16_tied, qwen3_bf16): each is written as GGUF BF16, Q8_0 and
Q4_0 by scripts/gguf_write.py (qwen3_bf16 has no tokenizer.json: a placeholder vocabulary).
On every reference sequence (reference.json: transformers' float64 logits at every position),
llama.cpp (node-llama-cpp, scripts/llamacpp_bench.mjs logits) and `ingot logits` run the same
GGUF file; ingot also runs the fixture directory. Reported per pair: the largest
|a - b| / max|b| over all positions and the share of positions with the same argmax. Also the
greedy continuations of reference.json's prompts (12 tokens) from both engines on the BF16 file.

Real shapes (the random checkpoints of scripts/llamacpp_models.py, if --models holds them):
ingot on the safetensors bf16 directory and llama.cpp on bf16.gguf: logits at every position
of a 16-token prompt (relative error, argmax agreement) and the greedy continuation (16
tokens), both engines on q8_0.gguf / q4_0.gguf too (ingot dequantizes those on load).

Prints one JSON object per comparison and a summary; exits 1 if a check fails: fixture BF16
logits of llama.cpp and ingot further apart than 3e-2 (relative to the largest logit; bf16
weights, different summation orders and bf16/f16 intermediates), or argmax agreement below 90%
on the positions whose top-2 gap exceeds 2 bf16 ulps (see compare()).
"""

import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXTURES = [("llama_bf16_tied", False), ("qwen3_bf16", True)]  # (name, synthetic vocab)
BF16_REL_LIMIT = 3e-2
TOP1_LIMIT = 0.9


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("failed (%d): %s\n%s" % (r.returncode, " ".join(cmd), r.stderr[-2000:]))
    return r.stdout


def read_npy(path):
    with open(path, "rb") as f:
        buf = f.read()
    if buf[:6] != b"\x93NUMPY":
        raise SystemExit("%s: not a .npy file" % path)
    hlen = struct.unpack("<H", buf[8:10])[0]
    header = eval(buf[10:10 + hlen].decode("latin1"))  # a Python dict literal by definition
    if header["descr"] != "<f4" or header["fortran_order"]:
        raise SystemExit("%s: expected little-endian float32 C order" % path)
    rows, cols = header["shape"]
    vals = struct.unpack("<%df" % (rows * cols), buf[10 + hlen:10 + hlen + 4 * rows * cols])
    return [list(vals[r * cols:(r + 1) * cols]) for r in range(rows)]


class Engines:
    def __init__(self, ingot, bench, tmp):
        self.ingot, self.bench, self.tmp = ingot, bench, tmp

    def ingot_logits(self, model, ids):
        npy = os.path.join(self.tmp, "logits.npy")
        run([self.ingot, "logits", "--model", model, "--ids", ",".join(map(str, ids)),
             "--all-positions", "--npy", npy])
        return read_npy(npy)

    def lcpp_logits(self, model, ids):
        out = json.loads(run(["node", self.bench, "logits", "--model", model, "--ids",
                              ",".join(map(str, ids))]))
        return out["logits"], out

    def ingot_greedy(self, model, ids, n):
        out = run([self.ingot, "generate", "--model", model, "--prompt-ids",
                   ",".join(map(str, ids)), "--output", "ids", "--max-tokens", str(n),
                   "--ignore-eos", "--quiet"])
        return [int(x) for x in out.replace(",", " ").split()]

    def lcpp_greedy(self, model, ids, n):
        out = json.loads(run(["node", self.bench, "generate", "--model", model, "--ids",
                              ",".join(map(str, ids)), "--new", str(n)]))
        return out["tokens"]


def argmax(row):
    return max(range(len(row)), key=row.__getitem__)


def bf16_ulp(x):
    """The spacing of bfloat16 numbers at |x| (8 significant bits)."""
    return 2.0 ** (math.frexp(abs(x))[1] - 8) if x else 2.0 ** -133


def compare(a_rows, b_rows):
    """max |a - b| / max|b| per row (the worst row), the share of rows with equal argmax, and
    that share over the "clear" rows: those whose top-2 gap in b exceeds 2 bf16 ulps of b's top
    logit (random-weight logits are nearly flat, so a change of summation order flips the argmax
    of near-ties; docs/models.md uses the same criterion)."""
    if len(a_rows) != len(b_rows):
        raise SystemExit("position counts differ: %d vs %d" % (len(a_rows), len(b_rows)))
    worst, same, clear, clear_same = 0.0, 0, 0, 0
    for a, b in zip(a_rows, b_rows):
        if len(a) != len(b):
            raise SystemExit("vocabulary sizes differ: %d vs %d" % (len(a), len(b)))
        scale = max(abs(x) for x in b) or 1.0
        worst = max(worst, max(abs(x - y) for x, y in zip(a, b)) / scale)
        eq = argmax(a) == argmax(b)
        same += eq
        top2 = sorted(b)[-2:]
        if top2[1] - top2[0] > 2 * bf16_ulp(top2[1]):
            clear += 1
            clear_same += eq
    return worst, same / len(a_rows), (clear_same / clear if clear else 1.0), clear


def agree_prefix(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def check_fixtures(e, failures):
    for fx, synthetic in FIXTURES:
        d = os.path.join(ROOT, "tests", "data", "models", fx)
        ref = json.load(open(os.path.join(d, "reference.json")))
        files = {}
        for typ in ["BF16", "Q8_0", "Q4_0"]:
            path = os.path.join(e.tmp, "%s.%s.gguf" % (fx, typ.lower()))
            cmd = [sys.executable, os.path.join(HERE, "gguf_write.py"), "--fixture", d, "--type",
                   typ, "--out-file", path]
            run(cmd + (["--synthetic-vocab"] if synthetic else []))
            files[typ] = path
        for typ, path in files.items():
            rows = {"ref_f64": [], "llama.cpp": [], "ingot_gguf": [], "ingot_dir": []}
            for s in ref["sequences"]:
                ids = s["ids"]
                rows["ref_f64"] += s["logits_f64"]
                rows["llama.cpp"] += e.lcpp_logits(path, ids)[0]
                rows["ingot_gguf"] += e.ingot_logits(path, ids)
                if typ == "BF16":
                    rows["ingot_dir"] += e.ingot_logits(d, ids)
            pairs = [("llama.cpp", "ingot_gguf"), ("llama.cpp", "ref_f64"),
                     ("ingot_gguf", "ref_f64")]
            if typ == "BF16":
                pairs.append(("ingot_dir", "ingot_gguf"))
            for a, b in pairs:
                rel, top1, clear1, nclear = compare(rows[a], rows[b])
                r = {"fixture": fx, "gguf": typ, "a": a, "b": b, "positions": len(rows[a]),
                     "max_rel_diff": rel, "argmax_agree": top1, "clear_positions": nclear,
                     "argmax_agree_clear": clear1}
                if typ == "BF16" and (a, b) == ("llama.cpp", "ingot_gguf") and (
                        rel > BF16_REL_LIMIT or clear1 < TOP1_LIMIT):
                    failures.append(r)
                print(json.dumps(r), flush=True)
        g = ref["greedy"]
        for ids, want in zip(g["prompts"], g["single"]):
            lc = e.lcpp_greedy(files["BF16"], ids, len(want))
            ig = e.ingot_greedy(files["BF16"], ids, len(want))
            print(json.dumps({"fixture": fx, "greedy_prompt": ids, "transformers_f32": want,
                              "llama.cpp": lc, "ingot": ig,
                              "llama.cpp_vs_ingot_prefix": agree_prefix(lc, ig),
                              "llama.cpp_vs_transformers_prefix": agree_prefix(lc, want),
                              "ingot_vs_transformers_prefix": agree_prefix(ig, want)}),
                  flush=True)


def check_real(e, models, failures):
    prompt = [1000 + 997 * i % 30000 for i in range(16)]
    for m in ["qwen3-0.6b", "llama-3.2-1b"]:
        root = os.path.join(models, m)
        if not os.path.exists(os.path.join(root, "bf16.gguf")):
            print(json.dumps({"model": m, "skipped": "no checkpoints under " + root}))
            continue
        ref = e.ingot_logits(os.path.join(root, "bf16"), prompt)
        ref_greedy = e.ingot_greedy(os.path.join(root, "bf16"), prompt, 16)
        for typ in ["bf16", "q8_0", "q4_0"]:
            path = os.path.join(root, typ + ".gguf")
            lc = e.lcpp_logits(path, prompt)[0]
            ig = e.ingot_logits(path, prompt)
            lg, igg = e.lcpp_greedy(path, prompt, 16), e.ingot_greedy(path, prompt, 16)
            rel, top1, clear1, nclear = compare(lc, ig)
            r = {"model": m, "gguf": typ, "positions": len(prompt),
                 "llama.cpp_vs_ingot_gguf_max_rel_diff": rel, "argmax_agree": top1,
                 "clear_positions": nclear, "argmax_agree_clear": clear1,
                 "greedy_llama.cpp": lg, "greedy_ingot_gguf": igg,
                 "greedy_prefix_agree": agree_prefix(lg, igg)}
            if typ == "bf16":
                rel2, top2, _, _ = compare(ig, ref)
                r.update({"ingot_gguf_vs_ingot_dir_max_rel_diff": rel2,
                          "ingot_gguf_vs_dir_argmax_agree": top2, "greedy_ingot_dir": ref_greedy})
                if rel > BF16_REL_LIMIT or clear1 < TOP1_LIMIT:
                    failures.append(r)
            print(json.dumps(r), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ingot", default=os.path.join(ROOT, "build-lcpp", "tools", "cli", "ingot"))
    ap.add_argument("--bench", default=os.path.join(HERE, "llamacpp_bench.mjs"))
    ap.add_argument("--models", default="/tmp/llamacpp/models")
    ap.add_argument("--skip-fixtures", action="store_true")
    ap.add_argument("--skip-real", action="store_true")
    args = ap.parse_args()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        e = Engines(args.ingot, args.bench, tmp)
        if not args.skip_fixtures:
            check_fixtures(e, failures)
        if not args.skip_real:
            check_real(e, args.models, failures)
    print(json.dumps({"failures": len(failures)}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
