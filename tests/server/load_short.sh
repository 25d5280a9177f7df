#!/usr/bin/env bash
# A short bounded run of scripts/server_load.mjs (16 streaming clients for 15 s with random
# disconnects and malformed requests): fails on a crash, a 5xx, or a valid request unanswered or
# refused. Exits 77 (ctest: skipped) without Node 18+ (it needs the built-in fetch).
# Usage: tests/server/load_short.sh INGOT_BIN MODEL_DIR
set -euo pipefail
INGOT=${1:?usage: load_short.sh INGOT_BIN MODEL_DIR}
MODEL=${2:?}
if ! command -v node >/dev/null ||
    ! node -e 'process.exit(typeof fetch === "function" ? 0 : 1)' 2>/dev/null; then
  echo "load_short: SKIP (node 18+ not installed)"
  exit 77
fi
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
exec node "$ROOT/scripts/server_load.mjs" --ingot "$INGOT" --model "$MODEL" --clients 16 \
  --seconds 15 --warmup 5 --max-tokens 16 --max-batch 16
