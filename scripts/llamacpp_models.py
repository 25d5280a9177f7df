#!/usr/bin/env python3
"""Random-weight checkpoints at the published Qwen3-0.6B / Llama-3.2-1B shapes for the CPU
comparison with llama.cpp (issue 14), Python standard library only.

Writes, under OUT/<model>/:
  bf16/         Hugging Face layout (config.json in the classic form, generation_config.json,
                model.safetensors in bfloat16) for ingot; `ingot quantize` makes the 8-/4-bit
                checkpoints from it (scripts/llamacpp_bench.sh does).
  bf16.gguf     the same bfloat16 weights as GGUF (scripts/gguf_write.py's writer, llama.cpp's
                converter layout: tensor names, llama's rotary Q/K row permutation, Llama 3
                rope_freqs.weight, norms in F32) with a placeholder byte-level vocabulary.
  q8_0.gguf     every matrix (embedding included: "pure", like llama-quantize --pure) as
  q4_0.gguf     Q8_0 / Q4_0 blocks of random codes with one scale (d = 2^-12 / 2^-8, weights of
                standard deviation about 0.018). These are not a quantization of bf16.gguf:
                quantizing a billion weights in pure Python is too slow, and speed does not
                depend on the values. Model agreement is checked on bf16.gguf and on the small
                fixtures (scripts/llamacpp_check.sh).

Weights: every bf16 matrix element is +-(1 + m/128) * 2^e with e in {-7, -6} and m uniform
(magnitudes 0.0078-0.031, standard deviation about 0.019), from a seeded Mersenne Twister per
tensor (deterministic); norm gains are 1.

Usage: scripts/llamacpp_models.py --model qwen3-0.6b|llama-3.2-1b --out /tmp/llamacpp/models
       [--only bf16,q8_0,q4_0]
"""

import argparse
import json
import mmap
import os
import random
import struct
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_write as gw  # noqa: E402

# The published configurations (Hugging Face config.json, classic form).
CONFIGS = {
    "qwen3-0.6b": {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 1024,
        "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16,
        "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
        "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "rope_scaling": None, "tie_word_embeddings": True, "attention_bias": False,
        "hidden_act": "silu", "bos_token_id": 151643, "eos_token_id": 151645,
        "torch_dtype": "bfloat16"},
    "llama-3.2-1b": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
        "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256,
        "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "tie_word_embeddings": True, "attention_bias": False, "mlp_bias": False,
        "hidden_act": "silu", "bos_token_id": 128000, "eos_token_id": 128001,
        "torch_dtype": "bfloat16"},
}

# high byte of a bf16 value: the sign (taken from a random byte) and exponent bits 7..1 of
# 0b0111100x (2^-7 or 2^-6, the low exponent bit is the low byte's top bit)
HIGH = bytes(0x3C | (b & 0x80) for b in range(256))
ONE_BF16 = struct.pack("<H", 0x3F80)


def hf_tensors(cfg):
    """(name, shape) of every tensor of the Hugging Face checkpoint, in file order."""
    h, f = cfg["hidden_size"], cfg["intermediate_size"]
    d = cfg["head_dim"]
    q, kv = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d
    out = [("model.embed_tokens.weight", [cfg["vocab_size"], h]), ("model.norm.weight", [h])]
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        out += [(p + "input_layernorm.weight", [h]),
                (p + "post_attention_layernorm.weight", [h]),
                (p + "self_attn.q_proj.weight", [q, h]), (p + "self_attn.k_proj.weight", [kv, h]),
                (p + "self_attn.v_proj.weight", [kv, h]), (p + "self_attn.o_proj.weight", [h, q]),
                (p + "mlp.gate_proj.weight", [f, h]), (p + "mlp.up_proj.weight", [f, h]),
                (p + "mlp.down_proj.weight", [h, f])]
        if cfg["model_type"] == "qwen3":
            out += [(p + "self_attn.q_norm.weight", [d]), (p + "self_attn.k_norm.weight", [d])]
    return out


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def rng(name, seed):
    return random.Random(seed ^ zlib.crc32(name.encode()))


def random_bf16(name, n, seed):
    lo = rng(name, seed).randbytes(n)
    out = bytearray(2 * n)
    out[0::2] = lo
    out[1::2] = (lo[1:] + lo[:1]).translate(HIGH)
    return bytes(out)


def tensor_bf16(name, shape, seed):
    if len(shape) == 1:
        return ONE_BF16 * shape[0]
    return random_bf16(name, numel(shape), seed)


