#!/usr/bin/env python3
# CLI contract of `ingot generate`, `chat`, `score`, `classify` and `embed` (issue 6) on the tiny
# model fixtures: greedy ids equal transformers', seeds reproduce, prompt caches round-trip, JSONL
# formats, exit codes 0/1/2 with errors on stderr, --device on every command that computes.
# Usage: test_cli_llm.py INGOT_BINARY REPO_ROOT
import ast
import json
import math
import os
import re
import subprocess
import sys
import tempfile

ingot, root = sys.argv[1:3]
models = os.path.join(root, "tests", "data", "models")
fixtures = sorted(d for d in os.listdir(models) if os.path.isfile(os.path.join(models, d, "reference.json")))
tok_model = os.path.join(models, "llama_bf16_tied")  # the fixture with a tokenizer
failures = 0
checks = 0


def run(args, stdin=b""):
    if isinstance(stdin, str):
        stdin = stdin.encode()
    return subprocess.run([ingot, *args], input=stdin, capture_output=True, timeout=300)


def check(cond, what, r=None):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print("FAIL:", what)
        if r is not None:
            print("  rc:", r.returncode, "stderr:", r.stderr.decode(errors="replace")[-600:])


def as_list(v):
    return ast.literal_eval(v) if isinstance(v, str) else v


def metrics(r):
    """The key=value pairs of the last 'metrics:' line on stderr (all of them with all=True)."""
    lines = [l for l in r.stderr.decode(errors="replace").splitlines() if l.startswith("metrics: ")]
    return [dict(kv.split("=", 1) for kv in l[len("metrics: "):].split()) for l in lines]


def gen_ids(model, prompt, *extra):
    r = run(["generate", "--model", model, "--prompt-ids", ",".join(map(str, prompt)),
             "--output", "ids", *extra])
    ids = [int(x) for x in r.stdout.decode().strip().split(",")] if r.returncode == 0 else None
    return r, ids


def eos_ids(model):
    e = json.load(open(os.path.join(model, "generation_config.json"))).get("eos_token_id", [])
    return e if isinstance(e, list) else [e]


def test_greedy_fixtures():
    for f in fixtures:
        model = os.path.join(models, f)
        g = json.load(open(os.path.join(model, "reference.json")))["greedy"]
        prompts, single = as_list(g["prompts"]), as_list(g["single"])
        eos = eos_ids(model)
        for i, (p, want) in enumerate(zip(prompts, single)):
            r, ids = gen_ids(model, p, "--max-tokens", "12", "--dtype", "float32", "--ignore-eos")
            check(r.returncode == 0 and ids == want, f"{f} prompt {i}: greedy ids {ids} != {want}", r)
            m = metrics(r)
            check(len(m) == 1 and m[0].get("generated_tokens") == "12" and
                  m[0].get("prompt_tokens") == str(len(p)) and m[0].get("finish") == "length",
                  f"{f} prompt {i}: metrics {m}", r)
            # EOS stopping (the default): the same ids up to and including the first EOS id.
            cut = next((k + 1 for k, t in enumerate(want) if t in eos), None)
            if cut is not None:
                r, ids = gen_ids(model, p, "--max-tokens", "12", "--dtype", "float32")
                check(r.returncode == 0 and ids == want[:cut] and metrics(r)[-1].get("finish") == "eos",
                      f"{f} prompt {i}: EOS stop {ids} != {want[:cut]}", r)
        # chunked prefill gives the same ids (sliding windows of 4 on gemma3)
        r, ids = gen_ids(model, prompts[2], "--max-tokens", "12", "--dtype", "float32",
                         "--ignore-eos", "--prefill-chunk", "3")
        check(r.returncode == 0 and ids == single[2], f"{f}: --prefill-chunk 3 ids {ids}", r)


