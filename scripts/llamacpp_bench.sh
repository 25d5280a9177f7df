#!/usr/bin/env bash
# CPU comparison with llama.cpp (issue 14): ingot bf16 / 8-bit / 4-bit against llama.cpp bf16 /
# q8_0 / q4_0 on random-weight checkpoints at the Qwen3-0.6B and Llama-3.2-1B shapes, 1 and 2
# threads, each configuration of both engines back to back.
#
#   scripts/llamacpp_bench.sh install   # npm: node-llama-cpp (prebuilt llama.cpp) in $LLAMACPP_DIR
#   scripts/llamacpp_bench.sh models    # random checkpoints + GGUF files + ingot quantize 8/4-bit
#   scripts/llamacpp_bench.sh check     # same model? greedy tokens / logits of both engines
#   scripts/llamacpp_bench.sh run       # the measurements -> $LLAMACPP_DIR/results.jsonl
#   scripts/llamacpp_bench.sh table     # the Markdown table of results.jsonl
#
# Environment: INGOT (the ingot binary, default build-lcpp/tools/cli/ingot), LLAMACPP_DIR
# (default /tmp/llamacpp: npm install, models and results; keep it outside the repository),
# MODELS ("qwen3-0.6b llama-3.2-1b"), THREADS ("1 2"), FORMATS ("bf16 q8 q4"), ROUNDS (1), ORDER
# (table: the whole table once per round; cell: each cell's rounds back to back),
# PP (128), TG (64), PROMPT (16), REPEAT (3, at least 2), GROUP (64: ingot's quantization
# group size).
#
# Wall time is the figure; on a shared machine CPU time is recorded too (1 thread): llama.cpp's
# per phase by the driver, ingot's as differences of whole-command CPU times (prefill:
# --repeat R against --repeat 1, per prefill; decode: --new TG against --new 8, per token).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
export LLAMACPP_DIR="${LLAMACPP_DIR:-/tmp/llamacpp}"
INGOT="${INGOT:-$ROOT/build-lcpp/tools/cli/ingot}"
MODELS="${MODELS:-qwen3-0.6b llama-3.2-1b}"
THREADS="${THREADS:-1 2}"
FORMATS="${FORMATS:-bf16 q8 q4}"
ROUNDS="${ROUNDS:-1}"
ORDER="${ORDER:-table}"
PP="${PP:-128}" TG="${TG:-64}" PROMPT="${PROMPT:-16}" REPEAT="${REPEAT:-3}" GROUP="${GROUP:-64}"
NLC_VERSION="${NLC_VERSION:-3.22.1}"
M="$LLAMACPP_DIR/models"
RESULTS="${RESULTS:-$LLAMACPP_DIR/results.jsonl}"

