#!/usr/bin/env python3
# `ingot launch` and `ingot dist-check` on the CPU: N ranks sum and gather over the TCP
# rendezvous, only rank 0's stdout comes out, a failing rank stops the group with exit 1 (no
# hang), bad arguments are errors; `--tp 2` on generate / score / classify gives one process's
# results. Usage: test_cli_launch.py INGOT_BINARY REPO_ROOT
import json
import os
import struct
import subprocess
import sys
import tempfile

ingot = sys.argv[1]
failures = 0
checks = 0
env = dict(os.environ, INGOT_DEVICE="cpu", INGOT_NUM_THREADS="1", INGOT_DIST_TIMEOUT="60")


def run(args):
    return subprocess.run([ingot, *args], capture_output=True, timeout=120, env=env)


def check(cond, what, r=None):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print("FAIL:", what)
        if r is not None:
            print("  rc:", r.returncode, "stdout:", r.stdout.decode(errors="replace")[-400:],
                  "stderr:", r.stderr.decode(errors="replace")[-600:])


for n in (1, 2, 3):
    r = run(["launch", "--nproc", str(n), "--", "dist-check"])
    lines = r.stdout.decode().strip().splitlines()
    check(r.returncode == 0 and len(lines) == 1, f"nproc {n}: one line from rank 0", r)
    if r.returncode == 0 and len(lines) == 1:
        out = json.loads(lines[0])
        tri = n * (n + 1) / 2
        check(out["world_size"] == n, f"nproc {n}: world size", r)
        check(out["sum_f32"] == [tri, 2 * tri, 3 * tri], f"nproc {n}: float32 sum", r)
        check(out["sum_bf16"] == [tri, 2 * tri, 3 * tri], f"nproc {n}: bfloat16 sum", r)
        check(out["ok"] is True and out["gathered_ranks"] == n, f"nproc {n}: gather", r)

# A rank that fails: the launcher names it, stops the others and exits 1; rank 1's stderr is
# forwarded with its prefix.
r = run(["launch", "--nproc", "3", "--", "dist-check", "--fail-rank", "1"])
err = r.stderr.decode()
check(r.returncode == 1, "failing rank: exit 1", r)
check("[rank 1] error: [dist-check] rank 1 fails on purpose" in err, "failing rank: its stderr", r)
check("error: [launch] " in err and "rank 1 (exit code 1)" in err, "failing rank: named", r)

# The timed all_sum reports its figures.
r = run(["launch", "--nproc", "2", "--", "dist-check", "--mb", "1", "--iters", "2"])
check(r.returncode == 0 and '"all_sum_ms"' in r.stdout.decode(), "timed all_sum", r)

# Usage and input errors.
r = run(["launch", "--nproc", "2"])
check(r.returncode == 2, "no command: usage error", r)
r = run(["launch", "--nproc", "0", "--", "dist-check"])
check(r.returncode == 1 and b"--nproc must be at least 1" in r.stderr, "nproc 0", r)
r = run(["launch", "--nproc", "2", "--", "no-such-command"])
check(r.returncode == 2 and b"unknown command" in r.stderr, "unknown subcommand: exit 2", r)
r = run(["launch", "--nproc", "2", "--nnodes", "2", "--", "dist-check"])
check(r.returncode == 1 and b"--master-port" in r.stderr, "several hosts need a port", r)
r = run(["launch", "--nproc", "2", "--", "launch", "--nproc", "2"])
check(r.returncode == 1 and b"cannot launch" in r.stderr, "no nested launch", r)

# Tensor parallelism through the commands (--tp relaunches under the launcher; every rank reads
# the same stdin): the same greedy ids, log-probabilities and labels as one process, in float32.
root = sys.argv[2]
tok_model = os.path.join(root, "tests", "data", "models", "llama_bf16_tied")  # H = Hkv = 4
have_llm = run(["generate", "--help"]).returncode == 0 and os.path.isdir(tok_model)


def run_in(args, stdin):
    return subprocess.run([ingot, *args], input=stdin.encode(), capture_output=True, timeout=300,
                          env=env)