def test_seed():
    model = os.path.join(models, "llama_f32")
    args = ("--max-tokens", "24", "--temperature", "1", "--ignore-eos")
    _, a = gen_ids(model, [5, 6, 7], *args, "--seed", "7")
    _, b = gen_ids(model, [5, 6, 7], *args, "--seed", "7")
    _, c = gen_ids(model, [5, 6, 7], *args, "--seed", "8")
    check(a is not None and a == b, f"same seed, same ids: {a} vs {b}")
    check(a is not None and c is not None and a != c, f"another seed, other ids: {a} vs {c}")
    _, d = gen_ids(model, [5, 6, 7], *args, "--seed", "7", "--top-k", "5", "--top-p", "0.9",
                   "--min-p", "0.05", "--repetition-penalty", "1.3", "--presence-penalty", "0.5",
                   "--frequency-penalty", "0.2", "--logit-bias", "9:-100")
    check(d is not None and len(d) == 24 and 9 not in d, f"all sampling options: {d}")


def test_text_generate():
    args = ["generate", "--model", tok_model, "--prompt", "Once upon a time", "--max-tokens", "16",
            "--ignore-eos"]
    r = run(args)
    text = r.stdout.decode()
    check(r.returncode == 0 and len(text) > 0, "text generate prints text", r)
    m = metrics(r)
    check(len(m) == 1 and all(k in m[0] for k in ("prompt_tokens", "generated_tokens", "prefill_tok/s",
                                                   "decode_tok/s", "ttft_ms", "peak_memory_mib",
                                                   "finish")) and m[0]["generated_tokens"] == "16",
          f"text generate metrics: {m}", r)
    # the text is the decoded ids
    ri = run(args + ["--output", "ids"])
    ids = ri.stdout.decode().strip().replace(",", " ")
    d = run(["detokenize", "--tokenizer", tok_model, "--skip-special"], ids)
    check(ri.returncode == 0 and d.returncode == 0 and d.stdout.decode() == text,
          f"text {text!r} == detokenize(ids) {d.stdout!r}", d)
    # --prompt-ids with text output decodes the same way
    p = run(["tokenize", "--tokenizer", tok_model], "Once upon a time").stdout.decode().split()
    r2 = run(["generate", "--model", tok_model, "--prompt-ids", ",".join(p), "--max-tokens", "16",
              "--ignore-eos"])
    check(r2.returncode == 0 and r2.stdout.decode() == text, "--prompt-ids, text out == --prompt", r2)
    # a stop string cuts the text before it
    mid = len(text) // 2
    stop = text[mid:mid + 2]
    if len(text) >= 6 and stop.strip():
        r3 = run(args + ["--stop", stop])
        want = text[:text.find(stop)]
        check(r3.returncode == 0 and r3.stdout.decode() == want and metrics(r3)[-1].get("finish") == "stop",
              f"--stop {stop!r}: {r3.stdout!r} != {want!r}", r3)
    # chat mode renders the template (so prompt_tokens > the plain prompt's) and --quiet
    rc = run(["generate", "--model", tok_model, "--prompt", "Hi", "--chat", "--system", "Be nice",
              "--max-tokens", "4"])
    mc = metrics(rc)
    check(rc.returncode == 0 and mc and int(mc[0]["prompt_tokens"]) > 4, f"--chat metrics {mc}", rc)
    rq = run(["generate", "--model", tok_model, "--prompt", "Hi", "--max-tokens", "4", "--quiet"])
    check(rq.returncode == 0 and not metrics(rq), "--quiet prints no metrics", rq)


