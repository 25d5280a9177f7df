#!/usr/bin/env python3
# `ingot launch` and `ingot dist-check` on the CPU: N ranks sum and gather over the TCP
# rendezvous, only rank 0's stdout comes out, a failing rank stops the group with exit 1 (no
# hang), bad arguments are errors. Usage: test_cli_launch.py INGOT_BINARY REPO_ROOT
import json
import os
import subprocess
import sys

ingot = sys.argv[1]
failures = 0
checks = 0
env = dict(os.environ, INGOT_DEVICE="cpu", INGOT_NUM_THREADS="1", INGOT_DIST_TIMEOUT="60")


def run(args):
    return subprocess.run([ingot, *args], capture_output=True, timeout=120, env=env)


def check(cond, what, r=None):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print("FAIL:", what)
        if r is not None:
            print("  rc:", r.returncode, "stdout:", r.stdout.decode(errors="replace")[-400:],
                  "stderr:", r.stderr.decode(errors="replace")[-600:])


for n in (1, 2, 3):
    r = run(["launch", "--nproc", str(n), "--", "dist-check"])
    lines = r.stdout.decode().strip().splitlines()
    check(r.returncode == 0 and len(lines) == 1, f"nproc {n}: one line from rank 0", r)
    if r.returncode == 0 and len(lines) == 1:
        out = json.loads(lines[0])
        tri = n * (n + 1) / 2
        check(out["world_size"] == n, f"nproc {n}: world size", r)
        check(out["sum_f32"] == [tri, 2 * tri, 3 * tri], f"nproc {n}: float32 sum", r)
        check(out["sum_bf16"] == [tri, 2 * tri, 3 * tri], f"nproc {n}: bfloat16 sum", r)
        check(out["ok"] is True and out["gathered_ranks"] == n, f"nproc {n}: gather", r)

# A rank that fails: the launcher names it, stops the others and exits 1; rank 1's stderr is
# forwarded with its prefix.
r = run(["launch", "--nproc", "3", "--", "dist-check", "--fail-rank", "1"])
err = r.stderr.decode()
check(r.returncode == 1, "failing rank: exit 1", r)
check("[rank 1] error: [dist-check] rank 1 fails on purpose" in err, "failing rank: its stderr", r)
check("error: [launch] " in err and "rank 1 (exit code 1)" in err, "failing rank: named", r)

# The timed all_sum reports its figures.
r = run(["launch", "--nproc", "2", "--", "dist-check", "--mb", "1", "--iters", "2"])
check(r.returncode == 0 and '"all_sum_ms"' in r.stdout.decode(), "timed all_sum", r)

# Usage and input errors.
r = run(["launch", "--nproc", "2"])
check(r.returncode == 2, "no command: usage error", r)
r = run(["launch", "--nproc", "0", "--", "dist-check"])
check(r.returncode == 1 and b"--nproc must be at least 1" in r.stderr, "nproc 0", r)
r = run(["launch", "--nproc", "2", "--", "no-such-command"])
check(r.returncode == 2 and b"unknown command" in r.stderr, "unknown subcommand: exit 2", r)
r = run(["launch", "--nproc", "2", "--nnodes", "2", "--", "dist-check"])
check(r.returncode == 1 and b"--master-port" in r.stderr, "several hosts need a port", r)
r = run(["launch", "--nproc", "2", "--", "launch", "--nproc", "2"])
check(r.returncode == 1 and b"cannot launch" in r.stderr, "no nested launch", r)

print(f"{checks - failures}/{checks} checks passed")
sys.exit(1 if failures else 0)
