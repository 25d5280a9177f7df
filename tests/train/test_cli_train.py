#!/usr/bin/env python3
"""CLI test of `ingot lora train` and `ingot lora fuse` (and the older name `ingot fuse`) on the
llama_bf16_tied fixture (it has a tokenizer): malformed data is reported
with file:line before training (exit 1), a short run writes the adapter, checkpoints and loss
curve, `--resume` reproduces the uninterrupted run's adapter byte for byte (also with --pack),
`score --adapter` equals `score` on the fused checkpoint, usage errors exit 2; fuse refuses
quantized checkpoints and GGUF files (exit 1); the mlx-lm adapter fixture
tests/data/lora/llama_f32_mlx fuses into logits equal to PEFT's recorded ones and generates;
`--full` writes a bf16 checkpoint that loads and whose loss fell; LoRA dropout runs with
--grad-checkpoint; every spelling's --help has an example. `ingot train` pretrains a new model
from a config with the fixture's tokenizer on a plain-text corpus: the loss falls, the bf16
checkpoint generates, --resume reproduces the weights byte for byte, a config whose vocabulary is
smaller than the tokenizer's, a missing config and malformed data are errors (exit 1).

    python3 tests/train/test_cli_train.py BUILD/tools/cli/ingot REPO_ROOT
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

ingot, root = sys.argv[1], sys.argv[2]
model = os.path.join(root, "tests", "data", "models", "llama_bf16_tied")
failures = []


def run(args, stdin=None):
    return subprocess.run([ingot, *args], input=stdin, capture_output=True, timeout=300)


def check(ok, what, r=None):
    if not ok:
        failures.append(what)
        print(f"FAIL {what}" + (f"\n  rc={r.returncode}\n  stderr={r.stderr[-2000:]!r}" if r else ""))
    else:
        print(f"ok   {what}")


with tempfile.TemporaryDirectory() as d:
    data = os.path.join(d, "data")
    os.makedirs(data)
    with open(os.path.join(data, "train.jsonl"), "w") as f:
        for i in range(24):
            if i % 3 == 0:
                f.write(json.dumps({"text": f"item {i} is here and there"}) + "\n")
            elif i % 3 == 1:
                f.write(json.dumps({"prompt": "Q: sky? A:", "completion": " blue"}) + "\n")
            else:
                f.write(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                                 {"role": "assistant", "content": "hello"}]}) + "\n")
    with open(os.path.join(data, "valid.jsonl"), "w") as f:
        f.write(json.dumps({"prompt": "Q: sky? A:", "completion": " blue"}) + "\n")
    bad = os.path.join(d, "bad.jsonl")
    with open(bad, "w") as f:
        f.write('{"text": "fine"}\n{"text": 1}\n\n{"prompt": "p"}\n')

    r = run(["lora", "train", "--model", model, "--data", bad, "--iters", "2"])
    check(r.returncode == 1 and f"{bad}:2:".encode() in r.stderr and f"{bad}:4:".encode() in r.stderr,
          "malformed lines: exit 1 naming file:line", r)
    r = run(["lora", "train", "--model", model, "--data", data, "--iters", "2", "--schedule", "step"])
    check(r.returncode == 2, "bad --schedule: usage error", r)
    r = run(["lora", "train", "--model", model, "--data", data, "--targets", "qkv_proj", "--iters", "1",
             "--out", os.path.join(d, "x")])
    check(r.returncode == 1 and b"qkv_proj" in r.stderr, "unknown target module: exit 1", r)

    common = ["--model", model, "--data", data, "--iters", "6", "--batch-size", "4", "--rank", "4",
              "--targets", "all-linear", "--lr", "5e-3", "--warmup", "2", "--mask-prompt",
              "--dtype", "float32", "--log-every", "3"]
    out1 = os.path.join(d, "out1")
    r = run(["lora", "train", *common, "--out", out1, "--save-every", "3", "--eval-every", "3"])
    check(r.returncode == 0 and b"step 6/6" in r.stderr and b"tok/s" in r.stderr
          and b"val_loss" in r.stderr, "train: progress on stderr", r)
    for f in ("adapter_model.safetensors", "adapter_config.json", "loss.jsonl",
              "checkpoint-3/optimizer.safetensors", "checkpoint-3/trainer_state.json"):
        check(os.path.exists(os.path.join(out1, f)), f"train wrote {f}")
    cfg = json.load(open(os.path.join(out1, "adapter_config.json")))
    check(cfg.get("peft_type") == "LORA" and cfg.get("r") == 4 and cfg.get("target_modules") == "all-linear",
          "adapter_config.json is PEFT's")
    out2 = os.path.join(d, "out2")
    r = run(["lora", "train", *common, "--out", out2, "--resume", os.path.join(out1, "checkpoint-3")])
    same = r.returncode == 0 and open(os.path.join(out1, "adapter_model.safetensors"), "rb").read() == \
        open(os.path.join(out2, "adapter_model.safetensors"), "rb").read()
    check(same, "resume from checkpoint-3 gives the same adapter bytes", r)

    # Packing: 24 short examples in rows of <= 64 tokens; resumable like the plain run.
    pk1, pk2 = os.path.join(d, "pack1"), os.path.join(d, "pack2")
    packed = [*common, "--pack", "--seq-len", "64"]
    packed[packed.index("--batch-size") + 1] = "2"
    r = run(["lora", "train", *packed, "--out", pk1, "--save-every", "3"])
    check(r.returncode == 0 and b"packed into" in r.stderr and b"step 6/6" in r.stderr,
          "train --pack", r)
    r = run(["lora", "train", *packed, "--out", pk2, "--resume", os.path.join(pk1, "checkpoint-3")])
    same = r.returncode == 0 and open(os.path.join(pk1, "adapter_model.safetensors"), "rb").read() == \
        open(os.path.join(pk2, "adapter_model.safetensors"), "rb").read()
    check(same, "--pack: resume gives the same adapter bytes", r)
    r = run(["lora", "train", *common, "--out", os.path.join(d, "pack3"),
             "--resume", os.path.join(pk1, "checkpoint-3")])
    check(r.returncode == 1 and b"packing" in r.stderr, "a packed checkpoint is refused unpacked", r)

    # LoRA dropout together with gradient checkpointing.
    r = run(["lora", "train", *common, "--dropout", "0.1", "--grad-checkpoint",
             "--out", os.path.join(d, "drop")])
    check(r.returncode == 0 and b"step 6/6" in r.stderr, "--dropout with --grad-checkpoint", r)

    # Full fine-tuning of the bf16 checkpoint (float32 masters), written in bf16; one batch of
    # all 24 examples, so every step sees the same data.
    fft = os.path.join(d, "full")
    r = run(["lora", "train", "--model", model, "--data", data, "--full", "--iters", "8",
             "--batch-size", "24", "--lr", "1e-3", "--mask-prompt", "--log-every", "4",
             "--out", fft])
    check(r.returncode == 0 and b"full fine-tuning" in r.stderr, "train --full", r)
    hdr = {}
    if os.path.exists(os.path.join(fft, "model.safetensors")):
        with open(os.path.join(fft, "model.safetensors"), "rb") as f:
            hdr = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    check(hdr.get("model.embed_tokens.weight", {}).get("dtype") == "BF16"
          and os.path.exists(os.path.join(fft, "config.json"))
          and os.path.exists(os.path.join(fft, "tokenizer.json")),
          "--full wrote a bf16 checkpoint with config and tokenizer")
    losses = [json.loads(x)["loss"] for x in open(os.path.join(fft, "loss.jsonl"))
              if "val_loss" not in x] if r.returncode == 0 else []
    check(len(losses) == 8 and losses[-1] < 0.5 * losses[0], f"--full: the loss falls ({losses})")
    pair0 = (json.dumps({"prompt": "Q: sky? A:", "continuation": " blue"}) + "\n").encode()
    r = run(["score", "--model", fft], pair0)
    rb = run(["score", "--model", model], pair0)
    check(r.returncode == 0 and rb.returncode == 0 and r.stdout != rb.stdout,
          "the --full checkpoint loads and scores differently from the base", r)
    r = run(["lora", "train", "--model", model, "--data", data, "--full", "--iters", "1"])
    check(r.returncode == 1 and b"--out" in r.stderr, "--full without --out: exit 1", r)
    r = run(["lora", "train", "--model", model, "--data", data, "--full", "--iters", "1",
             "--adapter", out1, "--out", os.path.join(d, "x2")])
    check(r.returncode == 1 and b"--adapter" in r.stderr, "--full with --adapter: exit 1", r)
    r = run(["lora", "train", "--model", model, "--data", data, "--full", "--iters", "1",
             "--out", model])
    check(r.returncode == 1 and b"is the model directory" in r.stderr,
          "--full --out MODEL_DIR: exit 1 before training", r)

    tmpl = os.path.join(d, "tmpl.txt")
    with open(tmpl, "w") as f:
        f.write("Color of {text}:")
    fused = os.path.join(d, "fused")
    r = run(["lora", "fuse", "--model", model, "--adapter", out1, "--dtype", "float32", "--out", fused])
    check(r.returncode == 0 and os.path.exists(os.path.join(fused, "model.safetensors")), "lora fuse", r)
    fused2 = os.path.join(d, "fused2")  # `ingot fuse` stays as an alias: the same bytes
    r = run(["fuse", "--model", model, "--adapter", out1, "--dtype", "float32", "--out", fused2])
    check(r.returncode == 0 and open(os.path.join(fused, "model.safetensors"), "rb").read()
          == open(os.path.join(fused2, "model.safetensors"), "rb").read(), "fuse (alias)", r)
    pair = json.dumps({"prompt": "Q: sky? A:", "continuation": " blue"}) + "\n"
    a = run(["score", "--model", model, "--dtype", "float32", "--adapter", out1], pair.encode())
    b = run(["score", "--model", fused], pair.encode())
    base = run(["score", "--model", model, "--dtype", "float32"], pair.encode())
    def total(p):
        return json.loads(p.stdout.decode().splitlines()[0])["logprob_sum"] if p.returncode == 0 else None
    ta, tb, tbase = total(a), total(b), total(base)
    # Unfused (W x + s B A x) and fused ((W + s B A) x) differ by float32 rounding only.
    check(ta is not None and tb is not None and abs(ta - tb) <= 1e-4 * max(1.0, abs(tb)),
          f"score --adapter ({ta}) equals score on the fused model ({tb})", a)
    check(tbase is not None and abs(ta - tbase) > 1e-3, "the adapter changes the scores", base)
    for cmd in (["classify", "--labels", " blue, red", "--template", tmpl],
                ["generate", "--prompt", "Q: sky? A:", "--max-tokens", "3"]):
        r = run([cmd[0], "--model", model, "--dtype", "float32", "--adapter", out1, *cmd[1:]],
                b'"the sky"\n' if cmd[0] == "classify" else b"")
        check(r.returncode == 0 and r.stdout, f"{cmd[0]} --adapter runs", r)
    r = run(["lora", "fuse", "--model", model, "--out", os.path.join(d, "f2")])
    check(r.returncode == 1 and b"--adapter" in r.stderr, "fuse without --adapter: exit 1", r)
    # Quantized bases: fuse refuses (naming the layer) instead of merging into packed integers.
    q8 = os.path.join(root, "tests", "data", "models", "llama_q8_mlx")  # llama_bf16_tied, 8-bit
    fq = os.path.join(d, "fused_q8")
    r = run(["lora", "fuse", "--model", q8, "--adapter", out1, "--out", fq])
    check(r.returncode == 1 and b"is quantized (8-bit" in r.stderr
          and not os.path.exists(os.path.join(fq, "model.safetensors")),
          "fuse on an 8-bit mlx checkpoint: exit 1, nothing written", r)
    r = run(["score", "--model", q8, "--adapter", out1], pair.encode())
    check(r.returncode == 0, "score --adapter on the 8-bit checkpoint (unfused) runs", r)
    gg = os.path.join(root, "tests", "data", "gguf", "llama_bf16_tied.bf16.gguf")
    r = run(["fuse", "--model", gg, "--adapter", out1, "--out", os.path.join(d, "fused_gguf")])
    check(r.returncode == 1 and b"GGUF file" in r.stderr, "fuse on a GGUF file: exit 1", r)

    # The mlx-lm fixture (scripts/lora_peft_to_mlx.py from the PEFT golden llama_f32/init):
    # fused, its logits are the ones PEFT recorded for the original adapter; generate applies it.
    f32 = os.path.join(root, "tests", "data", "models", "llama_f32")
    mlx = os.path.join(root, "tests", "data", "lora", "llama_f32_mlx")
    ref = json.load(open(os.path.join(root, "tests", "data", "lora", "llama_f32", "reference.json")))
    ids0 = ref["ids"][0]
    with open(os.path.join(root, "tests", "data", "lora", "llama_f32", "logits.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        blob = f.read()
    info = header["init"]
    assert info["dtype"] == "F32" and info["shape"][1] == len(ids0)
    v = info["shape"][2]
    a0 = info["data_offsets"][0]
    peft = struct.unpack("<%df" % (len(ids0) * v), blob[a0:a0 + 4 * len(ids0) * v])  # row 0
    fm = os.path.join(d, "fused_mlx")
    r = run(["fuse", "--model", f32, "--adapter", mlx, "--out", fm])
    check(r.returncode == 0 and b"scale 2" in r.stderr, "fuse with the mlx-lm adapter", r)
    r = run(["logits", "--model", fm, "--ids", ",".join(map(str, ids0)), "--all-positions"])
    got = [x for row in json.loads(r.stdout)["logits"] for x in row] if r.returncode == 0 else []
    scale = max(abs(x) for x in peft)
    err = max((abs(x - y) for x, y in zip(got, peft)), default=float("inf")) / scale
    check(len(got) == len(peft) and err < 1e-4,
          f"fused mlx-lm adapter: logits = PEFT's within 1e-4 relative ({err:.2e})", r)
    last = peft[(len(ids0) - 1) * v:]
    want_first = max(range(v), key=lambda i: last[i])
    gen = ["generate", "--prompt-ids", ",".join(map(str, ids0)), "--max-tokens", "4",
           "--output", "ids", "--ignore-eos"]
    ra = run([*gen, "--model", f32, "--adapter", mlx])
    rb = run([*gen, "--model", fm])
    toks = [int(x) for x in ra.stdout.decode().strip().split(",")] if ra.returncode == 0 else []
    check(ra.returncode == 0 and toks and toks[0] == want_first and ra.stdout == rb.stdout,
          f"generate --adapter mlx-lm: first token = argmax of PEFT's logits ({want_first}), "
          "same ids as the fused model", ra if ra.returncode else rb)

    # `ingot train`: pretraining a new Llama from a config with the fixture's tokenizer (384).
    pcfg = os.path.join(d, "pre_config.json")
    tiny = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 384, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
            "hidden_act": "silu", "tie_word_embeddings": True, "bos_token_id": 1,
            "eos_token_id": 2, "pad_token_id": 0, "rope_theta": 10000.0}
    with open(pcfg, "w") as f:
        json.dump(tiny, f)
    corpus = os.path.join(d, "corpus.txt")  # documents separated by blank lines
    lines = ["the cat sat on the mat.", "a dog ran to the red house.", "we like to sing a song."]
    with open(corpus, "w") as f:
        for i in range(36):
            f.write(lines[i % 3] + "\n" + lines[(i + 1) % 3] + "\n\n")
    pre, pre2 = os.path.join(d, "pre"), os.path.join(d, "pre2")
    ptrain = ["train", "--model-config", pcfg, "--tokenizer", model, "--data", corpus,
              "--seq-len", "64", "--batch-size", "4", "--lr", "3e-3", "--warmup", "3",
              "--iters", "40", "--log-every", "0"]
    r = run([*ptrain, "--save-every", "20", "--out", pre])
    check(r.returncode == 0 and b"pretraining a llama model of" in r.stderr
          and b"36 documents" in r.stderr, "ingot train: pretraining runs", r)
    files = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
             "loss.jsonl", "checkpoint-20/model.safetensors", "checkpoint-40/trainer_state.json"]
    check(all(os.path.exists(os.path.join(pre, x)) for x in files), "ingot train writes " + ", ".join(files), r)
    if r.returncode == 0:
        pc = json.load(open(os.path.join(pre, "config.json")))
        check(pc.get("torch_dtype") == "bfloat16" and pc.get("architectures") == ["LlamaForCausalLM"],
              "the pretrained config.json says bfloat16 and LlamaForCausalLM")
        with open(os.path.join(pre, "model.safetensors"), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
        check(all(v["dtype"] == "BF16" for k, v in hdr.items() if k != "__metadata__"),
              "the pretrained weights are bf16")
        steps = [json.loads(x) for x in open(os.path.join(pre, "loss.jsonl")) if '"loss"' in x]
        check(len(steps) == 40 and steps[-1]["loss"] < steps[0]["loss"] - 2,
              f"pretraining loss falls ({steps[0]['loss']:.3f} -> {steps[-1]['loss']:.3f})")
    r = run(["generate", "--model", pre, "--prompt", "the cat", "--max-tokens", "5"])
    check(r.returncode == 0, "generate --model on the pretrained checkpoint", r)
    r = run([*ptrain, "--out", pre2, "--resume", os.path.join(pre, "checkpoint-20")])
    check(r.returncode == 0 and open(os.path.join(pre, "model.safetensors"), "rb").read()
          == open(os.path.join(pre2, "model.safetensors"), "rb").read(),
          "pretraining resumed from checkpoint-20 gives the same weights", r)
    small = dict(tiny, vocab_size=256)
    scfg = os.path.join(d, "small_config.json")
    with open(scfg, "w") as f:
        json.dump(small, f)
    bad_out = os.path.join(d, "pre_bad")
    r = run(["train", "--model-config", scfg, "--tokenizer", model, "--data", corpus, "--out", bad_out])
    check(r.returncode == 1 and b"vocab_size 256" in r.stderr and not os.path.exists(bad_out),
          "ingot train: a tokenizer larger than the config's vocabulary is an error", r)
    r = run(["train", "--model-config", os.path.join(d, "nope.json"), "--tokenizer", model,
             "--data", corpus, "--out", bad_out])
    check(r.returncode == 1 and b"nope.json" in r.stderr, "ingot train: missing config named", r)
    r = run(["train", "--model-config", pcfg, "--tokenizer", model, "--data", bad, "--out", bad_out])
    check(r.returncode == 1 and (bad + ":2:").encode() in r.stderr and not os.path.exists(bad_out),
          "ingot train: malformed data reported with file:line", r)
    r = run(["train", "--tokenizer", model, "--data", corpus, "--out", bad_out])
    check(r.returncode == 2, "ingot train without --model-config: usage error", r)

    for cmd in (["lora"], ["lora", "train"], ["lora", "fuse"], ["train"], ["fuse"]):
        r = run([*cmd, "--help"])
        want = b"Example: ingot lora " + (cmd[-1].encode() if cmd != ["lora"] else b"train")
        if cmd == ["fuse"]:
            want = b"Example: ingot fuse"
        if cmd == ["train"]:
            want = b"Example: ingot train --model-config"
        check(r.returncode == 0 and want in r.stdout, f"{' '.join(cmd)} --help has an example", r)
    r = run(["lora", "trian", "--help"])
    check(r.returncode == 2 and b"Did you mean 'lora train'" in r.stderr, "lora: unknown subcommand", r)

print(f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