def test_prompt_cache():
    for f in ("llama_bf16_tied", "gemma3_f32"):
        model = os.path.join(models, f)
        g = json.load(open(os.path.join(model, "reference.json")))["greedy"]
        p, want = as_list(g["prompts"])[2], as_list(g["single"])[2]
        with tempfile.TemporaryDirectory() as tmp:
            cf = os.path.join(tmp, "cache.safetensors")
            args = ("--max-tokens", "12", "--dtype", "float32", "--ignore-eos", "--prompt-cache", cf)
            r1, a = gen_ids(model, p, *args)
            check(r1.returncode == 0 and a == want and os.path.isfile(cf),
                  f"{f}: first run with --prompt-cache {a}", r1)
            m1 = metrics(r1)
            check(m1 and m1[0].get("reused_tokens") == "0", f"{f}: first run reuses nothing {m1}", r1)
            r2, b = gen_ids(model, p, *args)
            m2 = metrics(r2)
            check(r2.returncode == 0 and b == want, f"{f}: second run ids {b}", r2)
            check(m2 and int(m2[0].get("reused_tokens", 0)) > 0 and
                  int(m2[0]["reused_tokens"]) + int(m2[0]["prompt_tokens"]) == len(p),
                  f"{f}: second run reuses the prompt {m2}", r2)
            # a prompt extending the cached prompt + reply: reuse, and the same ids as no cache
            ext = p + want
            r3, c = gen_ids(model, ext, *args)
            _, ref = gen_ids(model, ext, "--max-tokens", "12", "--dtype", "float32", "--ignore-eos")
            m3 = metrics(r3)
            check(r3.returncode == 0 and c == ref, f"{f}: extended prompt ids {c} != {ref}", r3)
            check(m3 and int(m3[0].get("reused_tokens", 0)) >= len(p), f"{f}: extended reuse {m3}", r3)
    # a cache file of another model is an error naming the problem (exit 1)
    with tempfile.TemporaryDirectory() as tmp:
        cf = os.path.join(tmp, "c.safetensors")
        gen_ids(os.path.join(models, "llama_f32"), [1, 2, 3], "--max-tokens", "2", "--prompt-cache", cf)
        r, _ = gen_ids(os.path.join(models, "qwen3_bf16"), [1, 2, 3], "--max-tokens", "2", "--prompt-cache", cf)
        check(r.returncode == 1 and r.stderr, "prompt cache of another model: exit 1", r)


def test_chat():
    stdin = "Hi\n\n/reset\nHello there\nHow are you?\n"
    r = run(["chat", "--model", tok_model, "--max-tokens", "6", "--verbose", "--ignore-eos",
             "--system", "You are terse."], stdin)
    m = metrics(r)
    check(r.returncode == 0 and len(m) == 3, f"chat: 3 turns, 3 metrics lines ({len(m)})", r)
    check(not r.stderr.decode().startswith("> "), "chat: no prompt when stdin is not a terminal", r)
    if len(m) == 3:
        check(m[0]["reused_tokens"] == "0" and m[1]["reused_tokens"] == "0",
              f"chat: /reset empties the cache {m}", r)
        check(int(m[2]["reused_tokens"]) > 0, f"chat: turn 2 reuses turn 1's KV {m}", r)
    check(r.stdout.decode().count("\n") >= 3, "chat: a newline after each reply", r)
    r = run(["chat", "--model", os.path.join(models, "llama_f32")], "hi\n")
    check(r.returncode == 1 and b"tokenizer.json" in r.stderr, "chat without tokenizer: exit 1", r)


