#!/usr/bin/env python3
"""CLI test of GGUF files in the text commands (issue 14): given a .gguf file with no
tokenizer.json, `tokenize`, `detokenize`, `chat-template`, `generate`, `chat`, `score`, `classify`
and `embed` use the tokenizer built from the file's tokenizer.ggml.* metadata.

Reference: tests/data/gguf/llama_bf16_tied.bf16.gguf is tests/data/models/llama_bf16_tied (bf16
weights, tokenizer.json, tokenizer_config.json, generation_config.json) written by
scripts/gguf_write.py. Every command must give the same output on the GGUF file as on the
Hugging Face directory (same weights, the tokenizer.json that the tokenizer goldens check against
Hugging Face `tokenizers`). A GGUF file without tokenizer metadata is a clear error for text
input (exit 1) and still runs on token ids, stopping at the EOS ids of its metadata. The
SentencePiece fixtures (gemma3_spm, llama_spm) tokenize to SentencePiece's own ids.

    python3 tests/cli/test_cli_gguf.py BUILD/tools/cli/ingot REPO_ROOT
"""
import json
import os
import subprocess
import sys
import tempfile

ingot, root = sys.argv[1], sys.argv[2]
gguf = os.path.join(root, "tests", "data", "gguf", "llama_bf16_tied.bf16.gguf")
hf = os.path.join(root, "tests", "data", "models", "llama_bf16_tied")
no_tok = os.path.join(root, "tests", "data", "gguf", "qwen3_bf16.q8_0.gguf")
failures = []


def run(args, stdin=b""):
    if isinstance(stdin, str):
        stdin = stdin.encode()
    return subprocess.run([ingot, *args], input=stdin, capture_output=True, timeout=300)


def check(ok, what, r=None):
    if not ok:
        failures.append(what)
        print(f"FAIL {what}" + (f"\n  rc={r.returncode}\n  stderr={r.stderr[-1500:]!r}" if r else ""))
    else:
        print(f"ok   {what}")


def same(args_of, what, stdin=b"", nonempty=True):
    """Runs the command on the GGUF file and on the HF directory: both exit 0, same stdout."""
    a, b = run(args_of(gguf), stdin), run(args_of(hf), stdin)
    ok = a.returncode == 0 and b.returncode == 0 and a.stdout == b.stdout
    ok = ok and (not nonempty or len(a.stdout.strip()) > 0)
    check(ok, what, a if a.returncode else b)
    if not ok and a.returncode == 0 and b.returncode == 0:
        print(f"  gguf: {a.stdout[:300]!r}\n  hf:   {b.stdout[:300]!r}")
    return a


texts = ["hello world", "The quick brown fox, 123 + 4567 = ?", "  spaces\tand\nnewlines  ",
         "unicode: héllo wörld — ☃ 日本語", "<|bos|>special<|eos|> text", ""]
jsonl = "".join(json.dumps(t) + "\n" for t in texts)

# tokenize / detokenize / chat-template (--tokenizer takes the GGUF file)
same(lambda m: ["tokenize", "--tokenizer", m, "--jsonl"], "tokenize --jsonl: same ids", jsonl)
same(lambda m: ["tokenize", "--tokenizer", m, "--jsonl", "--add-special", "false"],
     "tokenize --add-special false: same ids", jsonl)
r = run(["tokenize", "--tokenizer", gguf], "hi")
check(r.returncode == 0 and r.stdout.split()[0] == b"1", "BOS (id 1) prepended", r)
ids = run(["tokenize", "--tokenizer", hf, "--add-special", "false"], texts[3]).stdout
same(lambda m: ["detokenize", "--tokenizer", m], "detokenize: same text", ids)
conv = json.dumps([{"role": "user", "content": "Hi there"}])
same(lambda m: ["chat-template", "--tokenizer", m], "chat-template: same rendering", conv)

# model commands
same(lambda m: ["generate", "--model", m, "--prompt", "hello world", "--max-tokens", "12",
                "--output", "ids"], "generate --prompt: same ids")
same(lambda m: ["generate", "--model", m, "--prompt", "hello world", "--max-tokens", "12"],
     "generate --prompt: same text", nonempty=False)
# EOS: with --ignore-eos off both stop at the same place (EOS/EOT ids from the metadata).
same(lambda m: ["generate", "--model", m, "--prompt-ids", "1,5,9", "--max-tokens", "40",
                "--output", "ids"], "generate --prompt-ids (token ids only): same ids")
# Stop ids: 2 (EOS) and 4 (EOT) in the metadata, generation_config.json's [2, 4] in the directory;
# a bias makes 4 the greedy token, so generation must stop right after it ("finish=eos").
for prompt in (["--prompt-ids", "1,5,9"], ["--prompt", "hello"]):
    r = same(lambda m: ["generate", "--model", m, *prompt, "--max-tokens", "10", "--output", "ids",
                        "--logit-bias", "4:100"], f"generate {prompt[0]}: stops at EOT id 4")
    check(r.stdout.strip() == b"4" and b"finish=eos" in r.stderr,
          f"generate {prompt[0]} on the GGUF file: '4' then finish=eos", r)