def write_safetensors(path, cfg, seed):
    infos = hf_tensors(cfg)
    header, off = {}, 0
    for name, shape in infos:
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + 2 *
                                                                           numel(shape)]}
        off += 2 * numel(shape)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for name, shape in infos:
            f.write(tensor_bf16(name, shape, seed))
    return 8 + len(h), header


def permute_rows_bytes(raw, shape, heads, elem):
    """gguf_write.permute_rows on raw row bytes: within each head, output row 2*i + j is input
    row j*(D/2) + i."""
    rows, cols = shape
    d, rb = rows // heads, cols * elem
    parts = []
    for hd in range(heads):
        for i in range(d // 2):
            for j in range(2):
                r = hd * d + j * (d // 2) + i
                parts.append(raw[r * rb:(r + 1) * rb])
    return b"".join(parts)


def random_blocks(name, shape, typ, seed):
    """Q8_0 / Q4_0 blocks of random codes and one scale."""
    _, bs, bb = gw.TYPES[typ]
    nb = numel(shape) // bs
    qb = bb - 2
    d = gw.f16_bytes(2.0 ** -12 if typ == "Q8_0" else 2.0 ** -8)
    codes = rng(name + "." + typ, seed).randbytes(nb * qb)
    out = bytearray(nb * bb)
    out[0::bb] = d[0:1] * nb
    out[1::bb] = d[1:2] * nb
    for j in range(qb):
        out[2 + j::bb] = codes[j::qb]
    return bytes(out)


def write_gguf(path, cfg, typ, st_path, st_base, st_header, seed, name):
    arch, kvs = gw.model_kvs(cfg, {"bos_token_id": cfg["bos_token_id"],
                                   "eos_token_id": cfg["eos_token_id"]}, name)
    kvs += gw.synthetic_vocab_kvs(cfg["vocab_size"])
    kvs.append(("general.file_type", gw.U32, {"BF16": 32, "Q8_0": 7, "Q4_0": 2}[typ]))
    f = open(st_path, "rb")
    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    tensors = []
    rope = cfg.get("rope_scaling") or {}
    if arch == "llama" and rope.get("rope_type") == "llama3":
        hd = cfg["head_dim"]
        tensors.append(("rope_freqs.weight", [hd // 2], "F32", gw.encode(
            gw.llama3_rope_factors(rope, cfg["rope_theta"], hd), "F32")))
    for hf, _ in sorted(hf_tensors(cfg)):
        shape = st_header[hf]["shape"]
        gname = gw.gguf_name(hf, arch)
        if len(shape) == 1:
            tensors.append((gname, shape, "F32", gw.encode([1.0] * shape[0], "F32")))
            continue
        if typ != "BF16":
            tensors.append((gname, shape, typ,
                            lambda h=hf, s=shape: random_blocks(h, s, typ, seed)))
            continue

        def raw(h=hf, s=shape, g=gname):
            a, b = st_header[h]["data_offsets"]
            data = mm[st_base + a:st_base + b]
            if arch == "llama" and g.endswith((".attn_q.weight", ".attn_k.weight")):
                heads = cfg["num_attention_heads"] if ".attn_q." in g else \
                    cfg["num_key_value_heads"]
                data = permute_rows_bytes(data, s, heads, 2)
            return data
        tensors.append((gname, shape, "BF16", raw))
    gw.write_gguf(path, kvs, tensors)
    mm.close()
    f.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, choices=sorted(CONFIGS))
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default="bf16,q8_0,q4_0")
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()
    cfg = CONFIGS[args.model]
    root = os.path.join(args.out, args.model)
    hf_dir = os.path.join(root, "bf16")
    os.makedirs(hf_dir, exist_ok=True)
    st = os.path.join(hf_dir, "model.safetensors")
    if not os.path.exists(st):
        with open(os.path.join(hf_dir, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        with open(os.path.join(hf_dir, "generation_config.json"), "w") as f:
            json.dump({"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"]},
                      f, indent=2)
        write_safetensors(st + ".tmp", cfg, args.seed)
        os.replace(st + ".tmp", st)
        print("wrote", st, os.path.getsize(st), "bytes", flush=True)
    with open(st, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    for typ in args.only.split(","):
        out = os.path.join(root, typ + ".gguf")
        if os.path.exists(out):
            continue
        write_gguf(out + ".tmp", cfg, typ.upper(), st, 8 + n, header, args.seed, args.model)
        os.replace(out + ".tmp", out)
        print("wrote", out, os.path.getsize(out), "bytes", flush=True)


if __name__ == "__main__":
    sys.exit(main())