def write(tmp, name, text):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_classify():
    texts = ["good", "this is a much longer text than the others, by far", "bad", "so-so", "ok then"]
    lines = [json.dumps({"text": t}) if i % 2 == 0 else json.dumps(t) for i, t in enumerate(texts)]
    with tempfile.TemporaryDirectory() as tmp:
        tmpl = write(tmp, "t.txt", "Review: {text}\nSentiment:\n")
        args = ["classify", "--model", tok_model, "--labels", " yes, no", "--template", tmpl,
                "--dtype", "float32"]
        r = run(args + ["--batch-size", "2", "--progress"], "\n".join(lines) + "\n")
        out = [json.loads(l) for l in r.stdout.decode().splitlines()]
        check(r.returncode == 0 and len(out) == len(texts), f"classify: one line per input ({len(out)})", r)
        for o in out:
            p = o["probs"]
            check(list(p) == [" yes", " no"] and abs(sum(p.values()) - 1) < 1e-6 and
                  o["label"] == max(p, key=p.get), f"classify line {o}")
        check(b"items/s" in r.stderr, "classify --progress draws the bar on stderr", r)
        # input order: each line equals the text classified alone
        for t, o in zip(texts, out):
            a = run(args, json.dumps(t) + "\n")
            alone = json.loads(a.stdout.decode()) if a.returncode == 0 else None
            check(alone is not None and alone["label"] == o["label"] and
                  all(abs(alone["probs"][k] - o["probs"][k]) < 1e-4 for k in o["probs"]),
                  f"classify {t!r} in order: {o} vs alone {alone}", a)
            check(a.stderr == b"", "classify: no progress bar when stderr is not a terminal", a)
        r = run(args + ["--with-text"], "\n".join(lines) + "\n")
        wt = [json.loads(l) for l in r.stdout.decode().splitlines()]
        check(r.returncode == 0 and [o["text"] for o in wt] == texts and
              [list(o) for o in wt] == [["text", "label", "probs"]] * len(texts) and
              [o["label"] for o in wt] == [o["label"] for o in out],
              "classify --with-text: each line starts with its input text", r)
        r = run(args + ["--metrics"], "\n".join(lines) + "\n")
        m = dict(kv.split("=", 1) for kv in r.stderr.decode().split("metrics: ", 1)[-1].split())
        check(r.returncode == 0 and m.get("texts") == str(len(lines)) and float(m["classify_s"]) >= 0
              and float(m["load_s"]) >= 0 and "texts/s" in m, "classify --metrics: a metrics line on stderr", r)
        r = run(args, "")
        check(r.returncode == 0 and r.stdout == b"" and b"items/s" not in r.stderr, "classify: empty input", r)
        # errors
        r = run(args, '{"text": "a"}\n"b"\n{"txt": 1}\n')
        check(r.returncode == 1 and b"line 3" in r.stderr, "classify: bad line names line 3", r)
        r = run(args, '{"text": "a"}\n{oops\n')
        check(r.returncode == 1 and b"line 2" in r.stderr, "classify: invalid JSON names line 2", r)
        # enough lines to be parsed on several threads: still the first bad line is named
        many = [json.dumps("t%d" % i) for i in range(6000)]
        many[4099], many[5899] = '{"txt": 1}', "{oops"
        r = run(args, "\r\n".join(many) + "\r\n")
        check(r.returncode == 1 and b"line 4100:" in r.stderr,
              "classify: the first of two bad lines among 6000 is named", r)
        for bad in ("no placeholder", "{text} and {text}"):
            r = run(["classify", "--model", tok_model, "--labels", "a,b", "--template",
                     write(tmp, "bad.txt", bad)], '"x"\n')
            check(r.returncode == 1 and b"{text}" in r.stderr, f"classify template {bad!r}: exit 1", r)
        r = run(["classify", "--model", tok_model, "--labels", "a,a", "--template", tmpl], '"x"\n')
        check(r.returncode == 1 and b"twice" in r.stderr, "classify: duplicate label", r)


