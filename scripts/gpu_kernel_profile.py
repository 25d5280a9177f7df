#!/usr/bin/env python3
"""Kernel-time breakdown of an ingot command on the GPU (device machine).

    python3 scripts/gpu_kernel_profile.py --out DIR -- ingot bench decode --model M ...

Uses nsys when installed (all kernels, graph nodes included), else ncu over a window of
launches (--skip/--count). Prints the kernels sorted by total time with their share and
writes DIR/kernel_profile.txt.
"""
import argparse
import collections
import csv
import io
import os
import shutil
import subprocess
import sys


def nsys(cmd, out):
    rep = os.path.join(out, "profile")
    subprocess.run(["nsys", "profile", "--force-overwrite", "true", "--cuda-graph-trace", "node",
                    "-o", rep, *cmd], check=True, capture_output=True, timeout=400)
    r = subprocess.run(["nsys", "stats", "--report", "cuda_gpu_kern_sum", "--format", "csv",
                        rep + ".nsys-rep"], capture_output=True, text=True, timeout=200)
    rows = []
    text = r.stdout[r.stdout.find("Time (%)"):] if "Time (%)" in r.stdout else r.stdout
    for row in csv.DictReader(io.StringIO(text)):
        try:
            rows.append((row["Name"], float(row["Total Time (ns)"]) / 1e3, int(row["Instances"])))
        except (KeyError, ValueError):
            continue
    return rows


def ncu(cmd, skip, count, real):
    # real: the card's own clocks and warm caches (ncu locks base clocks and flushes caches
    # between kernels by default, which inflates small kernels' times).
    extra = ["--clock-control", "none", "--cache-control", "none"] if real else []
    r = subprocess.run(["ncu", *extra, "--graph-profiling", "node", "--launch-skip", str(skip),
                        "--launch-count", str(count), "--metrics", "gpu__time_duration.sum",
                        "--csv", *cmd], capture_output=True, text=True, timeout=500)
    agg = collections.defaultdict(lambda: [0.0, 0])
    text = r.stdout[r.stdout.find('"ID"'):]
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        v = float(row["Metric Value"].replace(",", ""))
        scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(row.get("Metric Unit"), 1e-3)
        a = agg[row["Kernel Name"]]
        a[0] += v * scale
        a[1] += 1
    return [(k, v[0], v[1]) for k, v in agg.items()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--skip", type=int, default=3000)
    ap.add_argument("--count", type=int, default=1500)
    ap.add_argument("--real", action="store_true", help="ncu: no clock locking, no cache flushes")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    os.makedirs(a.out, exist_ok=True)
    tool = "nsys" if shutil.which("nsys") else "ncu"
    rows = nsys(cmd, a.out) if tool == "nsys" else ncu(cmd, a.skip, a.count, a.real)
    rows.sort(key=lambda r: -r[1])
    total = sum(r[1] for r in rows) or 1.0
    lines = [f"{tool}: {len(rows)} kernels, {total:,.0f} us of kernel time",
             f"{'us':>10} {'share':>6} {'calls':>7} {'us/call':>8}  kernel"]
    for name, us, n in rows[:40]:
        lines.append(f"{us:10,.0f} {us / total:6.1%} {n:7d} {us / max(n, 1):8.2f}  {name[:110]}")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(a.out, "kernel_profile.txt"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
