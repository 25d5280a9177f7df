#!/usr/bin/env bash
# Runs openai_e2e.mjs: installs the pinned `openai` and `ajv` npm packages into NODE_PREFIX
# (cached) and drives `ingot serve` with them. Exits 77 (ctest: skipped) without node / npm or
# when the registry is unreachable.
# Usage: tests/server/openai_e2e.sh INGOT_BIN MODEL_DIR NODE_PREFIX
set -euo pipefail
INGOT=${1:?usage: openai_e2e.sh INGOT_BIN MODEL_DIR NODE_PREFIX}
MODEL=${2:?}
PREFIX=${3:?}
OPENAI_VERSION=4.95.0
AJV_VERSION=8.17.1
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "openai_e2e: SKIP (node / npm not installed)"
  exit 77
fi
mkdir -p "$PREFIX"
PREFIX=$(cd "$PREFIX" && pwd)
INGOT=$(realpath "$INGOT")
MODEL=$(realpath "$MODEL")
have() {  # installed version of package $1 == $2
  [[ -f "$PREFIX/node_modules/$1/package.json" ]] &&
    node -e "process.exit(require('$PREFIX/node_modules/$1/package.json').version === '$2' ? 0 : 1)"
}
if ! have openai "$OPENAI_VERSION" || ! have ajv "$AJV_VERSION"; then
  exec 9>"$PREFIX/.lock"
  flock 9
  if ! timeout 300 npm install --silent --no-audit --no-fund --prefix "$PREFIX" \
      "openai@$OPENAI_VERSION" "ajv@$AJV_VERSION" >/dev/null 2>&1; then
    echo "openai_e2e: SKIP (npm could not install openai@$OPENAI_VERSION ajv@$AJV_VERSION)"
    exit 77
  fi
fi
exec node "$(dirname "$0")/openai_e2e.mjs" "$INGOT" "$MODEL" "$PREFIX"
