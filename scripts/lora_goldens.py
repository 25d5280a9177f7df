#!/usr/bin/env python3
"""PEFT LoRA references for ingot's trainer (tests/train/test_peft_parity.cpp reads them).

Needs python3 with torch, transformers (5.x), peft and safetensors; CPU only, deterministic,
no network, well under a minute. For each float32 fixture under tests/data/models it builds
PEFT LoRA on q_proj,v_proj (r=4, alpha=8, dropout 0), gives A *and* B fixed nonzero values
(so gradients of both are nontrivial), and on one fixed token batch (right-padded: the padded
positions carry label -100 and, the padding being at the end, attention needs no mask) writes:

    <fixture>/init/adapter_model.safetensors + adapter_config.json   PEFT's save_pretrained
    <fixture>/grads0.safetensors    d loss / d lora_{A,B} at the initial adapter (PEFT key names)
    <fixture>/final/...             the adapter after 50 AdamW steps on that batch
    <fixture>/logits.safetensors    "init" and "final": logits [B, L, V] of the adapted model
    <fixture>/reference.json        ids, labels, loss before every step, optimizer settings

Loss: mean over counted positions of cross-entropy(logits[:, :-1], labels[:, 1:]), float32.

    python3 scripts/lora_goldens.py --out /tmp/lora_out   # then copy into tests/data/lora/

`--check DIR` instead loads an adapter written by ingot (DIR/adapter_model.safetensors +
adapter_config.json) onto its fixture (named by base_model_name_or_path) with
PeftModel.from_pretrained and prints the largest logits difference against
DIR/logits.safetensors ("ids" and "logits", written by tests/train/test_adapter.cpp) if present;
exit status 1 above 1e-4. tests/data/lora/ingot_llama_f32 is such a directory.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

FIXTURES = ["llama_f32", "qwen3_f32_tied"]
RANK, ALPHA = 4, 8
TARGETS = ["q_proj", "v_proj"]
STEPS, LR, WD = 50, 1e-2, 0.01
BATCH, SEQ = 2, 16
PAD_TAIL = 5  # row 1: the last PAD_TAIL positions are padding (label -100)


def repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fixture_dir(name: str) -> str:
    return os.path.join(repo_root(), "tests", "data", "models", name)


def save_adapter(model, out: str, name: str) -> None:
    """PEFT's save_pretrained, with the base model named by its repository-relative path (the
    committed files must not carry this machine's absolute paths)."""
    model.save_pretrained(out)
    path = os.path.join(out, "adapter_config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["base_model_name_or_path"] = f"tests/data/models/{name}"
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def load_base(name: str):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(
        fixture_dir(name), dtype=torch.float32, attn_implementation="eager"
    )
    m.eval()
    return m


def batch(vocab: int):
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(3, vocab, (BATCH, SEQ), generator=g)
    labels = ids.clone()
    labels[1, SEQ - PAD_TAIL :] = -100
    ids[1, SEQ - PAD_TAIL :] = 0  # pad id; never attended to by counted positions (causal)
    return ids, labels


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    v = logits.shape[-1]
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, v).float(), labels[:, 1:].reshape(-1), ignore_index=-100
    )


def peft_key(param_name: str) -> str:
    # named_parameters: ...q_proj.lora_A.default.weight -> saved: ...q_proj.lora_A.weight
    return param_name.replace(".default.", ".")


def lora_params(model):
    return [(n, p) for n, p in model.named_parameters() if "lora_" in n]


def run_fixture(name: str, out: str) -> None:
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import save_file

    torch.manual_seed(0)
    base = load_base(name)
    cfg = LoraConfig(
        r=RANK,
        lora_alpha=ALPHA,
        lora_dropout=0.0,
        target_modules=TARGETS,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, cfg)
    model.eval()  # dropout is 0 anyway; eval keeps every module deterministic
    g = torch.Generator().manual_seed(42)
    with torch.no_grad():
        for n, p in lora_params(model):
            p.copy_(torch.randn(p.shape, generator=g) * (0.2 if "lora_A" in n else 0.05))
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    save_adapter(model, os.path.join(d, "init"), name)

    ids, labels = batch(base.config.vocab_size)
    logits0 = model(input_ids=ids).logits.detach().clone()
    loss0 = lm_loss(model(input_ids=ids).logits, labels)
    model.zero_grad()
    loss0.backward()
    grads = {peft_key(n): p.grad.detach().clone().contiguous() for n, p in lora_params(model)}
    save_file(grads, os.path.join(d, "grads0.safetensors"))

    params = [p for _, p in lora_params(model)]
    opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=WD)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = lm_loss(model(input_ids=ids).logits, labels)
        losses.append(loss.item())
        loss.backward()
        opt.step()
    save_adapter(model, os.path.join(d, "final"), name)
    with torch.no_grad():
        logits1 = model(input_ids=ids).logits.detach().clone()
    save_file(
        {"init": logits0.contiguous(), "final": logits1.contiguous()},
        os.path.join(d, "logits.safetensors"),
    )
    import peft
    import transformers

    ref = {
        "fixture": name,
        "rank": RANK,
        "alpha": ALPHA,
        "targets": TARGETS,
        "ids": ids.tolist(),
        "labels": labels.tolist(),
        "optimizer": {"name": "AdamW", "lr": LR, "betas": [0.9, 0.999], "eps": 1e-8,
                      "weight_decay": WD, "steps": STEPS},
        "loss0": loss0.item(),
        "losses": losses,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__},
    }
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
    print(f"{name}: loss0 {loss0.item():.6f} -> loss {losses[-1]:.6f} after {STEPS} steps")


def check(adapter_dir: str) -> int:
    from peft import PeftModel
    from safetensors.torch import load_file

    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        cfg = json.load(f)
    name = os.path.basename(os.path.normpath(cfg.get("base_model_name_or_path", "llama_f32")))
    base = load_base(name)
    model = PeftModel.from_pretrained(base, adapter_dir)
    model.eval()
    path = os.path.join(adapter_dir, "logits.safetensors")
    ours = load_file(path) if os.path.exists(path) else {}
    ids = ours["ids"].long() if "ids" in ours else batch(base.config.vocab_size)[0]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    if "logits" in ours:
        ours = ours["logits"]
        diff = (ours - logits).abs().max().item()
        print(f"{adapter_dir}: max |logits ingot - PEFT| = {diff:.3e}")
        return 0 if diff < 1e-4 else 1
    print(f"{adapter_dir}: loaded in PEFT, logits {tuple(logits.shape)} (no ingot logits to compare)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default=os.path.join(repo_root(), "tests", "data", "lora"))
    ap.add_argument("--only", nargs="*", default=FIXTURES)
    ap.add_argument("--check", help="load an ingot-written adapter directory in PEFT")
    a = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    if a.check:
        return check(a.check)
    for name in a.only:
        run_fixture(name, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
