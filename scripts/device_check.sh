#!/usr/bin/env bash
# The GPU machine's one-call check (run from the repository root on the device machine, with
# .devkit carried; see ../shared/device-kit): builds with CUDA, runs the CUDA consistency tests,
# the core/model/llm suites with the GPU as default device, compute-sanitizer memcheck over the
# consistency tests, then the extra steps named in $STEPS. Logs come back as $OUT/logs.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/ingot-out}
STEPS=${STEPS:-tests}  # any of: tests cpu extra fusedlora lora stack sanitizer bench core parity table decodesweep latencyprobe longdecode blockphases sdpagrad loraproj lorabench gpuutil profile ncu serverload servercollect embedded topics (in order)
LOG=/tmp/ingot-logs
mkdir -p "$OUT" "$LOG"
trap 'tar czf "$OUT/logs.tgz" -C "$LOG" . 2>/dev/null' EXIT
trap 'exit 143' TERM INT
t0=$(date +%s)
stamp() { echo "[device $(($(date +%s) - t0))s] $*"; }
# NOBUILD=1: a warm follow-up call that reuses build-gpu from the previous call (no .devkit,
# no SYNC, no configure or build; e.g. STEPS=serverload with .node carried instead).
if [ -z "${NOBUILD:-}" ]; then
  source .devkit/unpack.sh
  # .devkit-server (optional, ignored by git): Debian's cpp-httplib and what it links (libssl3,
  # libbrotli1, zlib, their -dev packages), so that the GPU build has `ingot serve`.
  if [ -d .devkit-server ] && [ ! -e /opt/ingot-deps/.server ]; then
    for f in .devkit-server/*.deb; do dpkg -x "$f" /opt/ingot-deps; done
    find /opt/ingot-deps -name '*.pc' -exec sed -i "s#^prefix=/usr\$#prefix=/opt/ingot-deps/usr#" {} +
    # zlib1g-dev's libz.so points at Debian's libz.so.1.2.13 by an absolute path
    ln -sf /lib/x86_64-linux-gnu/libz.so.1 /opt/ingot-deps/usr/lib/x86_64-linux-gnu/libz.so
    touch /opt/ingot-deps/.server
  fi
  # SYNC=1: build exactly the last commit packed by scripts/device_sync.sh (the copied tree's .git
  # is stale, so git cannot do this here): drop the untracked files, unpack with fresh mtimes.
  if [ -n "${SYNC:-}" ]; then
    [ -f .cache/head.tgz ] || { echo "SYNC=1 needs .cache/head.tgz (scripts/device_sync.sh)"; exit 1; }
    xargs -a .cache/untracked.txt rm -f
    tar xzmf .cache/head.tgz && echo "synced to the packed commit"
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$LOG/gpu.txt"
  stamp configure
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DINGOT_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DINGOT_WERROR=OFF -DINGOT_BENCH="${BENCH:-OFF}" \
    $INGOT_CMAKE_DEPS >"$LOG/configure.log" 2>&1 || { tail -30 "$LOG/configure.log"; exit 1; }
  stamp build
  # -k 0: one target that fails (a test file the device's newer headers reject) does not stop
  # the others; the steps go on when the ingot binary was built.
  # BUILD_TARGET (e.g. ingot): only that target (a profiling call that runs no test suite).
  if ! cmake --build build-gpu -j16 ${BUILD_TARGET:+--target $BUILD_TARGET} -- -k 0 >"$LOG/build.log" 2>&1; then
    grep -E "FAILED|error:" "$LOG/build.log" | head -40
    [ -x build-gpu/tools/cli/ingot ] || exit 1
    echo "BUILD FAILED for the targets above; going on with the rest"
  fi
  grep -c "warning" "$LOG/build.log" | xargs echo "build warnings:"
fi
run_ctest() {  # name, then ctest args
  local name=$1
  shift
  stamp "ctest $name"
  (cd build-gpu && ctest --timeout 120 --output-on-failure "$@") >"$LOG/$name.log" 2>&1
  grep -E "tests passed|tests failed|Total Test" "$LOG/$name.log"
  grep -E "^\s+[0-9]+ - .*\((Failed|SEGFAULT|Subprocess|Timeout|Exception)" "$LOG/$name.log" | head -40
}
if [[ " $STEPS " == *" tests "* ]]; then
  run_ctest cuda_tests -j 8 -L cuda
  # TESTS_MODELS=0: the CUDA suite only (a short re-check after a change below nn/models).
  [ "${TESTS_MODELS:-1}" = 0 ] || INGOT_DEVICE=cuda run_ctest models_llm_on_cuda -j 8 -L 'models|llm'
  # TESTS_REGEX: tests picked by name too (GPU as default device), e.g. a new model-level test.
  [ -z "${TESTS_REGEX:-}" ] || INGOT_DEVICE=cuda run_ctest selected_on_cuda -j 8 -R "$TESTS_REGEX"
fi
if [[ " $STEPS " == *" cpu "* ]]; then  # CPU suites (CPU default device), 16 cores here
  INGOT_DEVICE=cpu run_ctest cpu_suites -j 16 -L "${CPU_LABELS:-core|models|llm|nn|train}" \
    -E "${CPU_EXCLUDE:-^$}"
fi
if [[ " $STEPS " == *" extra "* ]]; then  # train, server and C ABI suites, GPU as default device
  INGOT_DEVICE=cuda run_ctest extra_on_cuda -j 8 -L "${EXTRA_LABELS:-train|server|capi|nn}" -E "${EXTRA_EXCLUDE:-^$}"
fi
if [[ " $STEPS " == *" fusedlora "* ]]; then  # fast::lora_branch off (the composition) and on everywhere
  INGOT_FUSED_LORA=0 INGOT_DEVICE=cuda run_ctest composed_lora_on_cuda -j 8 -L "${FUSED_LABELS:-train|nn}"
  INGOT_FUSED_LORA=1 run_ctest fused_lora_kernels -j 8 -R 'CudaFastLora|FastLora|LoraBranch|IdSet'
  stamp "CudaCompile x${COMPILE_REPEAT:-5}"
  build-gpu/tests/backend/backend_test_cuda_compile --gtest_repeat="${COMPILE_REPEAT:-5}" \
    >"$LOG/compile_repeat.log" 2>&1
  echo "CudaCompile repeat rc=$?"; grep -E "FAILED|PASSED" "$LOG/compile_repeat.log" | sort | uniq -c | head
fi
if [[ " $STEPS " == *" lora "* ]]; then  # PEFT references for tests/train (copy into tests/data/lora)
  stamp lora
  python3 scripts/lora_goldens.py --out "$OUT/lora" >"$LOG/lora.log" 2>&1
  echo "lora goldens rc=$?"; tail -5 "$LOG/lora.log"
fi
if [[ " $STEPS " == *" stack "* ]]; then  # a test that hangs: host stacks after STACK_WAIT s
  stamp "stack $STACK_TEST $STACK_FILTER"
  INGOT_TRACE_EVAL=1 CUDA_LAUNCH_BLOCKING=${STACK_BLOCKING:-1} INGOT_DEVICE=cuda "build-gpu/$STACK_TEST" \
    --gtest_filter="$STACK_FILTER" >"$LOG/stack_test.log" 2>&1 &
  pid=$!
  sleep "${STACK_WAIT:-25}"
  if kill -0 $pid 2>/dev/null; then
    if command -v gdb >/dev/null; then
      timeout 60 gdb -p $pid -batch -ex "thread apply all bt 30" >"$LOG/stack.txt" 2>&1
    else
      for t in /proc/$pid/task/*; do echo "== $t $(cat $t/comm) $(cat $t/wchan)"; cat $t/stack 2>/dev/null; done >"$LOG/stack.txt"
    fi
    kill -9 $pid
    echo "still running after ${STACK_WAIT:-25}s: stacks in stack.txt; last primitives:"
    grep -E "^#[0-9]+ " "$LOG/stack.txt" | head -40; tail -4 "$LOG/stack_test.log" | cut -c1-300
  else
    wait $pid; echo "finished rc=$?"; tail -5 "$LOG/stack_test.log"
  fi
fi
if [[ " $STEPS " == *" sanitizer "* ]]; then
  stamp compute-sanitizer
  # One process per test binary, 6 at a time (memcheck slows kernels ~10-100x).
  # SANITIZER_FILTER: a regex of test binaries to check (default: all of backend_test_cuda_*).
  find build-gpu/tests/backend -maxdepth 1 -name "backend_test_cuda_*" -type f -executable |
    grep -E "${SANITIZER_FILTER:-.}" | xargs -P 6 -I{} bash -c '
    t={}; n=$(basename "$t")
    timeout ${SANITIZER_TIMEOUT:-500} compute-sanitizer --tool memcheck --leak-check no --report-api-errors no --error-exitcode 9 "$t" \
      >"'"$LOG"'/memcheck_$n.log" 2>&1
    echo "memcheck $n: rc=$? $(grep -c "Invalid" "'"$LOG"'/memcheck_$n.log") invalid accesses, $(grep -cE "^\[ +OK" "'"$LOG"'/memcheck_$n.log") tests ok"'
fi
if [[ " $STEPS " == *" bench "* ]]; then
  stamp bench
  bash scripts/gpu_bench.sh /tmp/ingot-bench 2>&1 | tee "$LOG/bench.txt" | tail -30
fi
if [[ " $STEPS " == *" core "* ]]; then  # the CPU-referenced core suite, GPU as default device
  INGOT_DEVICE=cuda run_ctest core_on_cuda -j 8 -L core
fi
if [[ " $STEPS " == *" parity "* ]]; then
  stamp parity
  PYTHONUNBUFFERED=1 python3 scripts/parity_real_shapes.py --ingot build-gpu/tools/cli/ingot \
    --out "$OUT" --ingot-device cuda --budget "${PARITY_BUDGET:-200}" --runs "${PARITY_RUNS:-bf16_fast,f32_fast}" \
    >"$LOG/parity.log" 2>&1
  echo "parity rc=$?"; tail -5 "$LOG/parity.log"
fi
if [[ " $STEPS " == *" table "* ]]; then  # issue 10's side-by-side table (tokenizers: .cache)
  stamp table
  tok=""
  if [ -f .cache/tok.tgz ]; then mkdir -p /tmp/tok && tar xzf .cache/tok.tgz -C /tmp/tok && tok=/tmp/tok; fi
  PYTHONUNBUFFERED=1 timeout "${TABLE_BUDGET:-420}" python3 scripts/gpu_bench_table.py \
    --ingot build-gpu/tools/cli/ingot --out "$OUT" --tokenizers "$tok" ${TABLE_ARGS:-} \
    2>&1 | tee "$LOG/table.log" | tail -40
  if [ -n "${TABLE_ALT_ENV:-}" ]; then  # the same rows again under other settings, e.g. INGOT_CUDA_PDL=0
    env $TABLE_ALT_ENV PYTHONUNBUFFERED=1 timeout 200 python3 scripts/gpu_bench_table.py \
      --ingot build-gpu/tools/cli/ingot --out "$OUT/alt" --skip-hf --tokenizers "$tok" \
      ${TABLE_ARGS:-} 2>&1 | tee "$LOG/table_alt.log" | tail -12
  fi
  if [ -n "${TABLE_ALT2_ENV:-}" ]; then  # a second set of other settings
    env $TABLE_ALT2_ENV PYTHONUNBUFFERED=1 timeout 200 python3 scripts/gpu_bench_table.py \
      --ingot build-gpu/tools/cli/ingot --out "$OUT/alt2" --skip-hf --tokenizers "$tok" \
      ${TABLE_ARGS:-} 2>&1 | tee "$LOG/table_alt2.log" | tail -12
  fi
  if [ -n "${TABLE_NOGRAPH:-}" ]; then  # the same rows with CUDA graphs off (INGOT_CUDA_GRAPHS=0)
    INGOT_CUDA_GRAPHS=0 PYTHONUNBUFFERED=1 timeout 200 python3 scripts/gpu_bench_table.py \
      --ingot build-gpu/tools/cli/ingot --out "$OUT/nograph" --skip-hf --tokenizers "$tok" \
      ${TABLE_ARGS:-} 2>&1 | tee "$LOG/table_nograph.log" | tail -12
  fi
fi
if [[ " $STEPS " == *" decodesweep "* ]]; then  # decode b1 under several settings, rounds interleaved
  # (after "table": its checkpoints). SWEEP_ENVS: ';'-separated sets of VAR=value ("-": none);
  # SWEEP_MODELS, SWEEP_ROUNDS, SWEEP_ARGS (ingot bench decode options).
  stamp decodesweep
  IFS=';' read -ra sweep_sets <<<"${SWEEP_ENVS:--;INGOT_DECODE_FUSED_KV=0}"
  for round in $(seq "${SWEEP_ROUNDS:-2}"); do
    for m in ${SWEEP_MODELS:-qwen3-0.6b llama-3.2-1b gemma3-1b}; do
      for e in "${sweep_sets[@]}"; do
        [ "$e" = "-" ] && e=""
        r=$(env $e timeout 120 build-gpu/tools/cli/ingot bench decode --model /tmp/ingot-bench-table/$m \
          --device cuda ${SWEEP_ARGS:---len 32 --new 256 --repeat 3} 2>>"$LOG/decodesweep.err" | tail -1)
        echo "round $round $m [${e:-default}]: $(echo "$r" | grep -oE '"decode_tok_s": *[0-9.]+')"
      done
    done
  done | tee "$LOG/decodesweep.txt"
fi
if [[ " $STEPS " == *" latencyprobe "* ]]; then  # what chains of launches cost (needs no ingot
  # build: NOBUILD=1 STEPS=latencyprobe); bench/cuda/probe_decode_latency.cu
  stamp latencyprobe
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$LOG/gpu.txt"
  "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" -O3 -std=c++17 -arch=sm_90 bench/cuda/probe_decode_latency.cu -o /tmp/probe_decode_latency \
    >"$LOG/latencyprobe_build.log" 2>&1 || { cat "$LOG/latencyprobe_build.log"; exit 1; }
  timeout 240 /tmp/probe_decode_latency 2>&1 | tee "$LOG/latencyprobe.txt" "$OUT/latencyprobe.txt"
fi
if [[ " $STEPS " == *" longdecode "* ]]; then  # decode attention at long contexts, per kernel
  # (after "table": its Llama checkpoint). LONG_CONFIGS: batch:prompt pairs; LONG_ENVS: the
  # settings compared, e.g. the split kernel (default) against INGOT_CUDA_DECODE_KERNEL=1.
  stamp longdecode
  for cfg in ${LONG_CONFIGS:-1:4096 1:16384 16:4096 64:2048}; do
    IFS=: read -r b l <<<"$cfg"
    for e in ${LONG_ENVS:-INGOT_CUDA_DECODE_KERNEL=0 INGOT_CUDA_DECODE_KERNEL=1}; do
      r=$(env "$e" timeout 120 build-gpu/tools/cli/ingot bench decode --model /tmp/ingot-bench-table/llama-3.2-1b \
        --device cuda --batch "$b" --len "$l" --new 64 --repeat 2 2>"$LOG/longdecode.err" | tail -1)
      echo "b$b len$l $e: $(echo "$r" | grep -oE '"decode_tok_s": *[0-9.]+')"
    done
  done | tee "$LOG/longdecode.txt"
fi
if [[ " $STEPS " == *" blockphases "* ]]; then  # the decode block's phases timed by differences
  # (after "table": its checkpoints). INGOT_DECODE_BLOCK_PHASES=N stops the kernel after N of its
  # five phases (A qkv, B attention, C o, D GLU, E down); "off" is the separate kernels.
  stamp blockphases
  for m in ${BLOCK_MODELS:-llama-3.2-1b qwen3-0.6b}; do
    for ph in off 1 2 3 4 5; do
      if [ "$ph" = off ]; then e="INGOT_DECODE_BLOCK=0"; else e="INGOT_DECODE_BLOCK=1 INGOT_DECODE_BLOCK_PHASES=$ph"; fi
      r=$(env $e timeout 120 build-gpu/tools/cli/ingot bench decode --model /tmp/ingot-bench-table/$m \
        --device cuda --len 32 --new 256 --repeat 3 2>"$LOG/blockphases.err" | tail -1)
      echo "$m phases=$ph: $(echo "$r" | grep -oE '"decode_tok_s": *[0-9.]+')"
    done
  done | tee "$LOG/blockphases.txt"
fi
if [[ " $STEPS " == *" sdpagrad "* ]]; then  # attention backward kernels next to PyTorch's (BENCH=ON)
  stamp sdpagrad
  build-gpu/bench/ingot_bench_sdpa_grad 2>&1 | tee "$LOG/sdpagrad.txt"
  python3 scripts/sdpa_grad_torch.py 2>&1 | tee -a "$LOG/sdpagrad.txt" | tail -5
fi
if [[ " $STEPS " == *" loraproj "* ]]; then  # LoRA project kernel, SIMT vs tensor cores (BENCH=ON)
  stamp loraproj
  build-gpu/bench/ingot_bench_lora_project 2>&1 | tee "$LOG/loraproj.txt"
fi
if [[ " $STEPS " == *" lorabench "* ]]; then  # issue 11's LoRA training speed, ingot next to PEFT
  stamp lorabench
  # LORA_BENCH_STEPS timed steps (after 2 warm-up steps) per run; 3 models x 2 modes x 2 sides.
  # Runs not started within LORA_BENCH_BUDGET seconds are skipped; the table is still printed.
  lb_budget=${LORA_BENCH_BUDGET:-150}
  PYTHONUNBUFFERED=1 timeout $((lb_budget + 90)) python3 scripts/lora_bench.py \
    --ingot build-gpu/tools/cli/ingot --out "$OUT" --steps "${LORA_BENCH_STEPS:-3}" \
    --budget "$lb_budget" ${LORA_BENCH_ARGS:-} >"$LOG/lorabench.log" 2>&1
  echo "lorabench rc=$?"
  if [ -f "$OUT/lora_bench.md" ]; then cat "$OUT/lora_bench.md"; else tail -30 "$LOG/lorabench.log"; fi
  # LORA_BENCH_ALT_ENV="VAR=value ...": the ingot side again under those settings (into
  # $OUT/alt), e.g. INGOT_FUSED_LORA=0 or INGOT_FUSED_NORM_GRAD=0 for an A/B on one card;
  # several sets separated by ';' run one after another (into $OUT/alt, $OUT/alt2, ...).
  if [ -n "${LORA_BENCH_ALT_ENV:-}" ]; then
    IFS=';' read -ra alt_sets <<<"$LORA_BENCH_ALT_ENV"
    n=0
    for alt in "${alt_sets[@]}"; do
      n=$((n + 1))
      dir="$OUT/alt$([ $n -gt 1 ] && echo $n)"
      mkdir -p "$dir"
      env $alt PYTHONUNBUFFERED=1 timeout $((lb_budget + 90)) python3 scripts/lora_bench.py \
        --ingot build-gpu/tools/cli/ingot --out "$dir" --steps "${LORA_BENCH_STEPS:-3}" \
        --budget "$lb_budget" --sides ingot ${LORA_BENCH_ARGS:-} >"$LOG/lorabench_alt$n.log" 2>&1
      echo "lorabench ($alt) rc=$?"
      if [ -f "$dir/lora_bench.md" ]; then cat "$dir/lora_bench.md"; else tail -30 "$LOG/lorabench_alt$n.log"; fi
    done
  fi
fi
if [[ " $STEPS " == *" gpuutil "* ]]; then  # is a LoRA step GPU-bound? nvidia-smi's busy share while it runs
  stamp gpuutil
  for m in ${PROFILE_MODELS:-llama-3.2-1b}; do
    nvidia-smi --query-gpu=timestamp,utilization.gpu --format=csv,noheader,nounits -lms 100 \
      >"$LOG/util-$m.csv" 2>&1 &
    smi=$!
    build-gpu/tools/cli/ingot bench lora --batch 8 --len 512 --steps ${GPUUTIL_STEPS:-40} \
      --warmup-steps 3 --model "/tmp/ingot-bench-table/$m" --device cuda >"$LOG/util-bench-$m.txt" 2>&1
    kill $smi 2>/dev/null
    grep -o '"step_ms":[0-9.]*' "$LOG/util-bench-$m.txt"
    # the last samples cover the timed steps (the process ends right after them)
    echo "$m utilization.gpu, last 30 samples (100 ms apart): $(tail -30 "$LOG/util-$m.csv" | cut -d, -f2 | tr -d ' ' | tr '\n' ' ')"
  done
fi
if [[ " $STEPS " == *" profile "* ]]; then  # kernel times of a run (after "table")
  stamp profile
  # PROFILE_TASK: decode (b1, default), classify (512 x 64), prefill (64 x 512) or lora (8 x 512).
  case "${PROFILE_TASK:-decode}" in
    classify) pargs="bench classify --texts 512 --len 64" ;;
    prefill) pargs="bench prefill --batch 64 --len 512" ;;
    lora) pargs="bench lora --batch 8 --len 512 --steps 1 --warmup-steps 1" ;;
    *) pargs="bench decode --batch 1 --len 32 --new 64" ;;
  esac
  # PROFILE_ENV="VAR=value ...": settings for the profiled run only (e.g. opt-in kernels).
  for m in ${PROFILE_MODELS:-qwen3-0.6b}; do
    env ${PROFILE_ENV:-} python3 scripts/gpu_kernel_profile.py ${PROFILE_ARGS:-} --out "$OUT/profile-$m" -- build-gpu/tools/cli/ingot \
      $pargs --model "/tmp/ingot-bench-table/$m" --device cuda \
      2>&1 | tee "$LOG/profile-$m.txt" | head -${PROFILE_LINES:-30}
  done
fi
if [[ " $STEPS " == *" ncu "* ]]; then  # ncu sections of chosen kernels of a LoRA step
  # NCU_KERNELS: space-separated name regexes, one ncu run each (NCU_COUNT launches of it).
  # NCU_TASK=decode: of a single-stream decode run instead (`bench decode --len 32 --new 16`,
  # the table step's checkpoint; e.g. NCU_MODEL=gemma3-1b NCU_KERNELS="gemv_kernel").
  stamp ncu
  nm=${NCU_MODEL:-llama-3.2-1b}
  md=/tmp/ingot-bench-table/$nm
  [ -d "$md" ] || python3 scripts/lora_bench.py --ingot build-gpu/tools/cli/ingot --out /tmp/ncu-lb \
    --models "$nm" --modes plain --sides ingot --steps 1 --warmup 0 >"$LOG/ncu_model.log" 2>&1
  ncu_graph=()
  if [ "${NCU_TASK:-lora}" = decode ]; then  # the decode step's kernels are graph nodes
    ncu_cmd=(bench decode --model "$md" --batch 1 --len 32 --new 16 --device cuda)
    ncu_graph=(--graph-profiling node)
  else
    ncu_cmd=(bench lora --model "$md" --batch 8 --len 512 --steps 1 --warmup-steps 0 --device cuda)
  fi
  # NCU_ENVS: ';'-separated sets of VAR=value for the profiled run ("-": none), one pass each.
  IFS=';' read -ra ncu_sets <<<"${NCU_ENVS:--}"
  for e in "${ncu_sets[@]}"; do
    [ "$e" = "-" ] && e=""
    for k in ${NCU_KERNELS:-project_kernel}; do
      f="$LOG/ncu-$k${e:+-$(echo "$e" | tr -c 'A-Za-z0-9=_\n' '_')}.txt"
      echo "ncu $k [${e:-default}]"
      env $e ncu --clock-control none "${ncu_graph[@]}" --kernel-name "regex:$k" --launch-skip "${NCU_SKIP:-0}" \
        --launch-count "${NCU_COUNT:-2}" --section SpeedOfLight --section Occupancy \
        --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
        build-gpu/tools/cli/ingot "${ncu_cmd[@]}" >"$f" 2>&1
      grep -E "^  [a-zA-Z_].*\(|Duration|Memory Throughput|DRAM Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per|Block Limit (Reg|Shared)|Compute \(SM\) Throughput|Warp Cycles Per Issued|Grid Size|Block Size|Stall|OPT|Bank" \
        "$f" | head -"${NCU_LINES:-60}"
    done
  done
fi
if [[ " $STEPS " == *" serverload "* ]]; then  # issue 13: `ingot serve` on the GPU under load
  # Node is not on the device image: carry .node/node.xz (xz of the build machine's node 20
  # binary). The model is the table step's random-weight checkpoint with its real tokenizer
  # (run "table" with .cache/tok.tgz first, in this call or a warm earlier one). A batch-1 run
  # (one client), then SERVER_CLIENTS streaming clients for SERVER_SECONDS with disconnects and
  # malformed requests (scripts/server_load.mjs); the JSON reports come back in the logs.
  # SERVER_ARGS must not repeat --max-batch (the script passes it: the server refuses a second).
  # SERVER_BG=1 (a run longer than one call, e.g. the issue's 10 minutes): the runs go on in
  # their own process session; this call checks after SERVER_BG_CHECK seconds that both started
  # (stops them and fails if not), and a warm follow-up call with STEPS=servercollect waits
  # for the end and brings the reports back.
  stamp serverload
  xz -dc .node/node.xz >/tmp/node && chmod +x /tmp/node || { echo "no .node/node.xz"; exit 1; }
  sm=/tmp/ingot-bench-table/${SERVER_MODEL:-llama-3.2-1b}
  [ -d "$sm" ] || { echo "no checkpoint $sm: run the table step first"; exit 1; }
  rm -f "$LOG/serverload.done"
  cat >/tmp/serverload.sh <<EOS
/tmp/node scripts/server_load.mjs --ingot build-gpu/tools/cli/ingot --model "$sm" \
  --server-args "--device ${SERVER_DEVICE:-cuda} ${SERVER_ARGS:-}" --clients 1 --seconds "${SERVER_B1_SECONDS:-30}" \
  --warmup 5 --max-tokens "${SERVER_MAX_TOKENS:-64}" >"$LOG/server_b1.json" 2>"$LOG/server_b1.err"
echo "batch 1 rc=\$?" >"$LOG/serverload.status"
/tmp/node scripts/server_load.mjs --ingot build-gpu/tools/cli/ingot --model "$sm" \
  --server-args "--device ${SERVER_DEVICE:-cuda} ${SERVER_ARGS:-}" --clients "${SERVER_CLIENTS:-64}" \
  --seconds "${SERVER_SECONDS:-120}" --warmup "${SERVER_WARMUP:-30}" --sample 10 \
  --max-tokens "${SERVER_MAX_TOKENS:-64}" --max-rss-change 5 >"$LOG/server_load.json" 2>"$LOG/server_load.err"
echo "load rc=\$?" >>"$LOG/serverload.status"
touch "$LOG/serverload.done"
EOS
  if [ -n "${SERVER_BG:-}" ]; then
    setsid nohup bash /tmp/serverload.sh >/dev/null 2>&1 </dev/null &
    # Both runs must be under way before this call ends: the batch-1 run, then the load run.
    sleep "${SERVER_BG_CHECK:-$((${SERVER_B1_SECONDS:-30} + 25))}"
    cat "$LOG/serverload.status" 2>/dev/null
    if ! grep -q "batch 1 rc=0" "$LOG/serverload.status" 2>/dev/null || [ -e "$LOG/serverload.done" ]; then
      echo "serverload did not start: stopping it"; pkill -f server_load.mjs; pkill -f "ingot serve"
      head -c 2000 "$LOG/server_b1.err"; head -c 2000 "$LOG/server_load.err"; exit 1
    fi
    echo "serverload running in the background: collect it with STEPS=servercollect (warm call)"
  else
    bash /tmp/serverload.sh
  fi
fi
if [[ " $STEPS " == *" serverload "* && -z "${SERVER_BG:-}" ]] || [[ " $STEPS " == *" servercollect "* ]]; then
  stamp servercollect
  while [ ! -e "$LOG/serverload.done" ]; do sleep 5; done
  cat "$LOG/serverload.status"
  grep -E '"tokens_per_s_after_warmup"|"p50"' "$LOG/server_b1.json" | tr -d ' \n'; echo
  grep -vE '^\s+\{ "t"|"t":|"rss":|"alloc|"malloc|"kv' "$LOG/server_load.json" | head -60
fi
if [[ " $STEPS " == *" embedded "* ]]; then  # issue 15: pretrain the embedded model (scripts/embedded_model.sh)
  # .cache/emb.tgz: data/ and tok/ made here by the data and tokenizer stages. EMB_VARIANTS:
  # name:layers:lr:epochs runs trained side by side on the GPU; the lowest final validation loss
  # gets the topic adapter and the transformers/tokenizers/PEFT check. Results: $OUT/emb/.
  stamp embedded
  W=/tmp/emb && mkdir -p "$W" "$OUT/emb" && tar xzf .cache/emb.tgz -C "$W"
  for v in ${EMB_VARIANTS:-a:6:2e-3:30}; do
    IFS=: read -r name layers lr epochs <<<"$v"
    python3 -c 'import json,sys; c=json.load(open("scripts/embedded_config.json")); c["num_hidden_layers"]=int(sys.argv[1]); print(json.dumps(c, indent=2))' \
      "$layers" >"$W/config_$name.json"
    INGOT=build-gpu/tools/cli/ingot WORK=$W MODEL=$W/model_$name CONFIG=$W/config_$name.json LR=$lr \
      EPOCHS=$epochs timeout "${EMB_BUDGET:-300}" bash scripts/embedded_model.sh pretrain \
      >"$LOG/emb_$name.log" 2>&1 &
  done
  wait
  best=$(python3 -c '
import json, glob, os
best = None
for d in sorted(glob.glob("/tmp/emb/model_*")):
    vals = [json.loads(l)["val_loss"] for l in open(d + "/loss.jsonl") if "val_loss" in l]
    ok = os.path.exists(d + "/model.safetensors")
    print(d, "val", vals[-3:], "complete" if ok else "INCOMPLETE", file=__import__("sys").stderr)
    if ok and vals and (best is None or vals[-1] < best[0]): best = (vals[-1], d)
print(best[1] if best else "")')
  for f in "$LOG"/emb_*.log; do echo "== $f"; grep -E "^train|val_loss" "$f" | tail -4; done
  if [ -n "$best" ]; then
    echo "best: $best"
    INGOT=build-gpu/tools/cli/ingot WORK=$W MODEL=$best bash scripts/embedded_model.sh adapter check \
      >"$LOG/emb_adapter_check.log" 2>&1
    echo "adapter+check rc=$?"; grep -E "topic adapter|tokenizer:|logits |embedded check|Error|error" "$LOG/emb_adapter_check.log" | head -20
    cp -r "$W"/model_* "$W/topics" "$W/check.json" "$W"/config_*.json "$OUT/emb/" 2>/dev/null
    rm -rf "$OUT"/emb/model_*/checkpoint-*
  fi
