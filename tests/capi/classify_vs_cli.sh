#!/bin/sh
# Go binding vs CLI classify rate (BENCHMARKS.md, "Go binding vs the CLI: classify"): the same
# model, JSONL input, template and labels through `ingot classify` and through the Go example
# bindings/go/examples/classify (Model.ClassifyTexts), alternating, ROUNDS times each. Each run
# is a whole process (read JSONL, load, classify, write JSONL); prompts/s = lines / wall time.
#   tests/capi/classify_vs_cli.sh BUILD_DIR [MODEL_DIR] [LINES] [ROUNDS]
set -eu
build=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
model=${2:-$root/tests/data/models/llama_bf16_tied}
lines=${3:-20000}
rounds=${4:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$lines" > "$tmp/in.jsonl" <<'PY'
import json, random, sys
random.seed(7)
words = ("the quantum protein election football match parliament molecule team striker "
         "senate vote goal enzyme cell league minister orbit coach ballot").split()
for _ in range(int(sys.argv[1])):
    print(json.dumps({"text": " ".join(random.choice(words) for _ in range(random.randint(6, 24)))}))
PY
printf 'Sentence: {text}\nDomain:' > "$tmp/tmpl.txt"
labels=' science, sports, politics'
(cd "$root/bindings/go" && CGO_CFLAGS="-I$root/include" \
  CGO_LDFLAGS="-L$build/lib -Wl,-rpath,$build/lib" GOCACHE="$build/go/cache" \
  GOPATH="$build/go/path" GOPROXY=off GOFLAGS= go build -o "$tmp/classify_go" ./examples/classify)
# One process, timed: wall seconds and CPU seconds (user + sys of the process and its threads).
timed() {
  python3 - "$@" <<'PY'
import os, resource, subprocess, sys, time
out, args = sys.argv[1], sys.argv[2:]
r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
t0 = time.monotonic()
with open(os.environ["IN"]) as fin, open(out, "w") as fout:
    subprocess.run(args, stdin=fin, stdout=fout, check=True)
t1 = time.monotonic()
r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{t1 - t0},{(r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)}")
PY
}
export IN="$tmp/in.jsonl"
: > "$tmp/rates"
for r in $(seq "$rounds"); do
  cli=$(timed "$tmp/cli.jsonl" "$build/tools/cli/ingot" classify --model "$model" --device cpu \
    --labels "$labels" --template "$tmp/tmpl.txt")
  go=$(timed "$tmp/go.jsonl" "$tmp/classify_go" -model "$model" -device cpu -labels "$labels" \
    -template "$(cat "$tmp/tmpl.txt")")
  echo "$cli,$go" >> "$tmp/rates"
  python3 -c "
c, cc, g, gc = $cli, $go
n = $lines
print(f'round $r: wall prompts/s cli {n/c:.0f} go {n/g:.0f} (go/cli {c/g:.3f}); '
      f'per CPU-second cli {n/cc:.0f} go {n/gc:.0f} (go/cli {cc/gc:.3f}); load {open(\"/proc/loadavg\").read().split()[0]}')"
done
python3 - "$tmp/rates" "$lines" <<'PY'
import statistics, sys
rows = [list(map(float, l.split(","))) for l in open(sys.argv[1])]
n = int(sys.argv[2])
med = lambda k: statistics.median(r[k] for r in rows)
print(f"median of {len(rows)}: wall cli {n/med(0):.0f} go {n/med(2):.0f} prompts/s (go/cli {med(0)/med(2):.3f}); "
      f"per CPU-second cli {n/med(1):.0f} go {n/med(3):.0f} (go/cli {med(1)/med(3):.3f}); "
      f"best wall cli {n/min(r[0] for r in rows):.0f} go {n/min(r[2] for r in rows):.0f} "
      f"(go/cli {min(r[0] for r in rows)/min(r[2] for r in rows):.3f})")
PY
# Same labels chosen by both paths (probabilities printed with different float formatting).
python3 - "$tmp/cli.jsonl" "$tmp/go.jsonl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b), (len(a), len(b))
worst = max(abs(x["probs"][k] - y["probs"][k]) for x, y in zip(a, b) for k in x["probs"])
same = sum(x["label"] == y["label"] for x, y in zip(a, b))
print(f"{len(a)} lines: same label on {same}, largest probability difference {worst:.2e}")
PY
