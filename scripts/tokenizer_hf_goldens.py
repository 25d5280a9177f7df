#!/usr/bin/env python3
# Expected ids and decodes from Hugging Face `tokenizers` for tests/data/tokenizer/corpus.jsonl,
# for each pinned npm tokenizer; optionally cross-checks the chat goldens with transformers and
# times HF encode for BENCHMARKS.md.
# Usage: scripts/tokenizer_hf_goldens.py TOKWORK_DIR OUT_DIR [--bench] [--chat-check]
import glob
import json
import os
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")
from tokenizers import Tokenizer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data", "tokenizer")
NAMES = ("gemma3", "qwen3", "llama3_1")


def load_corpus():
    out = []
    with open(os.path.join(DATA, "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            c = json.loads(line)
            if "bytes_hex" in c:
                # Our documented behaviour: invalid UTF-8 -> U+FFFD per maximal invalid subpart.
                c["text"] = bytes.fromhex(c["bytes_hex"]).decode("utf-8", errors="replace")
            out.append(c)
    return out


def bench_docs(corpus):
    # Same construction as bench/tokenizer/bench_tokenizer.cpp: short cases joined, repeated to 4 MB.
    doc = "\n\n".join(c["text"] for c in corpus if len(c["text"]) < 3000 and "bytes_hex" not in c)
    reps = (4 << 20) // len(doc.encode()) + 1
    return [doc] * reps


def compact(doc):
    # ids_special is stored as null where it equals special_empty wrapped around ids (the
    # TemplateProcessing single template of these tokenizers puts them all in front).
    pre = doc["special_empty"]
    for r in doc["cases"]:
        if r["ids_special"] == pre + r["ids"]:
            r["ids_special"] = None
    return doc


def main():
    tokwork, out_dir = sys.argv[1], sys.argv[2]
    flags = set(sys.argv[3:])
    os.makedirs(out_dir, exist_ok=True)
    corpus = load_corpus()
    report = {}
    for name in NAMES:
        mdir = os.path.join(tokwork, name, "package", "models")
        tok = Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
        rows = []
        for c in corpus:
            text = c["text"]
            ids = tok.encode(text, add_special_tokens=False).ids
            sids = tok.encode(text, add_special_tokens=True).ids
            dec = tok.decode(sids, skip_special_tokens=False)
            dec_skip = tok.decode(sids, skip_special_tokens=True)
            rows.append({"name": c["name"], "ids": ids, "ids_special": sids,
                         "decode": None if dec == text else dec,
                         "decode_skip": None if dec_skip == dec else dec_skip})
        empty = tok.encode("", add_special_tokens=True).ids
        with open(os.path.join(out_dir, f"expected_{name}.json"), "w", encoding="utf-8") as f:
            json.dump(compact({"tokenizer": name, "hf_tokenizers": __import__("tokenizers").__version__,
                               "special_empty": empty, "cases": rows}), f, ensure_ascii=False,
                      separators=(",", ":"))
        if "--bench" in flags:
            docs = bench_docs(corpus)
            nbytes = sum(len(d.encode()) for d in docs)
            best = None
            for _ in range(3):
                t0 = time.perf_counter()
                n = 0
                for d in docs:
                    n += len(tok.encode(d, add_special_tokens=False).ids)
                dt = time.perf_counter() - t0
                best = dt if best is None else min(best, dt)
            report[name] = {"bytes": nbytes, "tokens": n, "seconds": best, "MBps": nbytes / best / 1e6}
            import random
            rng = random.Random(1)
            for label, word in (("100k_a", "a" * 100000),
                                ("100k_random", "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(100000)))):
                t0 = time.perf_counter()
                tok.encode(word)
                report[name][label + "_ms"] = (time.perf_counter() - t0) * 1e3
            print(name, report[name], flush=True)
    if "--chat-check" in flags:
        try:
            from transformers import PreTrainedTokenizerFast
            res = {}
            for name in NAMES:
                mdir = os.path.join(tokwork, name, "package", "models")
                cfg = json.load(open(os.path.join(mdir, "tokenizer_config.json"), encoding="utf-8"))
                tk = PreTrainedTokenizerFast(tokenizer_file=os.path.join(mdir, "tokenizer.json"),
                                             **{k: cfg[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if cfg.get(k)})
                for p in sorted(glob.glob(os.path.join(DATA, "chat", f"{name}_*.json"))):
                    conv = json.load(open(p, encoding="utf-8"))
                    kw = {k: v for k, v in conv.items() if k not in ("messages", "tools", "add_generation_prompt")}
                    try:
                        r = tk.apply_chat_template(conv["messages"], tools=conv.get("tools"), tokenize=False,
                                                   add_generation_prompt=conv.get("add_generation_prompt", False),
                                                   chat_template=cfg["chat_template"], **kw)
                    except Exception as e:  # noqa: BLE001
                        r = {"error": repr(e)}
                    res[os.path.basename(p)] = r
            with open(os.path.join(out_dir, "chat_transformers.json"), "w", encoding="utf-8") as f:
                json.dump(res, f, ensure_ascii=False)
        except Exception as e:  # noqa: BLE001
            print("chat check failed:", repr(e))
    if report:
        import platform
        report["python"] = platform.python_version()
        report["cpu"] = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(" :\t")
        with open(os.path.join(out_dir, "hf_bench.json"), "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
