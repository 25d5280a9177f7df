#!/usr/bin/env python3
"""Converts a PEFT LoRA adapter into the layout mlx-lm saves (Python standard library only).

PEFT (save_pretrained):  adapter_model.safetensors with
    base_model.model.<module>.lora_A.weight  [r, in]
    base_model.model.<module>.lora_B.weight  [out, r]
  and adapter_config.json {peft_type: LORA, r, lora_alpha, use_rslora, target_modules, ...};
  the update is  y += (lora_alpha / r) * x A^T B^T  (lora_alpha / sqrt(r) with use_rslora).

mlx-lm (mlx_lm.lora / mlx_lm.tuner):  adapters.safetensors with
    <module>.lora_a  [in, r]
    <module>.lora_b  [r, out]
  and adapter_config.json {fine_tune_type: lora, num_layers, lora_parameters: {rank, scale,
  dropout, keys}}; the update is  y += scale * (x @ lora_a) @ lora_b, and num_layers counts the
  last decoder layers that carry adapters (keys are module paths inside a layer).

So lora_a = A^T, lora_b = B^T and scale = lora_alpha / r (or / sqrt(r)): the converted adapter
computes the same function, and tests/train/test_peft_parity.cpp checks that ingot loads it and
reproduces the logits PEFT recorded for the original. Only float32 tensors are handled (what
scripts/lora_goldens.py writes); the transposes are exact.

Usage: python3 scripts/lora_peft_to_mlx.py PEFT_DIR OUT_DIR [--base MODEL_DIR]
  python3 scripts/lora_peft_to_mlx.py tests/data/lora/llama_f32/init \\
      tests/data/lora/llama_f32_mlx --base tests/data/models/llama_f32
--base (default: the adapter's base_model_name_or_path, relative to the repository root) is
read for num_hidden_layers, which num_layers needs when the PEFT adapter covers every layer.
"""

import argparse
import json
import math
import os
import re
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
PREFIX = "base_model.model."
KEY = re.compile(r"^model\.layers\.(\d+)\.(.+)\.lora_([AB])(?:\.default)?\.weight$")


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        out[name] = (info["dtype"], info["shape"], data[a:b])
    return out


def write_safetensors(path, tensors, meta):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for blob in blobs:
            f.write(blob)


def transpose_f32(shape, raw):
    rows, cols = shape
    vals = struct.unpack("<%df" % (rows * cols), raw)
    t = [vals[r * cols + c] for c in range(cols) for r in range(rows)]
    return [cols, rows], struct.pack("<%df" % len(t), *t)


def convert(peft_dir, out_dir, base_dir):
    with open(os.path.join(peft_dir, "adapter_config.json")) as f:
        cfg = json.load(f)
    if cfg.get("peft_type") != "LORA":
        sys.exit("%s: peft_type is %r, expected LORA" % (peft_dir, cfg.get("peft_type")))
    if cfg.get("use_dora") or cfg.get("bias", "none") != "none":
        sys.exit("%s: DoRA and bias adapters have no mlx-lm LoRA equivalent" % peft_dir)
    r = int(cfg["r"])
    alpha = float(cfg["lora_alpha"])
    scale = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
    if base_dir is None:
        base_dir = os.path.join(ROOT, cfg["base_model_name_or_path"])
    with open(os.path.join(base_dir, "config.json")) as f:
        n_layers = int(json.load(f)["num_hidden_layers"])

    tensors = read_safetensors(os.path.join(peft_dir, "adapter_model.safetensors"))
    out, keys, layers = {}, set(), set()
    for name, (dtype, shape, raw) in tensors.items():
        m = KEY.match(name[len(PREFIX) :] if name.startswith(PREFIX) else name)
        if m is None:
            sys.exit("%s: tensor %s is not a LoRA factor" % (peft_dir, name))
        if dtype != "F32" or len(shape) != 2:
            sys.exit("%s: tensor %s is %s %s, expected a 2-d F32" % (peft_dir, name, dtype, shape))
        layer, module, which = int(m.group(1)), m.group(2), m.group(3)
        new_shape, new_raw = transpose_f32(shape, raw)
        suffix = "lora_a" if which == "A" else "lora_b"
        out["model.layers.%d.%s.%s" % (layer, module, suffix)] = ("F32", new_shape, new_raw)
        keys.add(module)
        layers.add(layer)
    # mlx-lm adapts the last num_layers layers: the PEFT adapter must cover exactly those.
    num_layers = len(layers)
    if sorted(layers) != list(range(n_layers - num_layers, n_layers)):
        sys.exit("%s: layers %s are not the last ones of %d; mlx-lm's num_layers cannot say so"
                 % (peft_dir, sorted(layers), n_layers))

    os.makedirs(out_dir, exist_ok=True)
    write_safetensors(os.path.join(out_dir, "adapters.safetensors"), out, {"format": "mlx"})
    mlx_cfg = {
        "fine_tune_type": "lora",
        "num_layers": num_layers,
        "lora_parameters": {
            "rank": r,
            "scale": scale,
            "dropout": float(cfg.get("lora_dropout", 0.0) or 0.0),
            "keys": sorted(keys),
        },
        "model": cfg.get("base_model_name_or_path", ""),
    }
    with open(os.path.join(out_dir, "adapter_config.json"), "w") as f:
        json.dump(mlx_cfg, f, indent=4, sort_keys=True)
        f.write("\n")
    print("wrote %s: %d tensors, rank %d, scale %g, num_layers %d, keys %s"
          % (out_dir, len(out), r, scale, num_layers, sorted(keys)))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("peft_dir")
    p.add_argument("out_dir")
    p.add_argument("--base", default=None, help="base checkpoint directory (config.json)")
    a = p.parse_args()
    convert(a.peft_dir, a.out_dir, a.base)


if __name__ == "__main__":
    main()
