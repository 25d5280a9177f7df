#!/usr/bin/env python3
# CLI contract of `ingot tokenize`, `detokenize` and `chat-template` (issue 5): outputs equal the
# Hugging Face goldens, exit codes are 0/1/2 and errors go to stderr.
# Usage: cli_test.py INGOT_BINARY MODELS_DIR DATA_DIR
import json
import subprocess
import sys

ingot, models, data = sys.argv[1:4]
failures = 0


def run(args, stdin):
    return subprocess.run([ingot, *args], input=stdin, capture_output=True)


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what)


corpus = [json.loads(l) for l in open(f"{data}/corpus.jsonl", encoding="utf-8")]
for name in ("gemma3", "qwen3", "llama3_1"):
    tdir = f"{models}/{name}"
    exp = json.load(open(f"{data}/expected_{name}.json", encoding="utf-8"))
    texts = [c for c in corpus if "text" in c and len(c["text"]) < 3000]
    by_name = {c["name"]: c for c in exp["cases"]}
    # --jsonl, without special tokens
    stdin = "".join(json.dumps(c["text"]) + "\n" for c in texts).encode()
    r = run(["tokenize", "--tokenizer", tdir, "--add-special=false", "--jsonl"], stdin)
    check(r.returncode == 0, f"{name} tokenize --jsonl rc={r.returncode} {r.stderr[-300:]}")
    lines = r.stdout.decode().split("\n")[:-1]
    check(len(lines) == len(texts), f"{name} jsonl line count")
    for c, line in zip(texts, lines):
        got = [int(x) for x in line.split()]
        check(got == by_name[c["name"]]["ids"], f"{name}/{c['name']} tokenize --jsonl")
    # raw stdin, default adds special tokens
    for c in texts[2:4] + [x for x in corpus if "bytes_hex" in x][-1:]:
        raw = bytes.fromhex(c["bytes_hex"]) if "bytes_hex" in c else c["text"].encode()
        r = run(["tokenize", "--tokenizer", tdir], raw)
        e = by_name[c["name"]]
        want = e["ids_special"] if e["ids_special"] is not None else exp["special_empty"] + e["ids"]
        check(r.returncode == 0 and [int(x) for x in r.stdout.split()] == want,
              f"{name}/{c['name']} tokenize raw")
        # detokenize round trip (raw UTF-8 out)
        ids = " ".join(map(str, want)).encode()
        d = run(["detokenize", "--tokenizer", tdir], ids)
        text = raw.decode("utf-8", errors="replace")
        wdec = e["decode"] if e["decode"] is not None else text
        check(d.returncode == 0 and d.stdout.decode() == wdec, f"{name}/{c['name']} detokenize")
    # detokenize --jsonl
    stdin = b"".join((" ".join(map(str, by_name[c["name"]]["ids"])) + "\n").encode() for c in texts[:10])
    d = run(["detokenize", "--tokenizer", tdir, "--jsonl"], stdin)
    outs = [json.loads(l) for l in d.stdout.decode().split("\n")[:-1]]
    want = []
    for c in texts[:10]:
        e = by_name[c["name"]]
        want.append(e["decode_skip"] if e["decode_skip"] is not None else e["decode"] or c["text"])
    check(outs == want, f"{name} detokenize --jsonl")
    # chat-template
    import glob
    for p in sorted(glob.glob(f"{data}/chat/{name}_*.json"))[::6]:
        r = run(["chat-template", "--tokenizer", tdir], open(p, "rb").read())
        want = open(p[:-5] + ".txt", "rb").read()
        check(r.returncode == 0 and r.stdout == want, f"chat-template {p}")

# exit codes and stderr
q = f"{models}/qwen3"
r = run(["detokenize", "--tokenizer", q], b"12 abc")
check(r.returncode == 1 and b"abc" in r.stderr and r.stdout == b"", "bad id -> exit 1")
r = run(["tokenize", "--tokenizer", "/nonexistent"], b"x")
check(r.returncode == 1 and b"/nonexistent" in r.stderr, "missing dir -> exit 1")
r = run(["tokenize"], b"x")
check(r.returncode == 2, "missing --tokenizer -> exit 2")
r = run(["tokenize", "--tokenizer", q, "--add-special=maybe"], b"x")
check(r.returncode == 2, "bad bool -> exit 2")
r = run(["tokenize", "--tokenizer", q, "--jsonl"], b"not json\n")
check(r.returncode == 1 and b"line 1" in r.stderr, "bad jsonl -> exit 1")
r = run(["chat-template", "--tokenizer", f"{models}/gemma3"],
        b'[{"role":"user","content":"a"},{"role":"user","content":"b"}]')
check(r.returncode == 1 and b"alternate" in r.stderr, "raise_exception -> exit 1")
r = run(["tokenize", "--help"], b"")
check(r.returncode == 0 and b"Example" in r.stdout, "--help has an example")
print("cli_test:", "OK" if failures == 0 else f"{failures} failures")
sys.exit(1 if failures else 0)
