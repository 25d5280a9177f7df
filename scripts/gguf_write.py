#!/usr/bin/env python3
"""A small GGUF writer (Python standard library only), written from the GGUF specification.

Converts the Hugging Face fixtures under tests/data/models (llama, qwen3, gemma3) into GGUF the
way llama.cpp's converter lays them out (tensor names, metadata keys, llama's rotary Q/K row
permutation, Gemma's 1 + w norms, Llama 3 rope factors as rope_freqs.weight), with 2-D weights
stored as F32, F16, BF16, Q8_0, Q4_0, Q4_K or Q6_K (its own quantizers; rows whose length is not
a multiple of the block fall back to F16, as llama.cpp does) and 1-D tensors as F32.

It also writes two SentencePiece-vocabulary files (tokenizer.ggml.model "llama": pieces, scores
and types, no merges) on the gemma3_bf16 and llama_f32 weights: gemma3_spm.bf16.gguf (Gemma's
layout) and llama_spm.q8_0.gguf (Llama 2's, add_space_prefix). It shares no code with ingot's
C++ reader. It also writes tensors.gguf, a non-model file with
the same values stored in every type (for the dequantization tests), and a few corrupt files.

Usage: scripts/gguf_write.py [--out tests/data/gguf]     (regenerates every committed file)
       scripts/gguf_write.py --fixture DIR --type Q8_0 --out-file model.gguf [--synthetic-vocab]
(--synthetic-vocab: a placeholder byte-level vocabulary for fixtures without tokenizer.json, so
that llama.cpp loads the file; scripts/llamacpp_models.py imports this module to write
random-weight models at real shapes, streaming tensors through write_gguf.)
"""

import argparse
import json
import math
import os
import random
import struct
import sys

ALIGN = 32
# ggml type ids and (block elements, block bytes).
TYPES = {"F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q8_0": (8, 32, 34),
         "Q4_K": (12, 256, 144), "Q6_K": (14, 256, 210), "BF16": (30, 1, 2)}
# metadata value types
U8, I8, U16, I16, U32, I32, F32V, BOOL, STR, ARR, U64, I64, F64V = range(13)


# ---------------------------------------------------------------- float helpers

def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def f16_bytes(x):
    return struct.pack("<e", x)


def f16(x):
    return struct.unpack("<e", struct.pack("<e", x))[0]


def bf16_bits(x):
    b = struct.unpack("<I", struct.pack("<f", x))[0]
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) & 0xFFFF  # round to nearest even (no NaNs here)


def round_away(x):
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


# ---------------------------------------------------------------- quantizers (one block each)

def q8_0(xs):
    amax = max(abs(v) for v in xs)
    d = f16(amax / 127.0)
    inv = 1.0 / d if d else 0.0
    qs = [max(-128, min(127, round_away(v * inv))) for v in xs]
    return f16_bytes(d) + struct.pack("<32b", *qs)


def q4_0(xs):
    m = max(xs, key=abs)  # the value of largest magnitude, with its sign
    d = f16(m / -8.0)
    inv = 1.0 / d if d else 0.0
    q = [max(0, min(15, int(math.floor(v * inv + 8.5)))) for v in xs]
    return f16_bytes(d) + bytes(q[j] | (q[j + 16] << 4) for j in range(16))


def q4_k(xs):
    subs = [xs[32 * j:32 * j + 32] for j in range(8)]
    lo = [min(0.0, min(s)) for s in subs]  # offsets are subtracted: keep the minimum <= 0
    scale = [(max(s) - l) / 15.0 for s, l in zip(subs, lo)]
    d = f16(max(scale) / 63.0)
    dmin = f16(max(-l for l in lo) / 63.0)
    sc = [min(63, round_away(s / d)) if d else 0 for s in scale]
    mn = [min(63, round_away(-l / dmin)) if dmin else 0 for l in lo]
    packed = [0] * 12
    for j in range(4):
        packed[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6)
        packed[j + 4] = (mn[j] & 63) | ((mn[j + 4] >> 4) << 6)
        packed[j + 8] = (sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4)
    q = []
    for j, s in enumerate(subs):
        step, off = f32(d * sc[j]), f32(dmin * mn[j])
        q += [max(0, min(15, round_away((v + off) / step))) if step else 0 for v in s]
    qs = bytearray(128)
    for c in range(4):
        for l in range(32):
            qs[32 * c + l] = q[64 * c + l] | (q[64 * c + 32 + l] << 4)
    return f16_bytes(d) + f16_bytes(dmin) + bytes(packed) + bytes(qs)