fi
if [[ " $STEPS " == *" topics "* ]]; then  # issue 15: topic adapters for models/ingot-tiny, side by side
  # TOPIC_VARIANTS: name:epochs:lr:rank:dropout; each trains on the GPU at the same time; the
  # adapters and their validation accuracy come back in $OUT/topics.tgz.
  stamp topics
  for v in ${TOPIC_VARIANTS:-a:12:1e-3:8:0.1}; do
    IFS=: read -r name epochs lr rank dropout <<<"$v"
    INGOT=build-gpu/tools/cli/ingot WORK=/tmp/topics/$name MODEL=models/ingot-tiny DEVICE=cuda \
      ADAPTER_EPOCHS=$epochs ADAPTER_LR=$lr ADAPTER_RANK=$rank ADAPTER_DROPOUT=$dropout \
      timeout "${TOPIC_BUDGET:-200}" bash scripts/embedded_model.sh adapter >"$LOG/topics_$name.log" 2>&1 &
  done
  wait
  for f in "$LOG"/topics_*.log; do echo "$(basename "$f"): $(grep -E "topic adapter|demo sentences|val_loss" "$f" | tail -3 | tr '\n' ' ')"; done
  (cd /tmp/topics && tar czf "$OUT/topics.tgz" */topics/adapter_* */topics/loss.jsonl)
fi
stamp done
