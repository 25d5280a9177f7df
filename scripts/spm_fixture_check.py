#!/usr/bin/python3
"""Ids SentencePiece itself gives for the SentencePiece GGUF fixtures' vocabularies
(scripts/gguf_write.py spm_vocab_kvs), the independent check of the ids asserted in
tests/cli/test_cli_gguf.py. Needs Debian's python3-sentencepiece (and python3-protobuf), so run
it with the system python: /usr/bin/python3 scripts/spm_fixture_check.py

It builds the SentencePiece model proto the GGUF vocabulary was converted from (user-defined
pieces with their U+2581 back, the unknown piece's type,
SentencePiece's score 0 for control, unknown, user-defined and
byte pieces; the byte pieces the small vocabulary lacks appended after it, since SentencePiece
refuses byte_fallback without all 256: the texts below never fall back to those).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_write  # noqa: E402
import sentencepiece as spm  # noqa: E402
from sentencepiece import sentencepiece_model_pb2 as pb  # noqa: E402

TEXTS = {"gemma": ["Hello world", "hello  world", "the tea\there", "\u00e9t\u00e9 \u2603!",
                   "\u65e5\u672c\nat", "   at"],
         "llama2": ["Hello world", "hello  world", "the tea\there", "\u00e9t\u00e9 \u2603!",
                    "\u65e5\u672c\nat", "   at"]}


def model(style, n):
    kv = {k: v for k, _, v, *_ in gguf_write.spm_vocab_kvs(n, style)}
    m = pb.ModelProto()
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.byte_fallback = True
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = kv["tokenizer.ggml.add_space_prefix"]
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    have = set()
    unk = kv["tokenizer.ggml.unknown_token_id"]
    for i, (t, ty, sc) in enumerate(zip(kv["tokenizer.ggml.tokens"],
                                        kv["tokenizer.ggml.token_type"],
                                        kv["tokenizer.ggml.scores"])):
        p = m.pieces.add()
        p.piece = t.replace(" ", "\u2581") if ty == 4 else t
        p.score = sc if ty == 1 else 0.0
        p.type = 2 if i == unk else ty  # llama.cpp's converter makes Gemma's <unk> control
        have.add(p.piece)
    for b in range(256):
        if "<0x%02X>" % b not in have:
            p = m.pieces.add()
            p.piece, p.score, p.type = "<0x%02X>" % b, 0.0, 6
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(m.SerializeToString())
    return sp


for style, n in (("gemma", 256), ("llama2", 256)):
    sp = model(style, n)
    print(style, json.dumps({t: sp.encode(t) for t in TEXTS[style]}, ensure_ascii=False))
