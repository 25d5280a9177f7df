#!/usr/bin/env python3
"""PyTorch's attention backward on the shapes of bench/cuda/bench_sdpa_grad.cpp (bf16, causal,
batch 8 x 512): torch.nn.functional.scaled_dot_product_attention with enable_gqa, the backward
pass alone (forward kept, retain_graph), median of 20 after 3 warm-ups, on the same card in the
same run as ingot's kernels. Prints one markdown row a shape."""
import math
import statistics

import torch
import torch.nn.functional as F

SHAPES = [("llama-3.2-1b", 8, 32, 8, 512, 64), ("qwen3-0.6b", 8, 16, 8, 512, 128),
          ("gemma3-1b", 8, 4, 1, 512, 256)]


def main():
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    print("| shape | torch backward ms | TFLOP/s | backend |\n|---|---|---|---|")
    for name, b, h, hkv, l, d in SHAPES:
        q = torch.randn(b, h, l, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn(b, hkv, l, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        v = torch.randn(b, hkv, l, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True,
                                             scale=1 / math.sqrt(d))
        g = torch.randn_like(out)
        backend = str(out.grad_fn.name())
        ms = []
        for i in range(23):
            a, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            torch.autograd.grad(out, (q, k, v), g, retain_graph=True)
            e.record()
            torch.cuda.synchronize()
            if i >= 3:
                ms.append(a.elapsed_time(e))
        t = statistics.median(ms)
        flop = 2.5 * 4.0 * b * h * l * l * d / 2
        print(f"| {name} {b}x{l} (H {h}, Hkv {hkv}, D {d}) | {t:.3f} | {flop / t / 1e9:.0f} | "
              f"{backend} |")


if __name__ == "__main__":
    main()
