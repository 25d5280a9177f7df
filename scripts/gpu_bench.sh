#!/usr/bin/env bash
# First GPU figures (device machine): random-weight checkpoints at published shapes (written by
# transformers), then `ingot generate` on CUDA: decode tok/s (32-token prompt + 256 new) and
# prefill/TTFT (512-token prompt, 1 new token), bf16. Usage: scripts/gpu_bench.sh WORKDIR
set -uo pipefail
work=${1:-/tmp/ingot-bench}
mkdir -p "$work"
ingot=build-gpu/tools/cli/ingot
python3 - "$work" <<'PY'
import os, sys, torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM
work = sys.argv[1]
torch.manual_seed(0)
shapes = {
    "llama-3.2-1b": (LlamaConfig, LlamaForCausalLM, dict(
        vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64, rope_theta=500000.0,
        tie_word_embeddings=True, max_position_embeddings=131072, rms_norm_eps=1e-5,
        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})),
    "qwen3-0.6b": (Qwen3Config, Qwen3ForCausalLM, dict(
        vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
        num_attention_heads=16, num_key_value_heads=8, head_dim=128, rope_theta=1000000.0,
        tie_word_embeddings=True, max_position_embeddings=40960, rms_norm_eps=1e-6)),
}
for name, (C, M, kw) in shapes.items():
    d = os.path.join(work, name)
    if os.path.exists(os.path.join(d, "config.json")):
        continue
    with torch.device("cuda"):
        m = M(C(**kw)).to(torch.bfloat16)
    m.save_pretrained(d)
    print("wrote", d, sum(p.numel() for p in m.parameters()) // 10**6, "M parameters")
PY
ids32=$(python3 -c "print(','.join(str(7 + 13 * i) for i in range(32)))")
ids512=$(python3 -c "print(','.join(str(7 + 13 * i) for i in range(512)))")
for m in llama-3.2-1b qwen3-0.6b; do
  echo "== $m decode (32-token prompt, 256 new, greedy)"
  timeout 120 $ingot generate --model "$work/$m" --device cuda --prompt-ids "$ids32" \
    --max-tokens 256 --ignore-eos --output ids >/dev/null 2>"$work/$m.decode.err"
  tail -2 "$work/$m.decode.err"
  echo "== $m prefill (512-token prompt, 1 new)"
  timeout 120 $ingot generate --model "$work/$m" --device cuda --prompt-ids "$ids512" \
    --max-tokens 1 --output ids >/dev/null 2>"$work/$m.prefill.err"
  tail -2 "$work/$m.prefill.err"
done
