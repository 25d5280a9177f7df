#!/usr/bin/env python3
"""Writes mlx-community style quantized fixtures from the float fixtures in tests/data/models.

Affine group-wise quantization as MLX defines it (mlx.core.quantize, mlx-lm's checkpoint
layout), implemented here from that definition with the Python standard library only (no MLX,
NumPy or torch needed, so it runs anywhere and shares no code with ingot):

  * each row of a Linear / Embedding weight [out, in] is split into groups of `group_size`
    consecutive input features; per group: n_bins = 2**bits - 1,
    scale = max((max - min) / n_bins, 1e-7), negated unless |min| > |max|;
    edge = min if |min| > |max| else max; q0 = round(edge / scale);
    if q0 != 0: scale = edge / q0, bias = edge, else bias = 0;
    q = clip(round((w - bias) / scale), 0, n_bins)   (round half to even, as rint)
  * the q of a row are packed into little-endian uint32 words, 32 / bits values per word,
    lowest bits first: value j of a word occupies bits [j * bits, (j + 1) * bits);
  * tensors `<module>.weight` (U32, [out, in * bits / 32]), `<module>.scales` and
    `<module>.biases` ([out, in / group_size], the model's dtype);
  * config.json gains "quantization" and "quantization_config" ({"group_size", "bits"} plus
    per-module overrides: a dict of its own, or false for a module left in float).

Quantized: the embedding, every Linear of the decoder layers and lm_head, when the input width
divides by the group size (as mlx-lm skips others); norms stay float.

Usage: python3 scripts/quantize_fixture_mlx.py [--out tests/data/models]
It also writes quant_report.json per fixture: the largest absolute dequantization error per
tensor and overall, used by tests/models/test_quantized_model.cpp.
"""

import argparse
import json
import math
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "tests", "data", "models")

# (source fixture, output fixture, defaults, per-module overrides)
FIXTURES = [
    (
        "qwen3_bf16",
        "qwen3_q4_mlx",
        {"group_size": 32, "bits": 4},
        {
            "model.layers.0.mlp.down_proj": {"group_size": 64, "bits": 8},
            "model.layers.1.self_attn.k_proj": False,
        },
    ),
    ("llama_bf16_tied", "llama_q8_mlx", {"group_size": 64, "bits": 8}, {}),
]


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", None)
    tensors = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        tensors[name] = (info["dtype"], info["shape"], data[a:b])
    return tensors, meta