def test_score():
    lines = [
        {"prompt": "Once upon a time", "continuation": " there was"},
        {"prompt_ids": [1, 375, 288], "continuation_ids": [83, 9, 10]},
        {"prompt": "The", "continuation": " end."},
    ]
    r = run(["score", "--model", tok_model, "--batch-size", "2"], "".join(json.dumps(l) + "\n" for l in lines))
    out = [json.loads(l) for l in r.stdout.decode().splitlines()]
    check(r.returncode == 0 and len(out) == 3, "score: one line per input", r)
    for l, o in zip(lines, out):
        lp = o["token_logprobs"]
        check(len(lp) == len(o["tokens"]) > 0 and abs(o["logprob_sum"] - sum(lp)) < 1e-6 * max(1, abs(sum(lp)))
              and o["logprob_sum"] <= 0 and all(x <= 0 for x in lp), f"score line {o}")
        if "continuation_ids" in l:
            check(o["tokens"] == l["continuation_ids"], f"score ids tokens {o['tokens']}")
        else:
            tk = lambda s: [int(x) for x in run(["tokenize", "--tokenizer", tok_model], s).stdout.split()]
            n = len(tk(l["prompt"]))
            check(o["tokens"] == tk(l["prompt"] + l["continuation"])[n:], f"score text tokens {o['tokens']}")
    # ids only: no tokenizer needed
    r = run(["score", "--model", os.path.join(models, "qwen3_f32_tied")],
            '{"prompt_ids": [1, 2], "continuation_ids": [3]}\n')
    check(r.returncode == 0 and len(r.stdout.splitlines()) == 1, "score ids without tokenizer", r)
    # bad lines
    r = run(["score", "--model", tok_model], json.dumps(lines[1]) + "\n{not json\n")
    check(r.returncode == 1 and b"line 2" in r.stderr, "score: invalid JSON names line 2", r)
    r = run(["score", "--model", tok_model], '{"prompt_ids": [1], "continuation_ids": [100000]}\n')
    check(r.returncode == 1 and b"line 1" in r.stderr, "score: id out of range names line 1", r)
    r = run(["score", "--model", tok_model], '{"prompt": "a"}\n')
    check(r.returncode == 1 and b"line 1" in r.stderr, "score: missing continuation names line 1", r)


def test_embed():
    texts = ["one", "two words", "and three words"]
    stdin = "".join(json.dumps(t) + "\n" for t in texts)
    r = run(["embed", "--model", tok_model], stdin)
    last = [json.loads(l)["embedding"] for l in r.stdout.decode().splitlines()]
    hidden = json.load(open(os.path.join(tok_model, "config.json")))["hidden_size"]
    check(r.returncode == 0 and len(last) == 3 and all(len(v) == hidden for v in last) and
          all(math.isfinite(x) for v in last for x in v), "embed: one vector per line", r)
    r = run(["embed", "--model", tok_model, "--pooling", "mean"], stdin)
    mean = [json.loads(l)["embedding"] for l in r.stdout.decode().splitlines()]
    check(r.returncode == 0 and len(mean) == 3 and mean != last, "embed --pooling mean differs", r)
    with tempfile.TemporaryDirectory() as tmp:
        r = run(["embed", "--model", tok_model, "--template", write(tmp, "t", "Q: {text}\n")], stdin)
        check(r.returncode == 0 and len(r.stdout.splitlines()) == 3, "embed --template", r)


def test_errors_and_help():
    r = run(["generate", "--model", "/nonexistent/model_dir", "--prompt-ids", "1,2", "--output", "ids"])
    check(r.returncode == 1 and b"/nonexistent/model_dir" in r.stderr, "missing model dir: exit 1 naming it", r)
    r = run(["score", "--model", "/nonexistent/model_dir"], '{"prompt_ids": [1], "continuation_ids": [2]}\n')
    check(r.returncode == 1 and b"/nonexistent/model_dir" in r.stderr, "score: missing model dir", r)
    m = os.path.join(models, "llama_f32")
    for bad in (["--bogus"], ["--output", "xml", "--prompt-ids", "1"], [],
                ["--prompt-ids", "1", "--prompt", "x"], ["--prompt-ids", "1", "--chat"],
                ["--prompt-ids", "1", "--dtype", "int8"], ["--prompt-ids", "1", "--max-tokens", "0"]):
        r = run(["generate", "--model", m, *bad])
        check(r.returncode == 2, f"generate {bad}: usage error exit 2", r)
    r = run(["classify", "--model", m, "--template", "x"])
    check(r.returncode == 2, "classify without --labels: exit 2", r)
    r = run(["embed", "--model", m, "--pooling", "max"])
    check(r.returncode == 2, "embed --pooling max: exit 2", r)
    r = run(["generate", "--model", m, "--prompt-ids", "1,2"])
    check(r.returncode == 1 and b"tokenizer.json" in r.stderr and b"--output ids" in r.stderr,
          "--prompt-ids with text output and no tokenizer: exit 1 with a hint", r)
    r = run(["generate", "--model", m, "--prompt-ids", "1,x", "--output", "ids"])
    check(r.returncode == 1 and b"'x'" in r.stderr, "generate --prompt-ids 1,x: exit 1", r)
    r = run(["generate", "--model", m, "--prompt-ids", "1,99999", "--output", "ids"])
    check(r.returncode == 1 and r.stderr, "generate id out of vocabulary: exit 1", r)
    r = run(["generate", "--model", m, "--prompt", "hello"])
    check(r.returncode == 1 and b"tokenizer.json" in r.stderr, "text prompt without tokenizer: exit 1", r)
    r = run(["generate", "--model", m, "--prompt-ids", "1", "--logit-bias", "oops", "--output", "ids"])
    check(r.returncode == 1 and b"--logit-bias" in r.stderr, "bad --logit-bias: exit 1", r)
    # a closed stdout pipe is an error exit (0 if all was written first), never SIGPIPE
    r = subprocess.run(["bash", "-c", f"'{ingot}' generate --model '{tok_model}' --prompt hi "
                        "--max-tokens 400 --ignore-eos --quiet | head -c 1 >/dev/null; "
                        "exit ${PIPESTATUS[0]}"], capture_output=True, timeout=300)
    check(r.returncode in (0, 1), f"closed stdout: exit {r.returncode}, not a signal", r)
    for cmd in ("generate", "chat", "score", "classify", "embed"):
        r = run([cmd, "--help"])
        check(r.returncode == 0 and b"Example" in r.stdout, f"{cmd} --help has an example", r)