same(lambda m: ["chat", "--model", m, "--max-tokens", "8"], "chat: same reply", "Hello\n",
     nonempty=False)
pairs = "".join(json.dumps({"prompt": p, "continuation": c}) + "\n"
                for p, c in [("Q: sky? A:", " blue"), ("hello", " world")])
score = same(lambda m: ["score", "--model", m], "score: same log-probs", pairs)
with tempfile.TemporaryDirectory() as d:
    tmpl = os.path.join(d, "t.txt")
    with open(tmpl, "w") as f:
        f.write("Review: {text}\nSentiment:")
    same(lambda m: ["classify", "--model", m, "--labels", " good, bad", "--template", tmpl],
         "classify: same probabilities", '"great film"\n"awful"\n')
same(lambda m: ["embed", "--model", m], "embed: same vectors", '"hello world"\n')

# A GGUF file without tokenizer metadata: text input is a clear error, token ids still work.
r = run(["generate", "--model", no_tok, "--prompt", "hello", "--max-tokens", "2"])
check(r.returncode == 1 and b"no tokenizer metadata" in r.stderr and b"qwen3_bf16.q8_0.gguf" in r.stderr,
      "GGUF without tokenizer: generate --prompt exits 1 naming the file", r)
r = run(["tokenize", "--tokenizer", no_tok], "hello")
check(r.returncode == 1 and b"no tokenizer metadata" in r.stderr, "GGUF without tokenizer: tokenize exits 1", r)
r = run(["generate", "--model", no_tok, "--prompt-ids", "1,2,3", "--max-tokens", "2", "--output", "ids"])
check(r.returncode == 0 and r.stdout.strip(), "GGUF without tokenizer: --prompt-ids runs", r)

# SentencePiece vocabularies (tokenizer.ggml.model "llama": pieces, scores and types, no merges):
# gemma3_spm (Gemma layout: no space prefix, user-defined "\n" and "  " pieces, BOS 2) and
# llama_spm (Llama 2 layout: add_space_prefix, <unk> <s> </s>), written by scripts/gguf_write.py.
# The ids are SentencePiece's own for the same vocabulary (scripts/spm_fixture_check.py).
spm_texts = ["Hello world", "hello  world", "the tea\there", "\u00e9t\u00e9 \u2603!",
             "\u65e5\u672c\nat", "   at"]
spm_ids = {
    "gemma3_spm.bf16.gguf": (2, [[24, 19], [11, 14, 108, 44, 16, 18], [40, 11, 26, 5, 11, 45, 39],
                                 [37, 38, 7, 8, 9, 55], [57, 58, 107, 33], [108, 34]]),
    "llama_spm.q8_0.gguf": (1, [[37, 22, 17], [20, 37, 17], [10, 24, 3, 9, 44, 38],
                                [37, 36, 37, 5, 6, 7, 54], [37, 56, 57, 4, 31], [34, 32]]),
}
spm_jsonl = "".join(json.dumps(t) + "\n" for t in spm_texts)
for name, (bos, want) in spm_ids.items():
    m = os.path.join(root, "tests", "data", "gguf", name)
    r = run(["tokenize", "--tokenizer", m, "--jsonl", "--add-special", "false"], spm_jsonl)
    got = [[int(x) for x in line.split()] for line in r.stdout.decode().splitlines()]
    check(r.returncode == 0 and got == want, f"{name}: tokenize gives SentencePiece's ids", r)
    if got != want:
        print(f"  got  {got}\n  want {want}")
    r = run(["tokenize", "--tokenizer", m, "--jsonl"], spm_jsonl)
    got = [[int(x) for x in line.split()] for line in r.stdout.decode().splitlines()]
    check(r.returncode == 0 and got == [[bos] + w for w in want], f"{name}: BOS {bos} prepended", r)
    back = "".join(" ".join(map(str, w)) + "\n" for w in want)
    r = run(["detokenize", "--tokenizer", m, "--jsonl"], back)
    got = [json.loads(line) for line in r.stdout.decode().splitlines()]
    check(r.returncode == 0 and got == spm_texts, f"{name}: detokenize round-trips", r)
    if got != spm_texts:
        print(f"  got  {got!r}")
    # generate on text: the prompt's ids are the tokenizer's (BOS + ids), the reply decodes.
    a = run(["generate", "--model", m, "--prompt", "Hello world", "--max-tokens", "6", "--output",
             "ids"])
    b = run(["generate", "--model", m, "--prompt-ids", ",".join(map(str, [bos] + want[0])),
             "--max-tokens", "6", "--output", "ids"])
    check(a.returncode == 0 and b.returncode == 0 and a.stdout == b.stdout and a.stdout.strip(),
          f"{name}: generate --prompt = --prompt-ids of its ids", a if a.returncode else b)
    r = run(["generate", "--model", m, "--prompt", "Hello world", "--max-tokens", "6"])
    check(r.returncode == 0, f"{name}: generate --prompt prints text", r)

print(f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
