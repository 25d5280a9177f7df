#!/usr/bin/env python3
"""Draws a trainer's loss curve (the loss.jsonl that `ingot train` / `ingot lora train` write)
as an SVG: training loss per step (thin line, and a 25-step moving average) and validation
loss (dots). Python standard library only.

  python3 scripts/plot_loss.py LOSS.jsonl OUT.svg [--title TEXT]
"""
import argparse
import json
import math


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("log")
    ap.add_argument("out")
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    train, val = [], []
    for line in open(a.log):
        r = json.loads(line)
        if "val_loss" in r:
            val.append((r["step"], r["val_loss"]))
        elif "loss" in r:
            train.append((r["step"], r["loss"]))
    if not train:
        raise SystemExit(f"{a.log}: no training steps")
    win = 25
    avg = []
    for i in range(len(train)):
        seg = [v for _, v in train[max(0, i - win + 1):i + 1]]
        avg.append((train[i][0], sum(seg) / len(seg)))
    w, h, l, r, t, b = 720, 420, 60, 20, 40, 50
    xs = [s for s, _ in train] + [s for s, _ in val]
    ys = [v for _, v in train] + [v for _, v in val]
    x0, x1 = min(xs), max(xs)
    y0, y1 = math.floor(min(ys)), math.ceil(max(ys))
    px = lambda s: l + (s - x0) / max(x1 - x0, 1) * (w - l - r)
    py = lambda v: t + (y1 - v) / max(y1 - y0, 1e-9) * (h - t - b)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="22" text-anchor="middle" font-size="14">{a.title}</text>']
    for k in range(y0, y1 + 1):
        y = py(k)
        out.append(f'<line x1="{l}" y1="{y:.1f}" x2="{w - r}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{l - 6}" y="{y + 4:.1f}" text-anchor="end">{k}</text>')
    for k in range(6):
        s = x0 + (x1 - x0) * k / 5
        out.append(f'<text x="{px(s):.1f}" y="{h - b + 16}" text-anchor="middle">{s:.0f}</text>')
    out.append(f'<text x="{(l + w - r) / 2}" y="{h - 12}" text-anchor="middle">step</text>')
    out.append(f'<text x="16" y="{(t + h - b) / 2}" transform="rotate(-90 16 {(t + h - b) / 2})" '
               'text-anchor="middle">loss (nats/token)</text>')

    def path(pts, style):
        d = " ".join(f"{'M' if i == 0 else 'L'}{px(s):.1f},{py(v):.1f}" for i, (s, v) in
                     enumerate(pts))
        out.append(f'<path d="{d}" fill="none" {style}/>')

    path(train, 'stroke="#9ecae1" stroke-width="1"')
    path(avg, 'stroke="#08519c" stroke-width="2"')
    for s, v in val:
        out.append(f'<circle cx="{px(s):.1f}" cy="{py(v):.1f}" r="3.5" fill="#e6550d"/>')
    lx = w - r - 230
    out += [f'<line x1="{lx}" y1="{t + 10}" x2="{lx + 24}" y2="{t + 10}" stroke="#08519c" '
            'stroke-width="2"/>',
            f'<text x="{lx + 30}" y="{t + 14}">training loss ({win}-step average)</text>',
            f'<circle cx="{lx + 12}" cy="{t + 28}" r="3.5" fill="#e6550d"/>',
            f'<text x="{lx + 30}" y="{t + 32}">validation loss</text>', '</svg>']
    with open(a.out, "w") as f:
        f.write("\n".join(out) + "\n")
    last = f", last validation {val[-1][1]:.3f} at step {val[-1][0]}" if val else ""
    print(f"{a.out}: {len(train)} steps, last average {avg[-1][1]:.3f}{last}")


if __name__ == "__main__":
    main()
