#!/usr/bin/env python3
"""Markdown table of scripts/llamacpp_bench.sh's results.jsonl: ingot bf16 / 8-bit / 4-bit
against llama.cpp bf16 / q8_0 / q4_0, prefill and decode tokens per second, per model and
thread count, with the ratio ingot / llama.cpp.

Decode rates of both engines are forward passes per second after the first sampled token:
`ingot bench decode` reports new_tokens / seconds over new_tokens - 1 forward passes, so its
figure is scaled by (new_tokens - 1) / new_tokens; llamacpp_bench.mjs measures
(tg - 1) / seconds from the first sampled token to the last.

With several rounds, each engine's best figure over the rounds is shown, and the range of the
per-round ratios beside it (both engines of one round ran back to back).

Usage: scripts/llamacpp_table.py results.jsonl [--goal-prefill 1.5 --goal-decode 1.2]
"""

import argparse
import json
import sys

NAMES = {"qwen3-0.6b": "Qwen3-0.6B", "llama-3.2-1b": "Llama-3.2-1B"}
FMT = {"bf16": ("bf16", "bf16"), "q8": ("8-bit", "q8_0"), "q4": ("4-bit", "q4_0")}


def load(path):
    runs = {}  # (model, threads, format, round) -> {engine: (prefill, decode)}
    cpu_runs = {}  # the same from CPU time (tokens per CPU second), where recorded
    meta = {}
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        r = json.loads(line)
        key = (r["model"], r["threads"], r["format"], r["round"])
        if r["engine"] == "ingot":
            d, p = r["decode"], r["prefill"]
            n = d["new_tokens"]
            val = (p["prefill_tok_s"], d["decode_tok_s"] * (n - 1) / n)
            if "cpu_seconds" in p:
                cpu_runs.setdefault(key, {})["ingot"] = (
                    p["len"] / p["cpu_seconds"], 1 / d["cpu_seconds_per_token"])
        else:
            x = r["result"]
            val = (x["pp_tok_s"], x["tg_tok_s"])
            if "pp_cpu_seconds" in x:
                cpu_runs.setdefault(key, {})["llama.cpp"] = (
                    x["pp"] / x["pp_cpu_seconds"], 1 / x["tg_cpu_seconds_per_token"])
            meta.setdefault("llama.cpp", {k: x[k] for k in ("node_llama_cpp",
                                                           "llama_cpp_release", "flash_attention")})
        runs.setdefault(key, {})[r["engine"]] = val
        meta.setdefault("cpu", r.get("cpu"))
        meta.setdefault("loads", []).append(r.get("load"))
    return runs, cpu_runs, meta


def table(runs, models, threads, fmts, goals, threads_filter=None):
    head = "| tok/s | " + " | ".join("ingot %s | llama.cpp %s | ratio" % FMT[f] for f in fmts)
    print(head + " |")
    print("|---" * (1 + 3 * len(fmts)) + "|")
    met, total = 0, 0
    for m in models:
        for t in threads:
            if threads_filter and t not in threads_filter:
                continue
            for phase, idx, goal in (("prefill", 0, goals[0]), ("decode", 1, goals[1])):
                cells = []
                for f in fmts:
                    rounds = [v for k, v in runs.items() if k[:3] == (m, t, f)
                              and "ingot" in v and "llama.cpp" in v]
                    if not rounds:
                        cells.append("– | – | –")
                        continue
                    ig = max(v["ingot"][idx] for v in rounds)
                    lc = max(v["llama.cpp"][idx] for v in rounds)
                    ratios = [v["ingot"][idx] / v["llama.cpp"][idx] for v in rounds]
                    ratio = ig / lc
                    total += 1
                    met += ratio >= goal
                    rng = "" if len(rounds) == 1 else " (%.2f-%.2f)" % (min(ratios), max(ratios))
                    mark = "" if ratio >= goal else " ✗"
                    cells.append("%.1f | %.1f | %.2f×%s%s" % (ig, lc, ratio, rng, mark))
                label = "%s %s, %d thread%s" % (NAMES.get(m, m), phase, t, "" if t == 1 else "s")
                print("| %s | %s |" % (label, " | ".join(cells)))
    print()
    print("goals (prefill >= %.1fx, decode >= %.1fx llama.cpp) met in %d of %d cells (✗: not "
          "met)" % (goals[0], goals[1], met, total))
    print()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--goal-prefill", type=float, default=1.5)
    ap.add_argument("--goal-decode", type=float, default=1.2)
    args = ap.parse_args()
    runs, cpu_runs, meta = load(args.results)
    models = sorted({k[0] for k in runs}, key=lambda m: list(NAMES).index(m))
    threads = sorted({k[1] for k in runs})
    fmts = [f for f in FMT if any(k[2] == f for k in runs)]
    goals = (args.goal_prefill, args.goal_decode)
    print("Wall time (tokens per second):\n")
    table(runs, models, threads, fmts, goals)
    if cpu_runs:
        print("1 thread, CPU time (tokens per CPU second):\n")
        table(cpu_runs, models, threads, fmts, goals, threads_filter={1})
    print("cpu: %s; load averages during the runs: %s" % (meta.get("cpu"),
                                                         ", ".join(sorted(set(meta["loads"])))))
    if "llama.cpp" in meta:
        print("llama.cpp: %s" % json.dumps(meta["llama.cpp"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