def q6_k(xs):
    subs = [xs[16 * j:16 * j + 16] for j in range(16)]
    scale = [max(abs(v) for v in s) / 31.0 for s in subs]
    d = f16(max(scale) / 127.0)
    sc = [min(127, round_away(s / d)) if d else 0 for s in scale]
    q = []
    for j, s in enumerate(subs):
        step = f32(d * sc[j])
        q += [max(-32, min(31, round_away(v / step))) + 32 if step else 32 for v in s]
    ql, qh = bytearray(128), bytearray(64)
    for h in range(2):
        for k in range(4):
            for l in range(32):
                v = q[128 * h + 32 * k + l]
                i = 64 * h + l + 32 * (k & 1)
                ql[i] |= (v & 15) << (0 if k < 2 else 4)
                qh[32 * h + l] |= (v >> 4) << (2 * k)
    return bytes(ql) + bytes(qh) + struct.pack("<16b", *sc) + f16_bytes(d)


QUANT = {"Q8_0": q8_0, "Q4_0": q4_0, "Q4_K": q4_k, "Q6_K": q6_k}


def encode(values, typ):
    """Bytes of a row-major list of floats stored as `typ` (blocks run along the last dim)."""
    if typ == "F32":
        return struct.pack("<%df" % len(values), *values)
    if typ == "F16":
        return struct.pack("<%de" % len(values), *values)
    if typ == "BF16":
        return struct.pack("<%dH" % len(values), *(bf16_bits(v) for v in values))
    _, bs, _ = TYPES[typ]
    return b"".join(QUANT[typ](values[i:i + bs]) for i in range(0, len(values), bs))


# ---------------------------------------------------------------- GGUF container

def gstr(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32V: "<f",
              BOOL: "<?", U64: "<Q", I64: "<q", F64V: "<d"}


def gvalue(vtype, v):
    if vtype == STR:
        return gstr(v)
    return struct.pack(SCALAR_FMT[vtype], v)


def gkv(key, vtype, v, elem=None):
    out = gstr(key) + struct.pack("<I", vtype)
    if vtype == ARR:
        out += struct.pack("<IQ", elem, len(v)) + b"".join(gvalue(elem, x) for x in v)
    else:
        out += gvalue(vtype, v)
    return out


def tensor_nbytes(shape, typ):
    _, bs, bb = TYPES[typ]
    n = 1
    for d in shape:
        n *= d
    if n % bs:
        raise ValueError("%d elements are not whole %s blocks of %d" % (n, typ, bs))
    return n // bs * bb


