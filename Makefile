# Front door: `make test` and `make run` work on a fresh Debian 12 machine (they install what is
# missing first). BUILD_DIR, JOBS and CMAKE_ARGS can be overridden.
BUILD_DIR ?= build
ASAN_DIR ?= build-asan
JOBS ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all deps configure build test test-asan test-capi-asan test-gpu run bench format clean

all: build

deps:
	@bash scripts/install_deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 600

# The sanitizer build (test-asan and test-capi-asan share it): -O1 and line tables only (-g1),
# as AddressSanitizer's documentation suggests; enough for symbolized reports, and its compile
# takes about half the time of RelWithDebInfo's -O2 -g (CI's cost).
ASAN_CONFIG := -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" \
  "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" -DINGOT_SANITIZE=address,undefined \
  -DINGOT_BENCH=OFF -DINGOT_CUDA=OFF

# Core tests under AddressSanitizer + UndefinedBehaviorSanitizer (used by CI).
test-asan: deps
	@cmake -S . -B $(ASAN_DIR) $(ASAN_CONFIG) $(CMAKE_ARGS) >/dev/null
	@cmake --build $(ASAN_DIR) -j $(JOBS) --target ingot_core_tests
	@cd $(ASAN_DIR) && ctest --output-on-failure -j $(JOBS) -L core --timeout 900

# The C API's C tests and the GoogleTest cases comparing it with the C++ API (capi_test_vs_cpp,
# ctest names Capi*.*) under ASan + UBSan with LeakSanitizer (used by CI); shares $(ASAN_DIR)
# with test-asan (its core objects are reused) and adds the LLM layers and libingot.so.
test-capi-asan: deps
	@cmake -S . -B $(ASAN_DIR) $(ASAN_CONFIG) $(CMAKE_ARGS) >/dev/null
	@cmake --build $(ASAN_DIR) -j $(JOBS) --target capi_c_test capi_lora_c_test capi_lora_resume_c_test \
	  capi_cache_c_test capi_test_vs_cpp
	@cd $(ASAN_DIR) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS) \
	  -R '^(capi_(c|lora_c|lora_resume_c|cache_c)_test|Capi[A-Za-z]*\..*)$$' --timeout 900

# On a machine with an NVIDIA GPU: the CUDA backend's tests (every family against the CPU), then
# the model, llm and core suites with the GPU as the default device.
GPU_DIR ?= build-gpu
test-gpu:
	@cmake -S . -B $(GPU_DIR) -DCMAKE_BUILD_TYPE=Release -DINGOT_CUDA=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build $(GPU_DIR) -j $(JOBS)
	@cd $(GPU_DIR) && ctest --output-on-failure -j $(JOBS) -L cuda --timeout 600
	@cd $(GPU_DIR) && INGOT_DEVICE=cuda ctest --output-on-failure -j 4 -L 'models|llm' --timeout 600

# The embedded model (models/ingot-tiny: a 7M-parameter Llama that ingot trained on Debian's
# fortunes, docs/embedded-model.md): generation, topic classification with its LoRA adapter
# (models/ingot-tiny-topics) and scoring, each with its metrics; then the array-core demo and a
# look at the checkpoint.
TINY := models/ingot-tiny
INGOT := $(BUILD_DIR)/tools/cli/ingot
run: build
	@echo "== ingot generate: the embedded model continues two prompts (greedy) =="
	@for p in "Once upon a time" "The meaning of life is"; do \
	  printf '%s' "$$p"; $(INGOT) generate --model $(TINY) --prompt "$$p" --max-tokens 48 2>$(BUILD_DIR)/run-generate.log \
	    || { cat $(BUILD_DIR)/run-generate.log; exit 1; }; echo; cat $(BUILD_DIR)/run-generate.log; done
	@echo; echo "== ingot classify: topics of new sentences, with the model's LoRA adapter =="
	@$(INGOT) classify --model $(TINY) --adapter models/ingot-tiny-topics --labels " food, sports, weather, computers" --template models/data/topics_template.txt --with-text --metrics < models/data/topics_demo.jsonl
	@echo; echo "== ingot score: log-probability of two continuations =="
	@printf '%s\n' '{"prompt": "Early to bed and early to rise makes a man", "continuation": " healthy, wealthy and wise"}' '{"prompt": "Early to bed and early to rise makes a man", "continuation": " keyboard, river and purple"}' | $(INGOT) score --model $(TINY)
	@echo; echo "== ingot demo: the array core (lazy arrays, autodiff, compile) =="
	@$(INGOT) demo
	@echo; echo "== ingot inspect =="
	@$(INGOT) inspect --model $(TINY)

bench: build
	@$(BUILD_DIR)/bench/ingot_bench_core

format:
	@find src tests bench tools fuzz -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' | xargs clang-format -i

clean:
	@rm -rf $(BUILD_DIR) $(ASAN_DIR)
