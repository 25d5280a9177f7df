#!/usr/bin/env python3
# The embedded model that `make run` shows (issue 15): models/ingot-tiny and its topic adapter.
# - the model files stay under 16 MB;
# - it learned English word order: for held-out sentences the project wrote (the topic set's
#   validation split, never in the pretraining data), `ingot score` prefers each sentence to the
#   same words reversed, and its loss per token is far below a uniform guess (ln 4096);
# - the adapter labels the eight `make run` sentences right and most held-out ones;
# - the greedy text `make run` prints is made of words (letters), not bytes.
# Usage: test_cli_embedded.py INGOT_BINARY REPO_ROOT
import json
import math
import os
import re
import subprocess
import sys

ingot, root = sys.argv[1:3]
model = os.path.join(root, "models", "ingot-tiny")
adapter = os.path.join(root, "models", "ingot-tiny-topics")
data = os.path.join(root, "models", "data")
failures = checks = 0


def run(args, stdin=""):
    return subprocess.run([ingot, *args, "--device", "cpu"], input=stdin.encode(),
                          capture_output=True, timeout=300)


def check(cond, what, r=None):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print("FAIL:", what)
        if r is not None:
            print("  rc:", r.returncode, "stderr:", r.stderr.decode(errors="replace")[-600:])


def jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# Sizes.
size = sum(os.path.getsize(os.path.join(d, f)) for d in (model, adapter) for f in os.listdir(d))
check(size < 16 * 1000 * 1000, f"model + adapter files are {size} bytes, want < 16 MB")

# English word order: each held-out sentence against its words reversed.
valid = jsonl(os.path.join(data, "topics_valid.jsonl"))
pairs = []
for r in valid:
    words = r["text"].rstrip(".!?").split()
    pairs.append({"prompt": "", "continuation": r["text"]})
    pairs.append({"prompt": "", "continuation": " ".join(reversed(words)) + "."})
r = run(["score", "--model", model], "".join(json.dumps(p) + "\n" for p in pairs))
out = [json.loads(line) for line in r.stdout.decode().splitlines()]
check(r.returncode == 0 and len(out) == len(pairs), "score: one line per pair", r)
if len(out) == len(pairs):
    lp = [o["logprob_sum"] for o in out]
    better = sum(lp[2 * i] > lp[2 * i + 1] for i in range(len(valid)))
    check(better >= 0.95 * len(valid),
          f"real word order preferred for {better}/{len(valid)} sentences, want >= 95%")
    ntok = sum(len(o["tokens"]) for o in out[0::2])
    nll = -sum(lp[0::2]) / ntok
    check(nll < 0.75 * math.log(4096),
          f"held-out loss {nll:.3f} nats/token, want < 0.75 ln 4096 = {0.75 * math.log(4096):.3f}")
    print(f"held-out: real order preferred {better}/{len(valid)}, loss {nll:.3f} nats/token")

# The adapter: the make run sentences, then the validation split.
labels = " food, sports, weather, computers"
tmpl = os.path.join(data, "topics_template.txt")
demo = jsonl(os.path.join(data, "topics_demo.jsonl"))
with open(os.path.join(data, "topics_demo_labels.txt")) as f:
    want = [line.strip() for line in f if line.strip()]
r = run(["classify", "--model", model, "--adapter", adapter, "--labels", labels, "--template",
         tmpl, "--with-text"], "".join(json.dumps({"text": d["text"]}) + "\n" for d in demo))
got = [json.loads(line)["label"].strip() for line in r.stdout.decode().splitlines()]
check(r.returncode == 0 and got == want, f"make run sentences: {got} want {want}", r)
r = run(["classify", "--model", model, "--adapter", adapter, "--labels", labels, "--template",
         tmpl], "".join(json.dumps({"text": v["text"]}) + "\n" for v in valid))
got = [json.loads(line)["label"].strip() for line in r.stdout.decode().splitlines()]
right = sum(g == v["label"] for g, v in zip(got, valid))
check(r.returncode == 0 and right >= 0.75 * len(valid),
      f"held-out topics: {right}/{len(valid)} right, want >= 75% (chance: 25%)", r)
print(f"held-out topics: {right}/{len(valid)} right")
r = run(["classify", "--model", model, "--labels", labels, "--template", tmpl],
        "".join(json.dumps({"text": v["text"]}) + "\n" for v in valid))
base = [json.loads(line)["label"].strip() for line in r.stdout.decode().splitlines()]
base_right = sum(g == v["label"] for g, v in zip(base, valid))
check(r.returncode == 0 and right >= base_right + 0.25 * len(valid),
      f"the adapter adds >= 25 points over the base model ({base_right} -> {right} of {len(valid)})", r)

# The text make run prints: mostly words of letters.
r = run(["generate", "--model", model, "--prompt", "Once upon a time", "--max-tokens", "48"])
text = r.stdout.decode()
tokens = text.split()
wordlike = [t for t in tokens if re.fullmatch(r"[\"'(]*[A-Za-z]+(['-][A-Za-z]+)*[.,;:!?\"')]*", t)]
check(r.returncode == 0 and len(tokens) >= 5 and len(wordlike) >= 0.8 * len(tokens),
      f"generated text is words: {text!r}", r)

print(f"{checks - failures}/{checks} checks passed")
sys.exit(1 if failures else 0)