case "$LLAMACPP_DIR/" in
  "$ROOT"/*) echo "LLAMACPP_DIR must be outside the repository" >&2; exit 2 ;;
esac

ingot_dir() {  # model, format -> checkpoint directory
  case "$2" in
    bf16) echo "$M/$1/bf16" ;;
    q8) echo "$M/$1/ingot-q8-g$GROUP" ;;
    q4) echo "$M/$1/ingot-q4-g$GROUP" ;;
  esac
}
gguf_file() {
  case "$2" in bf16) echo "$M/$1/bf16.gguf" ;; q8) echo "$M/$1/q8_0.gguf" ;; q4) echo "$M/$1/q4_0.gguf" ;; esac
}

cmd_install() {
  mkdir -p "$LLAMACPP_DIR"
  cd "$LLAMACPP_DIR"
  [ -f package.json ] || npm init -y >/dev/null
  npm install "node-llama-cpp@$NLC_VERSION"
  git bundle list-heads node_modules/node-llama-cpp/llama/gitRelease.bundle 2>/dev/null || true
  cat node_modules/node-llama-cpp/llama/llama.cpp.info.json
}

cmd_models() {
  for m in $MODELS; do
    python3 "$HERE/llamacpp_models.py" --model "$m" --out "$M"
    for b in 8 4; do
      d="$(ingot_dir "$m" "q$b")"
      [ -f "$d/config.json" ] && continue
      "$INGOT" quantize --model "$M/$m/bf16" --bits "$b" --group-size "$GROUP" --out "$d"
    done
  done
}

node_bench() { node "$HERE/llamacpp_bench.mjs" "$@"; }

# ingot with THREADS threads; its user + system CPU seconds go to FILE, stdout passes through
ingot_cpu() {
  local t="$1" file="$2"
  shift 2
  INGOT_NUM_THREADS=$t OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t \
    /usr/bin/time -f "%U %S" -o "$file.raw" "$INGOT" "$@"
  awk '{ print $1 + $2 }' "$file.raw" > "$file"
}

cmd_check() {
  python3 "$HERE/llamacpp_check.py" --ingot "$INGOT" --bench "$HERE/llamacpp_bench.mjs" \
    --models "$M" "$@"
}

cmd_run() {
  mkdir -p "$(dirname "$RESULTS")"
  local cpu; cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  # The cells in run order: ORDER=table runs the whole table once per round; ORDER=cell runs
  # each cell's rounds back to back (the engines alternating), so that a cell's ratios come from
  # one stretch of the machine's (noisy) memory rate.
  local cells=() round m t f
  if [ "$ORDER" = cell ]; then
    for m in $MODELS; do for t in $THREADS; do for f in $FORMATS; do for round in $(seq "$ROUNDS"); do
      cells+=("$round $m $t $f")
    done; done; done; done
  else
    for round in $(seq "$ROUNDS"); do for m in $MODELS; do for t in $THREADS; do for f in $FORMATS; do
      cells+=("$round $m $t $f")
    done; done; done; done
  fi
  local cell
  for cell in "${cells[@]}"; do
    read -r round m t f <<<"$cell"
    local tag="\"round\":$round,\"model\":\"$m\",\"format\":\"$f\",\"threads\":$t"
    tag="$tag,\"cpu\":\"$cpu\",\"load\":\"$(cut -d' ' -f1-3 /proc/loadavg)\""
    local d; d="$(ingot_dir "$m" "$f")"
    local p; p=$(ingot_cpu "$t" "$LLAMACPP_DIR"/cpu_p3 bench prefill --model "$d" --len "$PP" \
      --repeat "$REPEAT")
    local g; g=$(ingot_cpu "$t" "$LLAMACPP_DIR"/cpu_g bench decode --model "$d" --len "$PROMPT" \
      --new "$TG" --repeat "$REPEAT")
    if [ "$t" = 1 ]; then  # CPU seconds per prefill / per token from run differences
      ingot_cpu 1 "$LLAMACPP_DIR"/cpu_p1 bench prefill --model "$d" --len "$PP" --repeat 1 >/dev/null
      ingot_cpu 1 "$LLAMACPP_DIR"/cpu_g8 bench decode --model "$d" --len "$PROMPT" --new 8 \
        --repeat "$REPEAT" >/dev/null
      local cp cg
      cp=$(awk -v a="$(cat "$LLAMACPP_DIR"/cpu_p3)" -v b="$(cat "$LLAMACPP_DIR"/cpu_p1)" -v r="$REPEAT" \
        'BEGIN { print (a - b) / (r - 1) }')
      cg=$(awk -v a="$(cat "$LLAMACPP_DIR"/cpu_g)" -v b="$(cat "$LLAMACPP_DIR"/cpu_g8)" -v r="$REPEAT" \
        -v n="$TG" 'BEGIN { print (a - b) / (r * (n - 8)) }')
      p="${p%\}},\"cpu_seconds\":$cp}"
      g="${g%\}},\"cpu_seconds_per_token\":$cg}"
    fi
    echo "{$tag,\"engine\":\"ingot\",\"prefill\":$p,\"decode\":$g}" | tee -a "$RESULTS"
    local l; l=$(node_bench bench --model "$(gguf_file "$m" "$f")" --threads "$t" \
      --pp "$PP" --tg "$TG" --prompt "$PROMPT" --repeat "$REPEAT")
    echo "{$tag,\"engine\":\"llama.cpp\",\"result\":$l}" | tee -a "$RESULTS"
  done
}

cmd_table() { python3 "$HERE/llamacpp_table.py" "$RESULTS" "$@"; }

case "${1:-}" in
  install) cmd_install ;;
  models) cmd_models ;;
  check) shift; cmd_check "$@" ;;
  run) cmd_run ;;
  table) shift; cmd_table "$@" ;;
  *) sed -n 2,16p "$0"; exit 2 ;;
esac