def write_gguf(path, kvs, tensors, version=3):
    """kvs: list of (key, type, value[, elem]); tensors: list of (name, shape, typ, data), data
    the tensor's bytes or a function returning them (called once, while writing, so that large
    files are streamed tensor by tensor instead of held in memory)."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    head += b"".join(gkv(*kv) for kv in kvs)
    infos, offset = b"", 0
    for name, shape, typ, raw in tensors:
        size = len(raw) if isinstance(raw, (bytes, bytearray)) else tensor_nbytes(shape, typ)
        dims = list(reversed(shape))  # ggml order: innermost first
        infos += gstr(name) + struct.pack("<I", len(dims)) + struct.pack("<%dQ" % len(dims), *dims)
        infos += struct.pack("<IQ", TYPES[typ][0], offset)
        offset += size + (-size) % ALIGN
    out = head + infos
    out += b"\0" * ((-len(out)) % ALIGN)
    with open(path, "wb") as f:
        f.write(out)
        for name, shape, typ, raw in tensors:
            if not isinstance(raw, (bytes, bytearray)):
                raw = raw()
                if len(raw) != tensor_nbytes(shape, typ):
                    raise ValueError("%s: %d bytes for %s %s" % (name, len(raw), typ, shape))
            f.write(raw)
            f.write(b"\0" * ((-len(raw)) % ALIGN))


# ---------------------------------------------------------------- safetensors input

def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    header = json.loads(buf[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        raw = buf[base + b:base + e]
        if t["dtype"] == "F32":
            vals = list(struct.unpack("<%df" % (len(raw) // 4), raw))
        elif t["dtype"] == "BF16":
            vals = [struct.unpack("<f", struct.pack("<I", h << 16))[0]
                    for h in struct.unpack("<%dH" % (len(raw) // 2), raw)]
        else:
            raise SystemExit("unsupported safetensors dtype %s in %s" % (t["dtype"], path))
        out[name] = (t["shape"], vals)
    return out


# ---------------------------------------------------------------- HF -> GGUF layout

def permute_rows(vals, shape, heads):
    """llama.cpp's W.reshape(H, 2, D/2, E).swapaxes(1, 2): within each head, output row
    2*i + j is input row j*(D/2) + i."""
    rows, cols = shape
    d = rows // heads
    out = []
    for h in range(heads):
        for i in range(d // 2):
            for j in range(2):
                r = h * d + j * (d // 2) + i
                out += vals[r * cols:(r + 1) * cols]
    return out


def gguf_name(hf, arch):
    simple = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight":
              "output_norm.weight", "lm_head.weight": "output.weight"}
    if hf in simple:
        return simple[hf]
    parts = hf.split(".")  # model.layers.N.<module...>.weight
    n, rest = parts[2], ".".join(parts[3:-1])
    table = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q",
             "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm",
             "self_attn.k_norm": "attn_k_norm", "mlp.gate_proj": "ffn_gate",
             "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
             "post_attention_layernorm": "ffn_norm"}
    if arch == "gemma3":  # sandwich norms
        table.update({"post_attention_layernorm": "post_attention_norm",
                      "pre_feedforward_layernorm": "ffn_norm",
                      "post_feedforward_layernorm": "post_ffw_norm"})
    return "blk.%s.%s.%s" % (n, table[rest], parts[-1])


def llama3_rope_factors(rope, theta, head_dim):
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    orig = rope["original_max_position_embeddings"]
    out = []
    for i in range(0, head_dim, 2):
        freq = 1.0 / theta ** (i / head_dim)
        wavelen = 2 * math.pi / freq
        if wavelen < orig / high:
            out.append(1.0)
        elif wavelen > orig / low:
            out.append(factor)
        else:
            smooth = (orig / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return out


def model_kvs(cfg, gen, name):
    """(architecture, metadata) of a classic-form config.json and generation_config.json, as
    llama.cpp's converter writes them (tokenizer keys excluded)."""
    mt = cfg["model_type"]
    arch = {"llama": "llama", "qwen3": "qwen3", "gemma3_text": "gemma3"}[mt]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    a = arch + "."
    kvs = [("general.architecture", STR, arch),
           ("general.name", STR, name),
           ("general.alignment", U32, ALIGN),
           (a + "context_length", U32, cfg["max_position_embeddings"]),
           (a + "embedding_length", U32, cfg["hidden_size"]),
           (a + "block_count", U32, cfg["num_hidden_layers"]),
           (a + "feed_forward_length", U32, cfg["intermediate_size"]),
           (a + "attention.head_count", U32, heads),
           (a + "attention.head_count_kv", U32, kv),
           (a + "attention.key_length", U32, head_dim),
           (a + "attention.value_length", U32, head_dim),
           (a + "attention.layer_norm_rms_epsilon", F32V, cfg["rms_norm_eps"]),
           (a + "rope.freq_base", F32V, cfg.get("rope_theta", 10000.0))]
    rope = cfg.get("rope_scaling") or {}
    rtype = rope.get("rope_type", rope.get("type"))
    if rtype == "linear":
        kvs += [(a + "rope.scaling.type", STR, "linear"), (a + "rope.scaling.factor", F32V,
                                                           rope["factor"])]
    if arch == "gemma3":
        # Keys llama.cpp's converter does not write for Gemma3 (it hardcodes pattern 6, local
        # base 1e4, scale head_dim^-0.5, no softcap); the fixtures differ, so they say so.
        kvs += [(a + "attention.sliding_window", U32, cfg["sliding_window"]),
                (a + "attention.sliding_window_pattern", U32, cfg["sliding_window_pattern"]),
                (a + "rope.freq_base_swa", F32V, cfg.get("rope_local_base_freq", 10000.0)),
                (a + "attention.scale", F32V, cfg["query_pre_attn_scalar"] ** -0.5)]
        if cfg.get("final_logit_softcapping"):
            kvs.append((a + "final_logit_softcapping", F32V, cfg["final_logit_softcapping"]))
    eos = gen.get("eos_token_id", cfg.get("eos_token_id"))
    eos = eos if isinstance(eos, list) else [eos]
    if gen.get("bos_token_id") is not None:
        kvs.append(("tokenizer.ggml.bos_token_id", U32, gen["bos_token_id"]))
    kvs.append(("tokenizer.ggml.eos_token_id", U32, eos[0]))
    if len(eos) > 1:
        kvs.append(("tokenizer.ggml.eot_token_id", U32, eos[1]))
    if gen.get("pad_token_id") is not None:
        kvs.append(("tokenizer.ggml.padding_token_id", U32, gen["pad_token_id"]))
    return arch, kvs