def test_device():
    m = os.path.join(models, "llama_f32")
    prompt = ["--prompt-ids", "1,5,9", "--output", "ids", "--max-tokens", "4"]
    r = run(["generate", "--model", m, *prompt, "--device", "tpu"])
    check(r.returncode == 1 and b"[device] cannot parse device 'tpu'" in r.stderr,
          "--device tpu: exit 1 naming the device", r)
    r = run(["generate", "--model", m, *prompt, "--device", "cuda:99"])
    check(r.returncode == 1 and b"[device] cuda:99 requested but" in r.stderr,
          "--device cuda:99: exit 1, no such GPU", r)
    r = run(["generate", "--model", m, *prompt, "--device", "cpu"])
    mc = metrics(r)
    check(r.returncode == 0 and mc and mc[-1].get("device") == "cpu" and float(mc[-1]["load_s"]) > 0,
          f"--device cpu: metrics name the device and the load time ({mc})", r)
    rd = run(["generate", "--model", m, *prompt])
    md = metrics(rd)
    check(rd.returncode == 0 and rd.stdout == r.stdout and md and "device" in md[-1],
          "default device: same greedy ids as --device cpu, device in metrics", rd)
    r = run(["logits", "--model", m, "--ids", "1,5,9", "--device", "cpu"])
    check(r.returncode == 0 and json.loads(r.stdout)["logits"], "logits --device cpu", r)
    r = run(["logits", "--model", m, "--ids", "1,5,9", "--device", "nope"])
    check(r.returncode == 1 and b"[device]" in r.stderr, "logits --device nope: exit 1", r)
    r = run(["inspect", "--model", m, "--load", "--device", "cpu"])
    check(r.returncode == 0 and re.search(rb"loaded\s+cpu in [0-9.]+ s", r.stdout),
          "inspect --load --device cpu reports the load", r)
    r = run(["inspect", "--model", m, "--json", "--device", "cpu"])
    j = json.loads(r.stdout) if r.returncode == 0 else {}
    check(j.get("load", {}).get("device") == "cpu" and j["load"]["seconds"] > 0,
          "inspect --json --device cpu has a load section", r)
    r = run(["inspect", "--model", m])
    check(r.returncode == 0 and b"loaded" not in r.stdout, "inspect alone loads no weights", r)
    r = run(["score", "--model", m, "--device", "cpu"], '{"prompt_ids": [1, 5], "continuation_ids": [9]}\n')
    check(r.returncode == 0 and "logprob_sum" in json.loads(r.stdout), "score --device cpu", r)
    r = run(["demo", "--device", "cpu"])
    check(r.returncode == 0 and b"device cpu" in r.stdout, "demo --device cpu", r)
    for cmd in ("generate", "chat", "score", "classify", "embed", "logits", "inspect", "demo"):
        r = run([cmd, "--help"])
        check(r.returncode == 0 and b"--device" in r.stdout and b"cuda:N" in r.stdout,
              f"{cmd} --help documents --device", r)


