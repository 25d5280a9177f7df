#!/usr/bin/env bash
# Bounded libFuzzer runs for CI: builds the fuzz targets with clang into build-fuzz/ and runs each
# from a fresh copy of its seed corpus with a fixed seed (FUZZ_SEED, default 1) for at most
# FUZZ_RUNS inputs (default: per target, below) or FUZZ_SECONDS seconds, whichever comes first.
# With a fixed seed the run is reproducible, so a clean local run of the full count means CI (which
# may stop earlier on a slower machine) explores a prefix of the same inputs. For exploration, pass
# FUZZ_SEED=0 (random) and a large FUZZ_SECONDS/FUZZ_RUNS. Exit != 0 on a crash.
# Usage: scripts/run_fuzz.sh [TARGET...]   (default: every target: tokenizer_load tokenizer_encode
# tokenizer_template tokenizer_cache bpe_train safetensors gguf config prompt_cache adapter_config server_request). Seeds also come from fuzz/corpus/<target>/ when present.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${FUZZ_SECONDS:-20}
SEED=${FUZZ_SEED:-1}
# A smaller ASan quarantine: long runs otherwise hit the RSS limit with freed memory alone.
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=64}
declare -A RUNS=([tokenizer_load]=150000 [tokenizer_encode]=1500 [tokenizer_template]=50000 [tokenizer_cache]=50000 [bpe_train]=1500
  [safetensors]=150000 [gguf]=100000 [config]=150000 [prompt_cache]=10000 [adapter_config]=150000 [server_request]=40000)
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
JOBS=${FUZZ_JOBS:-2}
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(tokenizer_load tokenizer_encode tokenizer_template tokenizer_cache bpe_train safetensors gguf config prompt_cache adapter_config server_request)

CC=${CC_FUZZ:-clang} CXX=${CXX_FUZZ:-clang++} cmake -S . -B "$BUILD" -DINGOT_FUZZ=ON \
  -DINGOT_TESTS=OFF -DINGOT_BENCH=OFF -DINGOT_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" \
  "-DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -Wno-unknown-warning-option" \
  >/dev/null
# (libraries get coverage instrumentation + ASan/UBSan too, so the fuzzer sees inside them; -O1
# with line tables only, as for the ASan tests: half the compile time of -O2 -g)
cmake --build "$BUILD" -j"$JOBS" --target "${targets[@]/#/fuzz_}"

corpus_root="$BUILD/fuzz_corpus"
seed() {  # seed corpora from committed data (copied: libFuzzer writes into the first dir)
  local t=$1 dir="$corpus_root/$1"
  rm -rf "$dir" && mkdir -p "$dir"
  if [[ -d fuzz/corpus/$t ]]; then cp fuzz/corpus/"$t"/* "$dir"/; fi
  case $t in
    tokenizer_encode)
      python3 - "$dir" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
for i, line in enumerate(open("tests/data/tokenizer/corpus.jsonl", encoding="utf-8")):
    c = json.loads(line)
    b = bytes.fromhex(c["bytes_hex"]) if "bytes_hex" in c else c["text"].encode()
    (out / f"seed{i}").write_bytes(b[:4096])
PY
      ;;
    bpe_train)  # texts of the tokenizer corpus, a leading byte picking vocab size/min frequency
      python3 - "$dir" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
for i, line in enumerate(open("tests/data/tokenizer/corpus.jsonl", encoding="utf-8")):
    c = json.loads(line)
    b = bytes.fromhex(c["bytes_hex"]) if "bytes_hex" in c else c["text"].encode()
    (out / f"seed{i}").write_bytes(bytes([i * 37 % 256]) + b[:4000])
PY
      ;;
    tokenizer_template)
      python3 - "$dir" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
for i, c in enumerate(json.load(open("tests/data/tokenizer/jinja/features.json", encoding="utf-8"))):
    (out / f"feat{i}").write_bytes(c["template"].encode() + b"\0" + json.dumps(c["context"]).encode())
PY
      ;;
    tokenizer_cache)  # valid cache payloads (and whole files) the target writes itself
      INGOT_FUZZ_SEED_DIR="$dir" "$BUILD/fuzz/fuzz_tokenizer_cache" -runs=0 "$dir" >/dev/null 2>&1 || true
      ;;
    prompt_cache)
      INGOT_FUZZ_SEED_DIR="$dir" "$BUILD/fuzz/fuzz_prompt_cache" -runs=0 "$dir" >/dev/null 2>&1 || true
      ;;
    tokenizer_load)
      printf '%s' '{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]},"pre_tokenizer":{"type":"ByteLevel"},"decoder":{"type":"ByteLevel"},"normalizer":{"type":"NFC"}}' >"$dir/seed0"
      ;;
  esac
}

for t in "${targets[@]}"; do
  seed "$t"
  runs=${FUZZ_RUNS:-${RUNS[$t]}}
  echo "== fuzz_$t: seed $SEED, $runs runs or ${SECONDS_PER_TARGET}s"
  log="$BUILD/fuzz_$t.log"
  if ! "$BUILD/fuzz/fuzz_$t" -seed="$SEED" -runs="$runs" -max_total_time="$SECONDS_PER_TARGET" \
      -max_len=8192 -timeout=10 -artifact_prefix="$BUILD/" \
      -rss_limit_mb=2048 -print_final_stats=1 "$corpus_root/$t" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz_$t failed (crash input saved as $BUILD/crash-*; log $log)" >&2
    exit 1
  fi
  tail -n 12 "$log"
done
echo "fuzz: all targets ran clean"