def convert(fixture, typ, out_path, synthetic_vocab=False, spm=None):
    cfg = json.load(open(os.path.join(fixture, "config_classic.json")))
    gen = json.load(open(os.path.join(fixture, "generation_config.json")))
    arch, kvs = model_kvs(cfg, gen, os.path.basename(fixture.rstrip("/")))
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    rope = cfg.get("rope_scaling") or {}
    rtype = rope.get("rope_type", rope.get("type"))
    if synthetic_vocab:
        kvs += synthetic_vocab_kvs(cfg["vocab_size"])
    elif spm:
        kvs += spm_vocab_kvs(cfg["vocab_size"], spm)
    else:
        kvs += tokenizer_kvs(fixture)

    weights = read_safetensors(os.path.join(fixture, "model.safetensors"))
    tensors = []
    if arch == "llama" and rtype == "llama3":
        tensors.append(("rope_freqs.weight", [head_dim // 2], "F32",
                        encode(llama3_rope_factors(rope, cfg["rope_theta"], head_dim), "F32")))
    for hf in sorted(weights):
        shape, vals = weights[hf]
        name = gguf_name(hf, arch)
        if arch == "llama" and name.endswith((".attn_q.weight", ".attn_k.weight")):
            vals = permute_rows(vals, shape, heads if ".attn_q." in name else kv)
        if arch == "gemma3" and name.endswith("norm.weight"):
            vals = [f32(v + 1.0) for v in vals]  # stored as 1 + w, rounded to float32
        t = "F32"
        if len(shape) == 2:
            t = typ
            if shape[-1] % TYPES[typ][1] != 0:
                t = "F16"  # llama.cpp's fallback for rows that are not whole blocks
        tensors.append((name, shape, t, encode(vals, t)))
    write_gguf(out_path, kvs, tensors)


def tokenizer_kvs(fixture):
    """tokenizer.ggml.* for a byte-level BPE tokenizer.json (llama_bf16_tied)."""
    path = os.path.join(fixture, "tokenizer.json")
    if not os.path.exists(path):
        return []
    tok = json.load(open(path, encoding="utf-8"))
    tcfg = json.load(open(os.path.join(fixture, "tokenizer_config.json"), encoding="utf-8"))
    vocab = dict(tok["model"]["vocab"])
    special = set()
    for t in tok["added_tokens"]:
        vocab[t["content"]] = t["id"]
        if t["special"]:
            special.add(t["id"])
    n = max(vocab.values()) + 1
    tokens = [""] * n
    for s, i in vocab.items():
        tokens[i] = s
    types = [3 if i in special else 1 for i in range(n)]  # 3 = control, 1 = normal
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    pre = tok["pre_tokenizer"]
    if pre.get("type") != "ByteLevel" or not pre.get("use_regex", True):
        raise SystemExit("%s: only a ByteLevel pre-tokenizer with the GPT-2 regex is converted"
                         % path)
    kvs = [("tokenizer.ggml.model", STR, "gpt2"), ("tokenizer.ggml.pre", STR, "gpt-2"),
           ("tokenizer.ggml.tokens", ARR, tokens, STR),
           ("tokenizer.ggml.token_type", ARR, types, I32),
           ("tokenizer.ggml.merges", ARR, merges, STR),
           ("tokenizer.ggml.add_bos_token", BOOL, bool(tcfg.get("add_bos_token", False)))]
    if tcfg.get("chat_template"):
        kvs.append(("tokenizer.chat_template", STR, tcfg["chat_template"]))
    return kvs


# A small SentencePiece BPE vocabulary: pieces in the order SentencePiece's BPE trainer learns
# them (the k-th scores -k; each joins two earlier pieces), then the single characters.
SPM_LEARNED = ["\u2581t", "he", "\u2581the", "ll", "llo", "\u2581w", "or", "\u2581wor", "ld",
               "\u2581world", "\u2581h", "\u2581he", "\u2581hello", "He", "Hello", "ea",
               "\u2581tea", "in", "ing", "\u2581s", "\u2581th", "er", "\u2581a", "at",
               "\u2581at", "\u2581\u2581", "\u2581\u2581\u2581", "\u00e9t", "\u00e9t\u00e9"]
SPM_CHARS = ["\u2581", "e", "t", "h", "l", "o", "w", "r", "d", "a", "H", "i", "n", "g", "s", ",",
             ".", "!", "\u00e9", "\u65e5", "\u672c"]
SPM_BYTES = [0x09, 0x0A, 0xE2, 0x98, 0x83]  # tab, newline and U+2603 (byte fallback)


def spm_vocab_kvs(n, style):
    """tokenizer.ggml.* of a SentencePiece BPE vocabulary of n tokens as llama.cpp's converter
    writes one ("llama" model, scores, types; no merges): style "gemma" (Gemma's special tokens,
    user-defined "\\n" and "\u2581\u2581" pieces, <start_of_turn>/<end_of_turn> at 105/106, no space
    prefix) or "llama2" (<unk> <s> </s>, add_space_prefix). Added tokens score -1000 and
    user-defined pieces have "\u2581" written as " ", as the converter writes them."""
    sp = "\u2581"
    if style == "gemma":
        head = [("<pad>", 3), ("<eos>", 3), ("<bos>", 3), ("<unk>", 3), ("<mask>", 3)]
        fixed = {105: ("<start_of_turn>", 3), 106: ("<end_of_turn>", 3), 107: ("\n", 4),
                 108: (sp * 2, 4), 109: ("<b>", 4)}
        learned = [p for p in SPM_LEARNED if p not in (sp * 2,)]
    else:
        head = [("<unk>", 2), ("<s>", 3), ("</s>", 3)]
        fixed = {}
        learned = SPM_LEARNED
    body = [("<0x%02X>" % b, 6, 0.0) for b in SPM_BYTES]
    body += [(p, 1, -float(k)) for k, p in enumerate(learned + SPM_CHARS)]
    toks = [(t, ty, -1000.0 if ty != 2 else 0.0) for t, ty in head]
    unused = 0
    while len(toks) < n:
        if len(toks) in fixed:
            t, ty = fixed[len(toks)]
            toks.append((t.replace(sp, " ") if ty == 4 else t, ty, -1000.0))
        elif body:
            toks.append(body.pop(0))
        elif style == "gemma":
            toks.append(("<unused%d>" % unused, 3, -1000.0))
            unused += 1
        else:
            toks.append(("[PAD%d]" % len(toks), 5, -1000.0))
    kvs = [("tokenizer.ggml.model", STR, "llama"), ("tokenizer.ggml.pre", STR, "default"),
           ("tokenizer.ggml.tokens", ARR, [t for t, _, _ in toks], STR),
           ("tokenizer.ggml.scores", ARR, [sc for _, _, sc in toks], F32V),
           ("tokenizer.ggml.token_type", ARR, [ty for _, ty, _ in toks], I32),
           ("tokenizer.ggml.add_bos_token", BOOL, True),
           ("tokenizer.ggml.add_eos_token", BOOL, False),
           ("tokenizer.ggml.add_space_prefix", BOOL, style != "gemma"),
           ("tokenizer.ggml.unknown_token_id", U32, 3 if style == "gemma" else 0)]
    return kvs


def byte_symbols():
    """The 256 single-byte symbols of a byte-level BPE vocabulary (GPT-2's byte -> character
    map: printable Latin-1 bytes stand for themselves, the others for U+0100 upwards)."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


def synthetic_vocab_kvs(n):
    """tokenizer.ggml.* for a model without a tokenizer (random-weight benchmarks, fixtures
    without tokenizer.json): a byte-level BPE vocabulary of n tokens, the 256 byte symbols
    first and placeholders after, no merges. Enough for llama.cpp to load the model and run
    token ids; not meant to tokenize text."""
    sym = byte_symbols()
    tokens = sym[:n] + ["<t%d>" % i for i in range(len(sym), n)]
    return [("tokenizer.ggml.model", STR, "gpt2"), ("tokenizer.ggml.pre", STR, "gpt-2"),
            ("tokenizer.ggml.tokens", ARR, tokens, STR),
            ("tokenizer.ggml.token_type", ARR, [1] * n, I32),
            ("tokenizer.ggml.merges", ARR, [], STR),
            ("tokenizer.ggml.add_bos_token", BOOL, False)]


# ---------------------------------------------------------------- test files

def write_tensor_file(path):
    """tensors.gguf: one [4, 512] float32 matrix `x` and its encoding in every type
    (`x.<type>`), plus metadata of every value type for the parser tests."""
    rng = random.Random(14)
    vals = []
    for r in range(4):  # rows of different scale and offset; one with a constant block
        for c in range(512):
            v = rng.gauss(0.1 * r, 0.5 + r)
            vals.append(f32(0.25 if (r == 3 and c < 32) else v))
    tensors = [("x", [4, 512], "F32", encode(vals, "F32"))]
    for t in ["F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q6_K"]:
        tensors.append(("x." + t.lower(), [4, 512], t, encode(vals, t)))
    kvs = [("general.architecture", STR, "none"), ("test.u8", U8, 200), ("test.i8", I8, -5),
           ("test.u16", U16, 60000), ("test.i16", I16, -30000), ("test.u32", U32, 4000000000),
           ("test.i32", I32, -2000000000), ("test.f32", F32V, 0.5), ("test.bool", BOOL, True),
           ("test.str", STR, "h\u00e9llo"), ("test.u64", U64, 2 ** 40), ("test.i64", I64, -2 ** 40),
           ("test.f64", F64V, 0.1), ("test.arr_i32", ARR, [1, -2, 3], I32),
           ("test.arr_str", ARR, ["a", "", "bc"], STR), ("test.arr_empty", ARR, [], F32V)]
    write_gguf(path, kvs, tensors)


def write_fuzz_seeds(out):
    """Small seeds for fuzz/corpus/gguf: a qwen3-like header with one tensor of each type."""
    os.makedirs(out, exist_ok=True)
    rng = random.Random(7)
    vals = [f32(rng.uniform(-1, 1)) for _ in range(256)]
    a = "qwen3."
    kvs = [("general.architecture", STR, "qwen3"), (a + "embedding_length", U32, 32),
           (a + "feed_forward_length", U32, 64), (a + "block_count", U32, 1),
           (a + "attention.head_count", U32, 2), (a + "attention.head_count_kv", U32, 1),
           (a + "attention.key_length", U32, 16), (a + "rope.freq_base", F32V, 1e6),
           ("tokenizer.ggml.tokens", ARR, ["a", "b"], STR)]
    tensors = [("token_embd.weight", [8, 32], "Q8_0", encode(vals, "Q8_0")),
               ("blk.0.attn_q.weight", [1, 32], "Q4_0", encode(vals[:32], "Q4_0")),
               ("blk.0.attn_norm.weight", [32], "F32", encode(vals[:32], "F32")),
               ("blk.0.ffn_up.weight", [1, 256], "Q4_K", encode(vals, "Q4_K")),
               ("blk.0.ffn_down.weight", [1, 256], "Q6_K", encode(vals, "Q6_K")),
               ("blk.0.attn_k.weight", [2, 8], "F16", encode(vals[:16], "F16")),
               ("blk.0.attn_v.weight", [2, 8], "BF16", encode(vals[:16], "BF16"))]
    write_gguf(os.path.join(out, "model_types.gguf"), kvs, tensors)
    write_gguf(os.path.join(out, "v2_meta_only.gguf"), kvs, [], version=2)
    # Tokenizer metadata only (the GGUF -> tokenizer path of the CLI): a tiny byte-level BPE.
    tok = [("tokenizer.ggml.model", STR, "gpt2"), ("tokenizer.ggml.pre", STR, "gpt-2"),
           ("tokenizer.ggml.tokens", ARR, ["a", "b", "ab", "\u0120", "<s>"], STR),
           ("tokenizer.ggml.token_type", ARR, [1, 1, 1, 1, 3], I32),
           ("tokenizer.ggml.merges", ARR, ["a b"], STR),
           ("tokenizer.ggml.bos_token_id", U32, 4), ("tokenizer.ggml.eos_token_id", U32, 4),
           ("tokenizer.ggml.add_bos_token", BOOL, True),
           ("tokenizer.chat_template", STR, "{% for m in messages %}{{ m.content }}{% endfor %}")]
    write_gguf(os.path.join(out, "tokenizer_meta.gguf"), tok, [])
    # A SentencePiece vocabulary ("llama": scores, types, no merges; the Llama 2 layout).
    spm = spm_vocab_kvs(64, "llama2") + [("tokenizer.ggml.bos_token_id", U32, 1),
                                         ("tokenizer.ggml.eos_token_id", U32, 2)]
    write_gguf(os.path.join(out, "tokenizer_spm.gguf"), spm, [])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data",
                                                  "gguf"))
    ap.add_argument("--fixture")
    ap.add_argument("--type", default="F32", choices=sorted(TYPES))
    ap.add_argument("--out-file")
    ap.add_argument("--synthetic-vocab", action="store_true",
                    help="with --fixture: a placeholder byte-level vocabulary instead of the "
                    "fixture's tokenizer.json (llama.cpp needs one to load a model)")
    args = ap.parse_args()
    if args.fixture:
        convert(args.fixture, args.type, args.out_file, args.synthetic_vocab)
        return
    models = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data",
                          "models")
    os.makedirs(args.out, exist_ok=True)
    plan = [("llama_f32", ["F32", "F16", "Q8_0"]), ("qwen3_f32_tied", ["F32"]),
            ("gemma3_f32", ["F32"]), ("gemma3_bf16", ["BF16", "Q8_0"]),
            ("llama_bf16_tied", ["BF16", "Q4_0"]),
            ("qwen3_bf16", ["BF16", "Q8_0", "Q4_0"])]
    for fx, types in plan:
        for t in types:
            out = os.path.join(args.out, "%s.%s.gguf" % (fx, t.lower()))
            convert(os.path.join(models, fx), t, out)
            print("wrote", out, os.path.getsize(out), "bytes")
    # SentencePiece vocabularies (tokenizer.ggml.model "llama") on the fixtures' weights.
    for fx, t, style, name in [("gemma3_bf16", "BF16", "gemma", "gemma3_spm.bf16.gguf"),
                               ("llama_f32", "Q8_0", "llama2", "llama_spm.q8_0.gguf")]:
        out = os.path.join(args.out, name)
        convert(os.path.join(models, fx), t, out, spm=style)
        print("wrote", out, os.path.getsize(out), "bytes")
    write_tensor_file(os.path.join(args.out, "tensors.gguf"))
    write_fuzz_seeds(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz",
                                  "corpus", "gguf"))
    print("wrote", os.path.join(args.out, "tensors.gguf"))


if __name__ == "__main__":
    sys.exit(main())