def test_first_contact():
    r = run([])
    check(r.returncode == 0 and b"Subcommands:" in r.stdout and b"generate" in r.stdout
          and b"classify" in r.stdout, "`ingot` alone lists the commands", r)
    r = run(["geneate"])
    check(r.returncode == 2 and b"unknown command 'geneate'" in r.stderr
          and b"Did you mean 'generate'?" in r.stderr, "a typo names the word and suggests", r)
    r = run(["xyzzy"])
    check(r.returncode == 2 and b"unknown command 'xyzzy'" in r.stderr
          and b"Did you mean" not in r.stderr and b"Commands:" in r.stderr,
          "an unrelated word lists the commands without a guess", r)
    r = run(["insp"])
    check(r.returncode == 2 and b"Did you mean 'inspect'?" in r.stderr, "a prefix suggests", r)


def test_logits_adapter():
    # `ingot logits --adapter` (unfused LoRA) against PEFT's float32 logits of the same adapter
    # (tests/data/lora/llama_f32: scripts/lora_goldens.py), read from the safetensors file here.
    import struct
    lora = os.path.join(root, "tests", "data", "lora", "llama_f32")
    ref = json.load(open(os.path.join(lora, "reference.json")))
    blob = open(os.path.join(lora, "logits.safetensors"), "rb").read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    ids = ref["ids"][0]  # the row without padding
    base = os.path.join(models, ref["fixture"])
    args = ["logits", "--model", base, "--ids", ",".join(map(str, ids)), "--all-positions",
            "--dtype", "float32"]
    plain = run(args)
    check(plain.returncode == 0, "logits without the adapter", plain)
    for name in ("init", "final"):
        e = header[name]
        _, rows, vocab = e["shape"]
        start = 8 + n + e["data_offsets"][0]
        want = struct.unpack(f"<{rows * vocab}f", blob[start:start + 4 * rows * vocab])
        r = run(args + ["--adapter", os.path.join(lora, name)])
        got = [v for row in json.loads(r.stdout)["logits"] for v in row] if r.returncode == 0 else []
        scale = max(abs(v) for v in want)
        err = max((abs(a - b) for a, b in zip(got, want)), default=math.inf)
        check(r.returncode == 0 and len(got) == rows * vocab and err <= 1e-4 * scale,
              f"logits --adapter {name}: max |ingot - PEFT| {err:.3g} (scale {scale:.3g})", r)
        base_got = [v for row in json.loads(plain.stdout)["logits"] for v in row] if plain.returncode == 0 else []
        moved = max((abs(a - b) for a, b in zip(got, base_got)), default=0)
        check(moved > 100 * err, f"logits --adapter {name} moves the logits ({moved:.3g})", r)
    r = run(args + ["--adapter", "/nonexistent-adapter"])
    check(r.returncode == 1 and b"nonexistent-adapter" in r.stderr, "logits --adapter: missing directory", r)


tests = [test_greedy_fixtures, test_seed, test_text_generate, test_prompt_cache, test_chat,
         test_classify, test_score, test_embed, test_errors_and_help, test_device,
         test_first_contact, test_logits_adapter]
only = sys.argv[3:]
for t in tests:
    if only and t.__name__ not in only:
        continue
    before = failures
    try:
        t()
    except Exception as e:  # a crash in one test must not hide the others
        failures += 1
        print(f"FAIL: {t.__name__} raised {type(e).__name__}: {e}")
    print(("ok   " if failures == before else "FAIL ") + t.__name__)
print(f"{checks} checks, {failures} failures")
sys.exit(1 if failures else 0)
