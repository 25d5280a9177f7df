#!/usr/bin/env python3
"""Writes the tiny random-weight model fixtures under tests/data/models/ and their references.

Needs python3 with torch, transformers (5.x), tokenizers and safetensors; it runs on CPU in well
under a minute. Everything is seeded: a rerun writes the same weights and configs, and the same
references up to their last digits, which may move with other torch/transformers versions or CPUs.
The committed outputs came from transformers 5.17.0 / torch 2.11.0 (see MANIFEST.json).

    python3 scripts/gen_model_fixtures.py --out tests/data/models [--only llama_f32 ...]

Each fixture directory is a Hugging Face checkpoint:
    config.json              as transformers wrote it (5.x: rope_parameters, layer_types, dtype)
    config_classic.json      the same model in the classic hub form (rope_theta, rope_scaling,
                             rope_local_base_freq, sliding_window_pattern, torch_dtype)
    generation_config.json   bos/eos/pad ids (several eos ids where real models have several)
    model.safetensors        weights (float32 or bfloat16 storage)
    reference.json           token ids, logits at every position (float64 compute; plus float32
                             and bfloat16 compute for the bf16 fixtures), greedy continuations
                             (single and left-padded batch), per-layer hidden states, checks
    tokenizer.json, tokenizer_config.json   (llama_bf16_tied only: byte-level BPE trained here)
gemma3_mm_f32 is a multimodal-style checkpoint (model_type gemma3, nested text_config, weights
under language_model.model.*, a tiny vision tower that text-only loaders must skip); its config.json
is the classic hub form and config_transformers5.json what transformers 5.x writes for it.

Besides transformers' own float64 run, each fixture's logits are recomputed by an independent
float64 implementation in this file (`ref_forward`, written from the config alone), and the
agreement is recorded in reference.json["checks"].
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
import traceback
import zlib

import torch

SEQ_LENS = [1, 7, 37]          # 37 > every sliding window and > llama3 original context (32)
PROMPT_LENS = [3, 6, 11]        # greedy prompts (individually and as one left-padded batch)
MAX_NEW = 12
PAD_ID = 0

# --------------------------------------------------------------------------------------------
# Fixture definitions, in the classic (transformers 4.4x-era hub) config form. The config that
# transformers 5.x writes (config.json) is produced from these by transformers itself.
# --------------------------------------------------------------------------------------------

FIXTURES = {
    "llama_f32": dict(
        storage="float32",
        gen_eos=[2, 3],
        classic={
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": 256,
            "hidden_size": 48,
            "intermediate_size": 128,
            "num_hidden_layers": 3,
            "num_attention_heads": 6,
            "num_key_value_heads": 2,
            "head_dim": 16,                     # != hidden/heads (8): q_proj is [96, 48]
            "hidden_act": "silu",
            "max_position_embeddings": 128,
            "initializer_range": 0.02,
            "rms_norm_eps": 1e-05,
            "rope_theta": 10000.0,
            # head_dim 16, theta 1e4: wavelengths 6.3, 19.9, 62.8, ... With original 32 the three
            # llama3 bands are all present: high-freq (< 8) kept, 8..32 smoothed, > 32 divided by 8.
            "rope_scaling": {
                "factor": 8.0,
                "high_freq_factor": 4.0,
                "low_freq_factor": 1.0,
                "original_max_position_embeddings": 32,
                "rope_type": "llama3",
            },
            "attention_bias": False,
            "attention_dropout": 0.0,
            "mlp_bias": False,
            "pretraining_tp": 1,
            "tie_word_embeddings": False,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "use_cache": True,
        },
        ablations={
            "no_rope_scaling": {"rope_scaling": None},
        },
    ),
    "llama_bf16_tied": dict(
        storage="bfloat16",
        gen_eos=[2, 4],                        # <|eos|>, <|im_end|>
        tokenizer=True,
        classic={
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": 384,                 # replaced by the trained tokenizer's size
            "hidden_size": 64,
            "intermediate_size": 176,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,          # MHA
            "head_dim": 16,
            "hidden_act": "silu",
            "max_position_embeddings": 256,
            "initializer_range": 0.02,
            "rms_norm_eps": 1e-06,
            "rope_theta": 10000.0,
            "rope_scaling": None,
            "attention_bias": False,
            "attention_dropout": 0.0,
            "mlp_bias": False,
            "pretraining_tp": 1,
            "tie_word_embeddings": True,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 0,
            "use_cache": True,
        },
    ),
    "qwen3_f32_tied": dict(
        storage="float32",
        gen_eos=[2],
        classic={
            "architectures": ["Qwen3ForCausalLM"],
            "model_type": "qwen3",
            "vocab_size": 256,
            "hidden_size": 60,
            "intermediate_size": 160,
            "num_hidden_layers": 3,
            "num_attention_heads": 5,
            "num_key_value_heads": 1,
            "head_dim": 16,                    # != hidden/heads (12)
            "hidden_act": "silu",
            "max_position_embeddings": 256,
            "max_window_layers": 3,
            "initializer_range": 0.02,
            "rms_norm_eps": 1e-06,
            "rope_theta": 1000000.0,
            "rope_scaling": None,
            "sliding_window": None,
            "use_sliding_window": False,
            "attention_bias": False,
            "attention_dropout": 0.0,
            "tie_word_embeddings": True,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "use_cache": True,
        },
    ),
    "qwen3_bf16": dict(
        storage="bfloat16",
        gen_eos=[2, 3],
        classic={
            "architectures": ["Qwen3ForCausalLM"],
            "model_type": "qwen3",
            "vocab_size": 256,
            "hidden_size": 64,
            "intermediate_size": 192,
            "num_hidden_layers": 2,
            "num_attention_heads": 8,
            "num_key_value_heads": 2,
            "head_dim": 8,
            "hidden_act": "silu",
            "max_position_embeddings": 256,
            "max_window_layers": 2,
            "initializer_range": 0.02,
            "rms_norm_eps": 1e-06,
            "rope_theta": 1000000.0,
            "rope_scaling": None,
            "sliding_window": None,
            "use_sliding_window": False,
            "attention_bias": False,
            "attention_dropout": 0.0,
            "tie_word_embeddings": False,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "use_cache": True,
        },
    ),
    "gemma3_f32": dict(
        storage="float32",
        gen_eos=[1, 106],
        classic={
            "architectures": ["Gemma3ForCausalLM"],
            "model_type": "gemma3_text",
            "vocab_size": 256,
            "hidden_size": 48,
            "intermediate_size": 128,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,                    # != hidden/heads (12)
            "hidden_activation": "gelu_pytorch_tanh",
            "max_position_embeddings": 256,
            "initializer_range": 0.02,
            "rms_norm_eps": 1e-06,
            "rope_theta": 1000000.0,
            "rope_local_base_freq": 10000.0,
            "rope_scaling": None,
            "query_pre_attn_scalar": 12,       # != head_dim
            "sliding_window": 4,
            "sliding_window_pattern": 3,       # layers: sliding, sliding, full, sliding
            "final_logit_softcapping": 6.0,
            "attn_logit_softcapping": 2.0,
            "attention_bias": False,
            "attention_dropout": 0.0,
            "cache_implementation": "hybrid",
            "tie_word_embeddings": True,
            "bos_token_id": 2,
            "eos_token_id": 1,
            "pad_token_id": 0,
            "use_cache": True,
        },
        ablations={
            "no_sliding_window": {"sliding_window_pattern": 1},
            "no_final_softcap": {"final_logit_softcapping": None},
            "no_attn_softcap": {"attn_logit_softcapping": None},
            "local_base_eq_global": {"rope_local_base_freq": 1000000.0},
            "query_pre_attn_scalar_eq_head_dim": {"query_pre_attn_scalar": 16},
        },
    ),
    "gemma3_bf16": dict(
        storage="bfloat16",
        gen_eos=[1, 106],
        classic={
            "architectures": ["Gemma3ForCausalLM"],
            "model_type": "gemma3_text",
            "vocab_size": 256,
            "hidden_size": 48,                 # sqrt(48) is not exact in bf16
            "intermediate_size": 128,
            "num_hidden_layers": 3,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "hidden_activation": "gelu_pytorch_tanh",
            "max_position_embeddings": 256,
            "initializer_range": 0.02,
            "rms_norm_eps": 1e-06,
            "rope_theta": 1000000.0,
            "rope_local_base_freq": 10000.0,
            "rope_scaling": {"factor": 8.0, "rope_type": "linear"},   # global layers only
            "query_pre_attn_scalar": 24,
            "sliding_window": 4,
            "sliding_window_pattern": 2,       # layers: sliding, full, sliding
            "final_logit_softcapping": None,
            "attn_logit_softcapping": None,
            "attention_bias": False,
            "attention_dropout": 0.0,
            "cache_implementation": "hybrid",
            "tie_word_embeddings": True,
            "bos_token_id": 2,
            "eos_token_id": 1,
            "pad_token_id": 0,
            "use_cache": True,
        },
        ablations={
            "no_global_rope_scaling": {"rope_scaling": None},
            "no_sliding_window": {"sliding_window_pattern": 1},
        },
    ),
}

# Multimodal-style Gemma3 (google/gemma-3-4b-it layout). The text_config is sparse like the hub's:
# keys equal to Gemma3TextConfig's defaults are left out (rope_theta 1e6, rope_local_base_freq 1e4,
# rms_norm_eps 1e-6, hidden_activation gelu_pytorch_tanh, softcaps null, bos 2 / eos 1 / pad 0).
GEMMA3_MM = {
    "architectures": ["Gemma3ForConditionalGeneration"],
    "boi_token_index": 253,
    "eoi_token_index": 254,
    "eos_token_id": [1, 106],
    "image_token_index": 255,
    "initializer_range": 0.02,
    "mm_tokens_per_image": 4,
    "model_type": "gemma3",
    "text_config": {
        "head_dim": 16,
        "hidden_size": 48,
        "intermediate_size": 96,
        "max_position_embeddings": 256,
        "model_type": "gemma3_text",
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "num_key_value_heads": 1,
        "query_pre_attn_scalar": 16,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "sliding_window": 4,
        "sliding_window_pattern": 2,
        "vocab_size": 256,
    },
    "torch_dtype": "float32",
    "vision_config": {
        "hidden_size": 16,
        "image_size": 28,
        "intermediate_size": 32,
        "model_type": "siglip_vision_model",
        "num_attention_heads": 2,
        "num_hidden_layers": 1,
        "patch_size": 14,
        "vision_use_head": False,
    },
}

# --------------------------------------------------------------------------------------------
# Config parsing, independent of transformers (mirrors what a C++ loader has to do).
# --------------------------------------------------------------------------------------------

GEMMA3_TEXT_DEFAULTS = {
    "vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-6, "rope_theta": 1e6, "rope_local_base_freq": 1e4,
    "query_pre_attn_scalar": 256, "sliding_window": 4096, "sliding_window_pattern": 6,
    "final_logit_softcapping": None, "attn_logit_softcapping": None, "rope_scaling": None,
    "tie_word_embeddings": True,
}


def parse_config(cfg: dict) -> dict:
    """Normalises either config form (classic or transformers 5.x) into one flat spec."""
    prefix = "model."
    if "text_config" in cfg:                       # multimodal Gemma3: weights under language_model.
        cfg = dict(cfg["text_config"])
        prefix = "language_model.model."
    mt = cfg["model_type"]
    gemma = mt in ("gemma3", "gemma3_text")
    if gemma:
        cfg = {**GEMMA3_TEXT_DEFAULTS, **cfg}
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads") or heads
    default_hd = 128 if mt == "qwen3" else hidden // heads
    head_dim = cfg.get("head_dim") or default_hd
    n = cfg["num_hidden_layers"]
    if cfg.get("layer_types"):
        layer_types = list(cfg["layer_types"])
    elif gemma:
        p = cfg["sliding_window_pattern"]
        layer_types = ["sliding_attention" if (i + 1) % p else "full_attention" for i in range(n)]
    else:
        layer_types = ["full_attention"] * n
    default_theta = 1e6 if gemma else 10000.0
    if "rope_parameters" in cfg and cfg["rope_parameters"] is not None:
        rp = cfg["rope_parameters"]
        if gemma:
            rope = {k: dict(v) for k, v in rp.items()}
        else:
            rope = {"full_attention": dict(rp)}
    else:
        full = dict(cfg.get("rope_scaling") or {})
        if "type" in full and "rope_type" not in full:
            full["rope_type"] = full.pop("type")
        full.setdefault("rope_type", "default")
        full["rope_theta"] = cfg.get("rope_theta", default_theta)
        rope = {"full_attention": full}
        if gemma:
            rope["sliding_attention"] = {"rope_type": "default",
                                         "rope_theta": cfg.get("rope_local_base_freq", 1e4)}
    act = cfg.get("hidden_activation") if gemma else cfg.get("hidden_act", "silu")
    return {
        "model_type": mt,
        "gemma": gemma,
        "qk_norm": mt in ("qwen3", "gemma3", "gemma3_text"),
        "prefix": prefix,
        "vocab": cfg["vocab_size"],
        "hidden": hidden,
        "inter": cfg["intermediate_size"],
        "layers": n,
        "heads": heads,
        "kv_heads": kv,
        "head_dim": head_dim,
        "eps": cfg.get("rms_norm_eps", 1e-6),
        "act": act,
        "tie": cfg.get("tie_word_embeddings", gemma),
        "layer_types": layer_types,
        "sliding_window": cfg.get("sliding_window") if gemma else None,
        "rope": rope,
        "scale": (cfg["query_pre_attn_scalar"] ** -0.5) if gemma else head_dim ** -0.5,
        # transformers (5.17) stores Gemma3's attn_logit_softcapping but never applies it:
        # Gemma3Attention does not pass softcap= to the attention function (Gemma2 does). Real
        # Gemma3 checkpoints have it null; gemma3_f32 sets it to 2.0 to pin this behaviour down.
        "attn_softcap": None,
        "attn_softcap_in_config": cfg.get("attn_logit_softcapping") if gemma else None,
        "final_softcap": cfg.get("final_logit_softcapping") if gemma else None,
    }


def rope_inv_freq(params: dict, head_dim: int) -> torch.Tensor:
    """Inverse frequencies in float64 for rope_type default / linear / llama3."""
    theta = float(params["rope_theta"])
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    rt = params.get("rope_type", "default")
    if rt == "default":
        return inv
    if rt == "linear":
        return inv / float(params["factor"])
    if rt == "llama3":
        factor = float(params["factor"])
        low = float(params["low_freq_factor"])
        high = float(params["high_freq_factor"])
        old = float(params["original_max_position_embeddings"])
        low_wavelen = old / low
        high_wavelen = old / high
        wavelen = 2 * math.pi / inv
        out = torch.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * out / factor + smooth * out
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        return torch.where(medium, smoothed, out)
    raise ValueError(f"rope_type {rt} not handled by ref_forward")


def ref_forward(spec: dict, W: dict, ids: list[int], capture: dict | None = None) -> torch.Tensor:
    """Independent float64 forward pass. W maps HF tensor names (text names, 'model.' prefix) to
    float64 tensors. Returns logits [L, V]."""
    f = torch.float64
    pre = "model."
    L = len(ids)
    H, Hkv, D = spec["heads"], spec["kv_heads"], spec["head_dim"]
    eps = spec["eps"]
    gemma = spec["gemma"]

    def norm(x, w):
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return y * (1.0 + w) if gemma else y * w

    def act(x):
        if spec["act"] == "silu":
            return x * torch.sigmoid(x)
        if spec["act"] in ("gelu_pytorch_tanh", "gelu_tanh"):
            return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
        raise ValueError(spec["act"])

    def rot_half(x):
        h = x.shape[-1] // 2
        return torch.cat([-x[..., h:], x[..., :h]], dim=-1)

    x = W[pre + "embed_tokens.weight"][torch.tensor(ids)]                         # [L, E]
    if gemma:
        x = x * math.sqrt(spec["hidden"])
    if capture is not None:
        capture["embed"] = x[-1].clone()
    pos = torch.arange(L, dtype=f)
    causal = torch.arange(L)[None, :] <= torch.arange(L)[:, None]                # [L, S]
    for li in range(spec["layers"]):
        p = f"{pre}layers.{li}."
        lt = spec["layer_types"][li]
        h = norm(x, W[p + "input_layernorm.weight"])
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(L, H, D)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).view(L, Hkv, D)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(L, Hkv, D)
        if spec["qk_norm"]:
            q = norm(q, W[p + "self_attn.q_norm.weight"])
            k = norm(k, W[p + "self_attn.k_norm.weight"])
        inv = rope_inv_freq(spec["rope"][lt], D)
        ang = pos[:, None] * inv[None, :]
        emb = torch.cat([ang, ang], dim=-1)                                       # [L, D]
        cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
        q = q * cos + rot_half(q) * sin
        k = k * cos + rot_half(k) * sin
        rep = H // Hkv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        s = torch.einsum("ihd,jhd->hij", q, k) * spec["scale"]                   # [H, L, S]
        if spec["attn_softcap"] is not None:
            c = spec["attn_softcap"]
            s = torch.tanh(s / c) * c
        mask = causal.clone()
        if lt == "sliding_attention" and spec["sliding_window"] is not None:
            w = spec["sliding_window"]
            mask &= (torch.arange(L)[:, None] - torch.arange(L)[None, :]) < w
        s = s.masked_fill(~mask[None], float("-inf"))
        a = torch.softmax(s, dim=-1)
        o = torch.einsum("hij,jhd->ihd", a, v).reshape(L, H * D)
        o = o @ W[p + "self_attn.o_proj.weight"].T
        if gemma:
            o = norm(o, W[p + "post_attention_layernorm.weight"])
        x = x + o
        h = norm(x, W[p + ("pre_feedforward_layernorm.weight" if gemma
                           else "post_attention_layernorm.weight")])
        m = act(h @ W[p + "mlp.gate_proj.weight"].T) * (h @ W[p + "mlp.up_proj.weight"].T)
        m = m @ W[p + "mlp.down_proj.weight"].T
        if gemma:
            m = norm(m, W[p + "post_feedforward_layernorm.weight"])
        x = x + m
        if capture is not None:
            capture.setdefault("layers", []).append(x[-1].clone())
    x = norm(x, W[pre + "norm.weight"])
    if capture is not None:
        capture["final_norm"] = x[-1].clone()
    head = W[pre + "embed_tokens.weight"] if spec["tie"] else W["lm_head.weight"]
    logits = x @ head.T
    if spec["final_softcap"] is not None:
        c = spec["final_softcap"]
        logits = torch.tanh(logits / c) * c
    return logits


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def r10(x: float) -> float:
    return float(f"{x:.10g}")


def r9(x: float) -> float:
    return float(f"{x:.9g}")


def r8(x: float) -> float:
    return float(f"{x:.8g}")


def rows(t: torch.Tensor, rnd) -> list:
    return [[rnd(v) for v in row] for row in t.tolist()]


def vec(t: torch.Tensor, rnd=r10) -> list:
    return [rnd(v) for v in t.tolist()]


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.double() - ref.double()).abs().max() / ref.double().abs().max())


def seed_of(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def attempt(checks: dict, key: str, fn, keep=True):
    """Runs fn; on failure records the error under checks[key + '_error'] instead of stopping."""
    try:
        v = fn()
        if keep:
            checks[key] = v
        return v
    except Exception as e:
        traceback.print_exc()
        checks[key + "_error"] = repr(e)
        return None


def log(*a):
    print(*a, flush=True)


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read())
    return h.hexdigest()


def write_json(path: str, obj, compact=False):
    with open(path, "w") as fh:
        if compact:
            json.dump(obj, fh, separators=(",", ":"))
        else:
            json.dump(obj, fh, indent=2)
        fh.write("\n")


def classic_with_dtype(classic: dict, storage: str) -> dict:
    c = copy.deepcopy(classic)
    c["torch_dtype"] = storage
    return dict(sorted(c.items()))


# --------------------------------------------------------------------------------------------
# transformers side
# --------------------------------------------------------------------------------------------

def tf():
    import transformers
    return transformers


def config_class(model_type: str):
    t = tf()
    return {"llama": t.LlamaConfig, "qwen3": t.Qwen3Config, "gemma3_text": t.Gemma3TextConfig,
            "gemma3": t.Gemma3Config}[model_type]


def model_from_config(cls, config):
    try:
        return cls._from_config(config, attn_implementation="eager")
    except Exception as e:  # older/newer API
        log(f"  _from_config failed ({e!r}); falling back to cls(config)")
        config._attn_implementation = "eager"
        return cls(config)


def init_weights(model, seed: int):
    """Deterministic init, by sorted parameter name, larger than transformers' default so that
    logits are far from uniform:
      projections             N(0, s^2), s = max(0.1, 1.2/sqrt(fan_in))
      untied lm_head          N(0, 0.3^2)
      embeddings              N(0, 0.3^2); N(0, 0.1^2) when tied or Gemma (see below)
      Llama/Qwen RMSNorm      1 + N(0, 0.2^2); the final norm of a tied model 3 + N(0, 0.2^2)
      Gemma3 (1+w) RMSNorm    w = N(0, 0.3^2); post-attention/post-feedforward norms w = 1 + N(0, 0.3^2),
                              the final norm w = 2 + N(0, 0.3^2)
      anything else           N(0, 0.1^2) (LayerNorm: 1 + N(0, 0.2^2), biases N(0, 0.05^2))
    A tied model whose residual stream is dominated by the token's own embedding predicts that
    token again and greedy decoding collapses into one repeated id, which makes the generation
    references weak tests of the KV cache; the smaller tied embeddings and larger norm gains keep
    the continuations varied (see reference.json greedy)."""
    g = torch.Generator().manual_seed(seed)
    emb_in = model.get_input_embeddings().weight
    out = model.get_output_embeddings()
    tied = out is not None and out.weight is emb_in
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda t: t[0]):
            owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            cls = type(owner).__name__
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            final_norm = name.endswith("model.norm.weight") or name.endswith("language_model.norm.weight")
            if cls == "Gemma3RMSNorm":
                off = 0.0
                if "post_attention_layernorm" in name or "post_feedforward_layernorm" in name:
                    off = 1.0
                elif final_norm:
                    off = 2.0
                p.copy_(off + 0.3 * r)
            elif "Norm" in cls:
                if not name.endswith("weight"):
                    p.copy_(0.05 * r)
                elif final_norm and tied and "RMSNorm" in cls:
                    p.copy_(3.0 + 0.2 * r)
                else:
                    p.copy_(1.0 + 0.2 * r)
            elif isinstance(owner, torch.nn.Embedding):
                small = p is emb_in and (tied or "Gemma3" in cls)
                p.copy_((0.1 if small else 0.3) * r)
            elif name.endswith("lm_head.weight"):
                p.copy_(0.3 * r)
            elif isinstance(owner, torch.nn.Linear) and name.endswith("weight"):
                p.copy_(max(0.1, 1.2 / math.sqrt(p.shape[1])) * r)
            else:
                p.copy_(0.1 * r)


def load(cls, path, dtype, **kw):
    return cls.from_pretrained(path, dtype=dtype, attn_implementation="eager", **kw).eval()


@torch.no_grad()
def logits_of(model, ids):
    out = model(input_ids=torch.tensor([ids]), use_cache=False)
    return out.logits[0]


@torch.no_grad()
def intermediates_of(model, ids):
    base = model.model
    if hasattr(base, "language_model"):
        base = base.language_model
    cap = {}
    hs = []

    def first(o):
        return o[0] if isinstance(o, (tuple, list)) else o

    hs.append(base.embed_tokens.register_forward_hook(
        lambda m, i, o: cap.__setitem__("embed", first(o)[0, -1].double().clone())))
    for li, layer in enumerate(base.layers):
        def hook(m, i, o, li=li):
            cap.setdefault("layers", {})[li] = first(o)[0, -1].double().clone()
        hs.append(layer.register_forward_hook(hook))
    hs.append(base.norm.register_forward_hook(
        lambda m, i, o: cap.__setitem__("final_norm", first(o)[0, -1].double().clone())))
    try:
        model(input_ids=torch.tensor([ids]), use_cache=False)
    finally:
        for h in hs:
            h.remove()
    cap["layers"] = [cap["layers"][i] for i in sorted(cap["layers"])]
    return cap


@torch.no_grad()
def greedy_refs(model, prompts, n_new, pad_id):
    t = tf()
    gc = t.GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=n_new,
                            pad_token_id=pad_id, eos_token_id=None)
    model.generation_config = gc                  # in memory only: no EOS stopping
    single = []
    for p in prompts:
        inp = torch.tensor([p])
        out = model.generate(input_ids=inp, attention_mask=torch.ones_like(inp),
                             generation_config=gc)
        single.append(out[0, len(p):].tolist())
    maxlen = max(len(p) for p in prompts)
    ids = [[pad_id] * (maxlen - len(p)) + list(p) for p in prompts]
    am = [[0] * (maxlen - len(p)) + [1] * len(p) for p in prompts]
    out = model.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(am),
                         generation_config=gc)
    batched = out[:, maxlen:].tolist()
    # naive check: full forward each step, argmax; also the smallest top1-top2 margin seen
    naive, margins = [], []
    for p in prompts:
        seq = list(p)
        for _ in range(n_new):
            lg = logits_of(model, seq)[-1].double()
            top = torch.topk(lg, 2)
            margins.append(float(top.values[0] - top.values[1]))
            seq.append(int(top.indices[0]))
        naive.append(seq[len(p):])
    return {
        "compute_dtype": "float32",
        "attn_implementation": "eager",
        "max_new_tokens": n_new,
        "eos_stopping": False,
        "pad_token_id": pad_id,
        "prompts": [list(p) for p in prompts],
        "single": single,
        "batched_left_padded": {"input_ids": ids, "attention_mask": am, "new_tokens": batched},
        "batched_equals_single": batched == single,
        "naive_argmax_loop_equals_single": naive == single,
        "naive_argmax_loop": naive if naive != single else "same as single",
        "min_top1_top2_margin": r8(min(margins)),
        "all_generated_max_new_tokens": all(len(s) == n_new for s in single),
    }


def make_tokenizer(vocab_target: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    specials = ["<|pad|>", "<|bos|>", "<|eos|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_target, min_frequency=2, show_progress=False,
                                  special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TOKENIZER_CORPUS.strip().split("\n"), trainer=trainer)
    bos = tok.token_to_id("<|bos|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|bos|> $A", pair="<|bos|> $A <|bos|> $B",
                                      special_tokens=[("<|bos|>", bos)]),
    ])
    return tok, specials


CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

TOKENIZER_CORPUS = """
The quick brown fox jumps over the lazy dog while the small cat watches from the warm window.
A model reads the text one token at a time and predicts the next token from what came before.
Once upon a time there was a little village at the edge of a deep green forest near the sea.
Every morning the baker opened the door of the shop and the smell of fresh bread filled the street.
The children ran to the river to watch the boats, and the old fisherman told them stories of storms.
In the evening the lights of the houses came on one by one and the stars appeared over the hills.
She said that the weather would be fine tomorrow, so they planned a long walk along the coast.
He wrote a short letter to his friend and asked about the garden, the dog and the new house.
Numbers like 1, 2, 3, 10, 42 and 2025 appear in text too, and so do dates such as 12 March.
Questions end with a question mark? Answers often start with yes, no, or it depends on the case.
The library was quiet; only the sound of pages turning and the clock on the wall could be heard.
Machine learning models are trained on large amounts of text to learn the patterns of language.
When the rain stopped, the birds began to sing again and the roads shone in the afternoon sun.
They cooked a simple dinner of rice, beans and vegetables, and shared it with their neighbours.
A good tokenizer splits common words into single tokens and rare words into smaller pieces.
The train left the station at nine o'clock and arrived in the city a little after noon.
Hello, world! This is a tiny test corpus for a byte level BPE tokenizer used in unit tests.
The teacher asked the students to read the chapter again and to write down three questions.
On the table there were apples, oranges, a loaf of bread, some cheese and a jug of water.
After a long day of work, the farmer sat on the bench in front of his house and watched the fields.
The city museum shows old maps, coins, tools and paintings from the time of the first settlers.
If you want to learn something well, practise a little every day and be patient with yourself.
The wind moved the tall grass like waves on the sea, and the clouds raced across the blue sky.
"""

TOKENIZER_SAMPLES = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time, in 2025, a model read 42 tokens?",
    "  leading spaces and\ttabs\nand newlines  ",
    "Unseen wordz like zyxwvut and caf\u00e9 na\u00efve \u65e5\u672c",
]


# --------------------------------------------------------------------------------------------
# Building and referencing one text fixture
# --------------------------------------------------------------------------------------------

def build_text_fixture(name: str, fx: dict, out_dir: str, report: dict):
    t = tf()
    classic = copy.deepcopy(fx["classic"])
    storage = fx["storage"]
    seed = seed_of(name)
    os.makedirs(out_dir, exist_ok=True)

    tok = None
    if fx.get("tokenizer"):
        tok, specials = make_tokenizer(classic["vocab_size"])
        vs = tok.get_vocab_size()
        log(f"  tokenizer trained: vocab {vs} (target {classic['vocab_size']})")
        classic["vocab_size"] = vs
        tok.save(os.path.join(out_dir, "tokenizer.json"))
        write_json(os.path.join(out_dir, "tokenizer_config.json"), {
            "add_bos_token": True,
            "add_eos_token": False,
            "bos_token": "<|bos|>",
            "chat_template": CHAT_TEMPLATE,
            "clean_up_tokenization_spaces": False,
            "eos_token": "<|eos|>",
            "model_max_length": classic["max_position_embeddings"],
            "pad_token": "<|pad|>",
            "tokenizer_class": "PreTrainedTokenizerFast",
            "unk_token": None,
        })

    cfg_cls = config_class(classic["model_type"])
    config = cfg_cls.from_dict(copy.deepcopy(classic_with_dtype(classic, "float32")))
    model_cls = getattr(t, classic["architectures"][0])
    model = model_from_config(model_cls, config)
    init_weights(model, seed)
    model.eval()
    if storage == "bfloat16":
        model = model.to(torch.bfloat16)
    model.generation_config = t.GenerationConfig(
        bos_token_id=classic["bos_token_id"],
        eos_token_id=fx["gen_eos"] if len(fx["gen_eos"]) > 1 else fx["gen_eos"][0],
        pad_token_id=classic.get("pad_token_id", PAD_ID))
    model.save_pretrained(out_dir)
    write_json(os.path.join(out_dir, "config_classic.json"), classic_with_dtype(classic, storage))
    if not os.path.exists(os.path.join(out_dir, "generation_config.json")):
        log("  save_pretrained wrote no generation_config.json; writing it")
        model.generation_config.save_pretrained(out_dir)
    mem_sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return classic, mem_sd, tok


def sequences_for(name, classic, tok):
    rng = random.Random(seed_of(name) + 1)
    vocab = classic["vocab_size"]
    lo, hi = 3, vocab - 3                       # skip pad/bos/eos and (mm) image tokens
    if tok is not None:
        lo = 5
        text = TOKENIZER_CORPUS.strip().split("\n")
        long_ids = tok.encode(" ".join(text[3:8])).ids
        seqs = [[tok.token_to_id("<|bos|>")], tok.encode(text[0]).ids[:SEQ_LENS[1]],
                long_ids[:SEQ_LENS[2]]]
        assert [len(s) for s in seqs] == SEQ_LENS, [len(s) for s in seqs]
        prompts = [tok.encode(s).ids for s in ["Hello", "Once upon a time", "The children ran to the"]]
        return seqs, prompts
    seqs = [[rng.randrange(lo, hi) for _ in range(n)] for n in SEQ_LENS]
    prompts = [[rng.randrange(lo, hi) for _ in range(n)] for n in PROMPT_LENS]
    return seqs, prompts


def references(name, fx, classic, model_dir, mem_sd, seqs, prompts, tok):
    t = tf()
    from safetensors.torch import load_file
    model_cls = getattr(t, classic["architectures"][0])
    storage = fx["storage"]
    checks = {}

    m64 = load(model_cls, model_dir, torch.float64)
    m32 = load(model_cls, model_dir, torch.float32)
    mbf = load(model_cls, model_dir, torch.bfloat16) if storage == "bfloat16" else None

    spec = parse_config(json.load(open(os.path.join(model_dir, "config.json"))))
    spec_classic = parse_config(json.load(open(os.path.join(model_dir, "config_classic.json"))))
    checks["parse_config_forms_agree"] = spec == spec_classic
    if spec != spec_classic:
        log("  !! parsed specs differ:", {k: (spec[k], spec_classic[k]) for k in spec
                                           if spec[k] != spec_classic[k]})
    raw = load_file(os.path.join(model_dir, "model.safetensors"))
    W = {k: v.double() for k, v in raw.items()}
    checks["stored_dtypes"] = sorted({str(v.dtype).replace("torch.", "") for v in raw.values()})
    checks["stored_tensors"] = len(raw)
    checks["saved_tensors_equal_in_memory"] = all(
        k in mem_sd and mem_sd[k].dtype == v.dtype and torch.equal(mem_sd[k], v) for k, v in raw.items())
    checks["state_dict_keys_not_saved"] = sorted(set(mem_sd) - set(raw))
    checks["saved_keys_not_in_state_dict"] = sorted(set(raw) - set(mem_sd))

    seq_out = []
    worst = {"f32": 0.0, "bf16": 0.0, "independent_f64": 0.0}
    top1 = {"bf16_agree": 0, "f32_agree": 0, "positions": 0}
    for ids in seqs:
        l64 = logits_of(m64, ids).double()
        l32 = logits_of(m32, ids)
        e32 = rel_err(l32, l64)
        worst["f32"] = max(worst["f32"], e32)
        li = ref_forward(spec, W, ids)
        worst["independent_f64"] = max(worst["independent_f64"], rel_err(li, l64))
        entry = {"ids": list(ids), "logits_f64": rows(l64, r10)}
        top1["positions"] += len(ids)
        top1["f32_agree"] += int((l32.argmax(-1) == l64.argmax(-1)).sum())
        if mbf is not None:
            lbf = logits_of(mbf, ids)
            ebf = rel_err(lbf, l64)
            worst["bf16"] = max(worst["bf16"], ebf)
            top1["bf16_agree"] += int((lbf.argmax(-1) == l64.argmax(-1)).sum())
            entry["logits_f32"] = rows(l32.double(), r9)
            entry["logits_bf16"] = rows(lbf.double(), r8)
            entry["rel_err_f32"] = r8(e32)
            entry["rel_err_bf16"] = r8(ebf)
            entry["bf16_logits_dtype"] = str(lbf.dtype)
        else:
            entry["rel_err_f32"] = r8(e32)
        seq_out.append(entry)

    def classic_check():
        # the classic config loads to the same model
        with tempfile.TemporaryDirectory() as td:
            for f in os.listdir(model_dir):
                if f not in ("config.json", "config_classic.json"):
                    os.symlink(os.path.join(model_dir, f), os.path.join(td, f))
            shutil.copy(os.path.join(model_dir, "config_classic.json"),
                        os.path.join(td, "config.json"))
            mc = load(model_cls, td, torch.float32)
            return float((logits_of(mc, seqs[-1]).double()
                          - logits_of(m32, seqs[-1]).double()).abs().max())
    attempt(checks, "classic_config_max_abs_diff_f32", classic_check)

    def ablations():
        # the feature under test changes the logits
        abl = {}
        sd = m32.state_dict()
        for aname, mods in fx.get("ablations", {}).items():
            c2 = classic_with_dtype(classic, "float32")
            c2.update(mods)
            ma = model_from_config(model_cls, config_class(classic["model_type"]).from_dict(c2))
            ma.load_state_dict(sd)
            ma.eval()
            abl[aname] = r8(rel_err(logits_of(ma, seqs[-1]), logits_of(m32, seqs[-1])))
        return abl
    attempt(checks, "ablation_rel_change", ablations)

    cap = attempt(checks, "intermediates", lambda: intermediates_of(m64, seqs[-1]), keep=False)
    if cap is not None:
        icap = {}
        ref_forward(spec, W, seqs[-1], capture=icap)
        inter_err = max(float((a - b).abs().max() / b.abs().max())
                        for a, b in zip(icap["layers"] + [icap["embed"], icap["final_norm"]],
                                        cap["layers"] + [cap["embed"], cap["final_norm"]]))
        checks["independent_f64_intermediates_rel"] = r8(inter_err)

    checks["independent_f64_vs_transformers_f64_rel"] = r8(worst["independent_f64"])
    checks["f32_vs_f64_rel_max"] = r8(worst["f32"])
    checks["f32_top1_agree"] = f"{top1['f32_agree']}/{top1['positions']}"
    if mbf is not None:
        checks["bf16_vs_f64_rel_max"] = r8(worst["bf16"])
        checks["bf16_top1_agree"] = f"{top1['bf16_agree']}/{top1['positions']}"
    checks["max_abs_logit_f64"] = r8(max(max(abs(v) for row in s["logits_f64"] for v in row)
                                         for s in seq_out))

    greedy = attempt(checks, "greedy", lambda: greedy_refs(m32, prompts, MAX_NEW, PAD_ID),
                     keep=False) or {}
    if tok is not None and greedy:
        greedy["prompt_texts"] = [tok.decode(p, skip_special_tokens=False) for p in prompts]
        greedy["single_texts"] = [tok.decode(s, skip_special_tokens=False) for s in greedy["single"]]

    ref = {
        "fixture": name,
        "generator": "scripts/gen_model_fixtures.py",
        "versions": versions(),
        "architecture": classic["architectures"][0],
        "model_type": classic["model_type"],
        "storage_dtype": storage,
        "vocab_size": classic["vocab_size"],
        "layer_types": spec["layer_types"],
        "logits_note": ("logits_f64: transformers with dtype=float64, attn_implementation=eager, "
                        "weights as stored (bf16 upcast exactly). Inside, transformers still runs "
                        "RMSNorm, softmax and rotary cos/sin in float32, so these are good to about "
                        "1e-6 relative; checks.independent_f64_vs_transformers_f64_rel compares "
                        "them with a pure float64 implementation. logits_f32 / logits_bf16 (bf16 "
                        "fixtures only): the same model run in that dtype."),
        "sequences": seq_out,
        "greedy": greedy,
        "intermediates": {
            "note": "float64 run, sequence index 2, last position: embedding output (Gemma: "
                    "after the sqrt(hidden) scale), each decoder layer's output, final norm output",
            "sequence": 2,
            "position": len(seqs[-1]) - 1,
            "embed": vec(cap["embed"]),
            "layers": [vec(x) for x in cap["layers"]],
            "final_norm": vec(cap["final_norm"]),
        } if cap is not None else None,
        "checks": checks,
    }
    if tok is not None:
        ref["tokenizer"] = tokenizer_samples(model_dir, tok)
    return ref


def tokenizer_samples(model_dir, tok):
    t = tf()
    out = {"vocab_size": tok.get_vocab_size(), "samples": []}
    for s in TOKENIZER_SAMPLES:
        enc = tok.encode(s)
        out["samples"].append({"text": s, "ids": enc.ids, "tokens": enc.tokens,
                               "decoded": tok.decode(enc.ids, skip_special_tokens=True)})
    try:
        at = t.AutoTokenizer.from_pretrained(model_dir)
        msgs = [{"role": "user", "content": "Hello there"},
                {"role": "assistant", "content": "Hi! How can I help?"},
                {"role": "user", "content": "Tell me a story."}]
        text = at.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        ids = at(text, add_special_tokens=False)["input_ids"]
        out["chat"] = {"messages": msgs, "add_generation_prompt": True, "text": text, "ids": ids}
        out["autotokenizer_matches_tokenizers"] = all(
            at(s)["input_ids"] == tok.encode(s).ids for s in TOKENIZER_SAMPLES)
        out["autotokenizer_class"] = type(at).__name__
    except Exception as e:
        out["autotokenizer_error"] = repr(e)
        log("  AutoTokenizer check failed:", repr(e))
    return out


def versions():
    import importlib
    v = {"python": sys.version.split()[0], "torch": torch.__version__}
    for m in ("transformers", "tokenizers", "safetensors"):
        try:
            v[m] = importlib.import_module(m).__version__
        except Exception:
            v[m] = None
    return v


def do_text_fixture(name, out_root, report):
    fx = FIXTURES[name]
    d = os.path.join(out_root, name)
    if os.path.exists(d):
        shutil.rmtree(d)
    classic, mem, tok = build_text_fixture(name, fx, d, report)
    seqs, prompts = sequences_for(name, classic, tok)
    ref = references(name, fx, classic, d, mem, seqs, prompts, tok)
    write_json(os.path.join(d, "reference.json"), ref, compact=True)
    return ref


def do_gemma3_mm(out_root, report):
    """Multimodal-style Gemma3: hub layout and names; references from the text model."""
    t = tf()
    from safetensors import safe_open
    from safetensors.torch import save_file
    name = "gemma3_mm_f32"
    d = os.path.join(out_root, name)
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    mm_cfg = t.Gemma3Config.from_dict(copy.deepcopy(GEMMA3_MM))
    mm = model_from_config(t.Gemma3ForConditionalGeneration, mm_cfg)
    init_weights(mm, seed_of(name))
    mm.eval()
    lm = getattr(mm.model, "language_model", None) if hasattr(mm, "model") else None
    if lm is None:
        lm = mm.language_model.model
    # the text model with the same weights, saved as a plain Gemma3ForCausalLM for the references
    text_cfg = mm_cfg.text_config
    text = model_from_config(t.Gemma3ForCausalLM, text_cfg)
    text.model.load_state_dict(lm.state_dict())
    text.eval()
    info = {}
    with tempfile.TemporaryDirectory() as td:
        tdir = os.path.join(td, "text")
        text.generation_config = t.GenerationConfig(bos_token_id=2, eos_token_id=[1, 106],
                                                    pad_token_id=0)
        text.save_pretrained(tdir)
        text_classic = {**GEMMA3_TEXT_DEFAULTS, **GEMMA3_MM["text_config"],
                        "architectures": ["Gemma3ForCausalLM"], "bos_token_id": 2,
                        "eos_token_id": 1, "pad_token_id": 0}
        write_json(os.path.join(tdir, "config_classic.json"),
                   classic_with_dtype(text_classic, "float32"))
        fx = {"storage": "float32", "classic": text_classic}
        seqs, prompts = sequences_for(name, text_classic, None)
        mem_sd = {k: v.detach().clone() for k, v in text.state_dict().items()}
        ref = references(name, fx, text_classic, tdir, mem_sd, seqs, prompts, None)
        # what transformers 5.x itself writes for the multimodal model
        sdir = os.path.join(td, "mm_saved")
        mm.save_pretrained(sdir)
        with safe_open(os.path.join(sdir, "model.safetensors"), "pt") as fh:
            keys5 = sorted(fh.keys())
        info["transformers_save_pretrained_key_prefixes"] = sorted(
            {".".join(k.split(".")[:2]) for k in keys5})
        info["transformers_save_pretrained_num_tensors"] = len(keys5)
        shutil.copy(os.path.join(sdir, "config.json"), os.path.join(d, "config_transformers5.json"))

    # hub-style names, as google/gemma-3-4b-it stores them
    sd = mm.state_dict()
    embed = sd.get("model.language_model.embed_tokens.weight")
    tensors = {}
    for k, v in sd.items():
        if k == "lm_head.weight":
            if embed is not None and v.data_ptr() == embed.data_ptr():
                continue                            # tied: the hub files have no lm_head
            nk = "language_model.lm_head.weight"
        elif k.startswith("model.language_model."):
            nk = "language_model.model." + k[len("model.language_model."):]
        elif k.startswith("model.vision_tower."):
            nk = "vision_tower." + k[len("model.vision_tower."):]
        elif k.startswith("model.multi_modal_projector."):
            nk = "multi_modal_projector." + k[len("model.multi_modal_projector."):]
        else:
            nk = k                                  # older transformers already use hub names
        tensors[nk] = v.detach().contiguous().clone()
    save_file(tensors, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    write_json(os.path.join(d, "config.json"), GEMMA3_MM)
    t.GenerationConfig(bos_token_id=2, eos_token_id=[1, 106], pad_token_id=0).save_pretrained(d)
    info["hub_key_prefixes"] = sorted({".".join(k.split(".")[:2]) for k in tensors})

    # transformers loads the hub layout and gives the text model's logits
    try:
        m, li = t.Gemma3ForConditionalGeneration.from_pretrained(
            d, dtype=torch.float64, attn_implementation="eager", output_loading_info=True)
        m.eval()
        info["from_pretrained_missing_keys"] = sorted(li.get("missing_keys", []))
        info["from_pretrained_unexpected_keys"] = sorted(li.get("unexpected_keys", []))
        diffs = []
        for s in ref["sequences"]:
            lg = logits_of(m, s["ids"]).double()
            ref64 = torch.tensor(s["logits_f64"], dtype=torch.float64)
            diffs.append(rel_err(lg, ref64))
        info["mm_from_pretrained_vs_text_f64_rel"] = r8(max(diffs))
    except Exception as e:
        info["mm_from_pretrained_error"] = repr(e)
        log("  mm from_pretrained failed:", repr(e))
        traceback.print_exc()
    spec = parse_config(GEMMA3_MM)
    W = {k[len("language_model."):]: v.double() for k, v in tensors.items()
         if k.startswith("language_model.")}
    li64 = ref_forward(spec, W, ref["sequences"][-1]["ids"])
    info["independent_f64_from_hub_config_rel"] = r8(
        rel_err(li64, torch.tensor(ref["sequences"][-1]["logits_f64"], dtype=torch.float64)))
    ref["fixture"] = name
    ref["architecture"] = "Gemma3ForConditionalGeneration"
    ref["model_type"] = "gemma3"
    ref["references_from"] = ("Gemma3ForCausalLM built from text_config with the "
                              "language_model.* weights of this checkpoint")
    ref["checks"]["multimodal"] = info
    write_json(os.path.join(d, "reference.json"), ref, compact=True)
    return ref


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data",
                                                  "models"))
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = False
    os.makedirs(args.out, exist_ok=True)
    names = list(FIXTURES) + ["gemma3_mm_f32"]
    if args.only:
        names = [n for n in names if n in args.only]
    log("versions:", json.dumps(versions()))
    summary = {"versions": versions(), "fixtures": {}, "failed": {}}
    report = {}
    for n in names:
        log(f"== {n}")
        try:
            ref = do_gemma3_mm(args.out, report) if n == "gemma3_mm_f32" else \
                do_text_fixture(n, args.out, report)
            d = os.path.join(args.out, n)
            files = {f: {"bytes": os.path.getsize(os.path.join(d, f)),
                         "sha256": sha256(os.path.join(d, f))} for f in sorted(os.listdir(d))}
            g = ref["greedy"]
            summary["fixtures"][n] = {
                "files": files,
                "checks": ref["checks"],
                "batched_equals_single": g.get("batched_equals_single"),
                "naive_argmax_loop_equals_single": g.get("naive_argmax_loop_equals_single"),
                "min_top1_top2_margin": g.get("min_top1_top2_margin"),
            }
            log(json.dumps(ref["checks"], indent=1))
            log(f"  greedy: batched==single {g.get('batched_equals_single')}, naive==single "
                f"{g.get('naive_argmax_loop_equals_single')}, min margin "
                f"{g.get('min_top1_top2_margin')}")
            errs = [k for k in ref["checks"] if k.endswith("_error")]
            if errs:
                summary["failed"][n] = "errors in: " + ", ".join(errs)
            log(f"  files: " + ", ".join(f"{f} {v['bytes']}" for f, v in files.items()))
        except Exception as e:
            traceback.print_exc()
            summary["failed"][n] = repr(e)
    write_json(os.path.join(args.out, "MANIFEST.json"), summary)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(args.out) for f in fs)
    log(f"total bytes under {args.out}: {total}")
    if summary["failed"]:
        log("FAILED:", json.dumps(summary["failed"], indent=1))
        sys.exit(1)


if __name__ == "__main__":
    main()
