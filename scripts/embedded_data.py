#!/usr/bin/env python3
"""Turns the Debian `fortunes` package's text into the embedded model's training data.

The fortune files (/usr/share/games/fortunes, from `apt-get install fortunes`; BSD licence, see
/usr/share/doc/fortunes/copyright) hold short texts separated by lines with a single `%`. This
keeps the prose ones (no ASCII art, no long listings), tidies their whitespace and writes
`{"text": ...}` JSONL: a deterministic 95/5 train/validation split by a hash of each text, plus
the train texts as plain text for `ingot tokenizer train`.

  python3 scripts/embedded_data.py [--src /usr/share/games/fortunes] --out DIR
"""
import argparse
import hashlib
import json
import os
import re
import sys

SKIP_FILES = {"ascii-art"}  # pictures, not prose


def entries(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    for chunk in re.split(r"^%\s*$", text, flags=re.M):
        yield chunk


def tidy(chunk):
    lines = []
    for line in chunk.split("\n"):
        line = line.replace("\t", " ")
        line = re.sub(r" {2,}", " ", line).strip()
        lines.append(line)
    # Unwrap the files' hard line breaks: a long line continues on the next one unless that
    # one starts an attribution ("-- Author") or a quotation.
    out = ""
    for i, line in enumerate(lines):
        if i and len(lines[i - 1]) >= 50 and line and not line.startswith(("--", '"')):
            out += " " + line
        else:
            out += ("\n" if i else "") + line
    return re.sub(r"\n{3,}", "\n\n", out.strip())


def is_prose(text):
    if not 20 <= len(text) <= 700:
        return False
    letters = sum(c.isalpha() for c in text)
    if letters < 0.7 * sum(not c.isspace() for c in text):
        return False
    if any(ord(c) > 0x7E and c not in "\n" for c in text):
        return False  # keeps the byte-level vocabulary on English text
    # listings, tables and dialogues of fragments: most lines very short
    lines = [ln for ln in text.split("\n") if ln]
    return not (len(lines) > 6 and sum(len(ln) < 25 for ln in lines) > len(lines) / 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", default="/usr/share/games/fortunes")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if not os.path.isdir(a.src):
        sys.exit(f"{a.src} does not exist: apt-get install fortunes (or pass --src)")
    names = sorted(
        n for n in os.listdir(a.src)
        if "." not in n and n not in SKIP_FILES and os.path.isfile(os.path.join(a.src, n)))
    seen, train, valid, kept = set(), [], [], {}
    for name in names:
        for chunk in entries(os.path.join(a.src, name)):
            text = tidy(chunk)
            if not is_prose(text) or text.lower() in seen:
                continue
            seen.add(text.lower())
            kept[name] = kept.get(name, 0) + 1
            h = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
            (valid if h % 20 == 0 else train).append(text)
    os.makedirs(a.out, exist_ok=True)
    for split, rows in (("train", train), ("valid", valid)):
        with open(os.path.join(a.out, f"{split}.jsonl"), "w") as f:
            for t in rows:
                f.write(json.dumps({"text": t}) + "\n")
    with open(os.path.join(a.out, "train.txt"), "w") as f:
        f.write("\n\n".join(train) + "\n")
    chars = sum(len(t) for t in train)
    print(f"{len(train)} train / {len(valid)} valid texts, {chars} train characters, "
          f"from {len(names)} files: " + ", ".join(f"{k} {v}" for k, v in kept.items()))


if __name__ == "__main__":
    main()