def write_safetensors(path, tensors, meta):
    header = {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if meta is not None:
        header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def to_floats(dtype, raw):
    if dtype == "F32":
        return list(struct.unpack("<%df" % (len(raw) // 4), raw))
    if dtype == "BF16":
        u = struct.unpack("<%dH" % (len(raw) // 2), raw)
        return [struct.unpack("<f", struct.pack("<I", x << 16))[0] for x in u]
    raise SystemExit("unsupported dtype " + dtype)


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def round_f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def bf16_bits(x):
    """Round-to-nearest-even of a float to bfloat16 (through float32), as bits."""
    u = f32_bits(round_f32(x))
    if (u & 0x7F800000) == 0x7F800000 and (u & 0x7FFFFF):
        return 0x7FC0
    u += 0x7FFF + ((u >> 16) & 1)
    return (u >> 16) & 0xFFFF


def from_bits(dtype, x):
    if dtype == "BF16":
        return struct.unpack("<f", struct.pack("<I", bf16_bits(x) << 16))[0]
    return round_f32(x)


def encode(dtype, values):
    if dtype == "BF16":
        return struct.pack("<%dH" % len(values), *[bf16_bits(v) for v in values])
    return struct.pack("<%df" % len(values), *values)


def quantize_group(vals, bits):
    n_bins = float(2**bits - 1)
    lo, hi = min(vals), max(vals)
    low_edge = abs(lo) > abs(hi)
    scale = max((hi - lo) / n_bins, 1e-7)
    if not low_edge:
        scale = -scale
    edge = lo if low_edge else hi
    q0 = round(edge / scale)  # Python's round is half-to-even, like rint
    bias = 0.0
    if q0 != 0:
        scale = edge / q0
        bias = edge
    qs = []
    for v in vals:
        q = round((v - bias) / scale)
        qs.append(int(min(max(q, 0), n_bins)))
    return qs, scale, bias


def quantize_tensor(dtype, shape, raw, group_size, bits):
    rows, cols = shape
    w = to_floats(dtype, raw)
    per_word = 32 // bits
    words, scales, biases = [], [], []
    max_err = 0.0
    for r in range(rows):
        for g in range(cols // group_size):
            vals = w[r * cols + g * group_size:r * cols + (g + 1) * group_size]
            qs, s, b = quantize_group(vals, bits)
            scales.append(s)
            biases.append(b)
            s_st, b_st = from_bits(dtype, s), from_bits(dtype, b)
            for v, q in zip(vals, qs):
                max_err = max(max_err, abs(s_st * q + b_st - v))
            for i in range(0, group_size, per_word):
                word = 0
                for j in range(per_word):
                    word |= qs[i + j] << (j * bits)
                words.append(word)
    packed = struct.pack("<%dI" % len(words), *words)
    return (
        ("U32", [rows, cols * bits // 32], packed),
        (dtype, [rows, cols // group_size], encode(dtype, scales)),
        (dtype, [rows, cols // group_size], encode(dtype, biases)),
        max_err,
    )


def quantizable(name):
    if not name.endswith(".weight"):
        return False
    module = name[: -len(".weight")]
    if module in ("model.embed_tokens", "lm_head"):
        return True
    leaf = module.split(".")[-1]
    if ".self_attn." in module:
        return leaf in ("q_proj", "k_proj", "v_proj", "o_proj")
    return ".mlp." in module and leaf in ("gate_proj", "up_proj", "down_proj")


def convert(src, dst, defaults, overrides, out_root):
    src_dir = os.path.join(MODELS, src)
    dst_dir = os.path.join(out_root, dst)
    os.makedirs(dst_dir, exist_ok=True)
    tensors, meta = read_safetensors(os.path.join(src_dir, "model.safetensors"))
    out = {}
    report = {"source": src, "defaults": defaults, "tensors": {}}
    for name, (dtype, shape, raw) in tensors.items():
        module = name[: -len(".weight")] if name.endswith(".weight") else None
        spec = None
        if quantizable(name):
            o = overrides.get(module, None)
            spec = defaults if o is None else o
            if spec and shape[1] % spec["group_size"] != 0:
                spec = None  # as mlx-lm: widths that do not divide stay float
        if not spec:
            out[name] = (dtype, shape, raw)
            continue
        wq, sc, bi, err = quantize_tensor(dtype, shape, raw, spec["group_size"], spec["bits"])
        out[module + ".weight"] = wq
        out[module + ".scales"] = sc
        out[module + ".biases"] = bi
        report["tensors"][module] = {
            "bits": spec["bits"],
            "group_size": spec["group_size"],
            "max_abs_error": err,
        }
    report["max_abs_error"] = max(t["max_abs_error"] for t in report["tensors"].values())
    write_safetensors(os.path.join(dst_dir, "model.safetensors"), out, meta)
    with open(os.path.join(src_dir, "config.json")) as f:
        config = json.load(f)
    q = dict(defaults)
    for k, v in overrides.items():
        q[k] = v
    config["quantization"] = q
    config["quantization_config"] = q
    with open(os.path.join(dst_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    for extra in ("generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        p = os.path.join(src_dir, extra)
        if os.path.exists(p):
            shutil.copyfile(p, os.path.join(dst_dir, extra))
    with open(os.path.join(dst_dir, "quant_report.json"), "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")
    print("%s -> %s: %d tensors quantized, max |w - dequant(w)| = %.3g" % (
        src, dst, len(report["tensors"]), report["max_abs_error"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=MODELS, help="directory for the output fixtures")
    args = ap.parse_args()
    for src, dst, defaults, overrides in FIXTURES:
        convert(src, dst, defaults, overrides, args.out)


if __name__ == "__main__":
    main()