if have_llm:
    gen = ["generate", "--model", tok_model, "--dtype", "float32", "--prompt-ids", "1,375,288",
           "--max-tokens", "8", "--output", "ids"]
    one = run(gen)
    check(one.returncode == 0 and one.stdout.strip(), "generate: one process", one)
    for extra in (["--tp", "2"], ["--tp=2"]):
        two = run(gen + extra)
        check(two.returncode == 0 and two.stdout == one.stdout,
              f"generate {extra}: the same ids as one process", two)
    two = run(["launch", "--nproc", "2", "--", *gen, "--tp", "2"])
    check(two.returncode == 0 and two.stdout == one.stdout, "launch -- generate --tp 2", two)

    lines = "".join(json.dumps(l) + "\n" for l in [
        {"prompt": "Once upon a time", "continuation": " there was"},
        {"prompt_ids": [1, 375, 288], "continuation_ids": [83, 9, 10]}])
    sc = ["score", "--model", tok_model, "--dtype", "float32"]
    one, two = run_in(sc, lines), run_in(sc + ["--tp", "2"], lines)
    o1 = [json.loads(l) for l in one.stdout.decode().splitlines()] if one.returncode == 0 else []
    o2 = [json.loads(l) for l in two.stdout.decode().splitlines()] if two.returncode == 0 else []
    check(len(o1) == 2 and len(o2) == 2, "score --tp 2: one line per input", two)
    for a, b in zip(o1, o2):
        check(a["tokens"] == b["tokens"] and
              all(abs(x - y) < 1e-4 for x, y in zip(a["token_logprobs"], b["token_logprobs"])),
              f"score --tp 2: {b} vs {a}")

    with tempfile.TemporaryDirectory() as tmp:
        tmpl = os.path.join(tmp, "t.txt")
        open(tmpl, "w").write("Review: {text}\nSentiment:\n")
        cl = ["classify", "--model", tok_model, "--labels", " yes, no", "--template", tmpl,
              "--dtype", "float32", "--batch-size", "2"]
        texts = "".join(json.dumps(t) + "\n" for t in ["good", "a much longer text here", "bad"])
        one, two = run_in(cl, texts), run_in(cl + ["--tp", "2"], texts)
        o1 = [json.loads(l) for l in one.stdout.decode().splitlines()] if one.returncode == 0 else []
        o2 = [json.loads(l) for l in two.stdout.decode().splitlines()] if two.returncode == 0 else []
        check(len(o1) == 3 and len(o2) == 3, "classify --tp 2: one line per input", two)
        for a, b in zip(o1, o2):
            check(a["label"] == b["label"] and
                  all(abs(a["probs"][k] - b["probs"][k]) < 1e-5 for k in a["probs"]),
                  f"classify --tp 2: {b} vs {a}")

        # Data parallel: shares of the texts on 2 and 3 ranks (one rank gets a single text),
        # the lines in input order, with their texts.
        for n in ("2", "3"):
            dp = run_in(cl + ["--dp", n, "--with-text"], texts)
            od = [json.loads(l) for l in dp.stdout.decode().splitlines()] if dp.returncode == 0 else []
            check(len(od) == 3 and [o["text"] for o in od] == ["good", "a much longer text here", "bad"],
                  f"classify --dp {n}: one line per input, in order", dp)
            for a, b in zip(o1, od):
                check(a["label"] == b["label"] and
                      all(abs(a["probs"][k] - b["probs"][k]) < 1e-5 for k in a["probs"]),
                      f"classify --dp {n}: {b} vs {a}")
        r = run_in(cl + ["--dp", "2", "--tp", "2"], texts)
        check(r.returncode == 1 and b"--dp with --tp" in r.stderr, "classify --dp with --tp", r)

    # Data-parallel LoRA: --dp N with --grad-accum k makes the updates of one process with
    # --grad-accum N*k (same losses, same adapter up to the order of the gradient sums).
    def safetensors(path):
        raw = open(path, "rb").read()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        out = {}
        for name, t in header.items():
            if name == "__metadata__":
                continue
            check(t["dtype"] == "F32", f"adapter tensor {name} is float32")
            a, b = t["data_offsets"]
            out[name] = struct.unpack(f"<{(b - a) // 4}f", raw[8 + n + a:8 + n + b])
        return out

    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "train.jsonl")
        with open(data, "w") as f:
            for i in range(12):
                f.write(json.dumps({"text": f"example {i}: " + "the quick brown fox " * (1 + i % 3)}) + "\n")
        tr = ["lora", "train", "--model", tok_model, "--dtype", "float32", "--data", data,
              "--iters", "3", "--batch-size", "2", "--lr", "1e-2", "--targets", "all-linear",
              "--log-every", "0"]
        for dp, accum in ((2, 1), (2, 2), (3, 1)):
            one_dir, dp_dir = os.path.join(tmp, f"one{dp}{accum}"), os.path.join(tmp, f"dp{dp}{accum}")
            one = run(tr + ["--grad-accum", str(dp * accum), "--out", one_dir])
            par = run(tr + ["--grad-accum", str(accum), "--dp", str(dp), "--out", dp_dir])
            what = f"lora train --dp {dp} --grad-accum {accum}"
            check(one.returncode == 0 and par.returncode == 0, what, par if one.returncode == 0 else one)
            if one.returncode or par.returncode:
                continue
            l1 = [json.loads(l) for l in open(os.path.join(one_dir, "loss.jsonl"))]
            l2 = [json.loads(l) for l in open(os.path.join(dp_dir, "loss.jsonl"))]
            check(len(l1) == len(l2) == 3 and all(
                a["step"] == b["step"] and abs(a["loss"] - b["loss"]) < 1e-5 and a["tokens"] == b["tokens"]
                for a, b in zip(l1, l2)), f"{what}: the losses of one process: {l2} vs {l1}")
            w1 = safetensors(os.path.join(one_dir, "adapter_model.safetensors"))
            w2 = safetensors(os.path.join(dp_dir, "adapter_model.safetensors"))
            check(sorted(w1) == sorted(w2) and all(
                max(abs(x - y) for x, y in zip(w1[k], w2[k])) < 1e-5 for k in w1),
                f"{what}: the adapter of one process")
            check(par.stderr.count(b"train: done") == 1, f"{what}: rank 0 reports alone", par)

    r = run(gen + ["--tp", "3"])
    check(r.returncode == 1 and b"num_attention_heads = 4 is not divisible by the 3 ranks" in r.stderr,
          "generate --tp 3 on 4 heads: a clear error", r)
    r = run(["launch", "--nproc", "2", "--", *gen, "--tp", "3"])
    check(r.returncode == 1 and b"--tp 3 needs 3 ranks" in r.stderr, "--tp 3 on 2 ranks", r)

print(f"{checks - failures}/{checks} checks passed")
sys.exit(1 if failures else 0)
