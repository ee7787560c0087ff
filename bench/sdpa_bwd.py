# SPDX-License-Identifier: Apache-2.0
"""sdpa_bwd.py — the dense training baseline of issue 7: torch SDPA with the cuDNN backend,
causal, forward then backward, shape A of docs/design.md §6 (Hq=64 attending Hkv=4 groups,
Dk=192, Dv=128, bf16) or, with --shape B, Dk=Dv=128; B=1. CUDA events, 1 warm-up, median of --reps, L2 flushed (256 MB) before
each run. Prints CSV rows: kind,S,fwd_ms,bwd_ms,fwd_bwd_ms,peak_MB (torch's peak allocation).
"""
import argparse
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--S", default="2048,8192")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--shape", default="A", choices=["A", "B"])
    args = ap.parse_args()
    dk = 192 if args.shape == "A" else 128
    dev, bf = "cuda", torch.bfloat16
    flush = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
    print("kind,shape,S,fwd_ms,bwd_ms,fwd_bwd_ms,peak_MB")
    for S in [int(x) for x in args.S.split(",")]:
        q = torch.randn(1, 64, S, dk, device=dev, dtype=bf, requires_grad=True)
        k = torch.randn(1, 4, S, dk, device=dev, dtype=bf, requires_grad=True)
        v = torch.randn(1, 4, S, 128, device=dev, dtype=bf, requires_grad=True)
        do = torch.randn(1, 64, S, 128, device=dev, dtype=bf)
        e = [torch.cuda.Event(enable_timing=True) for _ in range(3)]
        fw, bw = [], []
        torch.cuda.reset_peak_memory_stats()
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            for i in range(1 + args.reps):
                flush.zero_()
                q.grad = k.grad = v.grad = None
                e[0].record()
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
                e[1].record()
                o.backward(do)
                e[2].record()
                e[2].synchronize()
                if i >= 1:
                    fw.append(e[0].elapsed_time(e[1]))
                    bw.append(e[1].elapsed_time(e[2]))
        f, b = statistics.median(fw), statistics.median(bw)
        mb = torch.cuda.max_memory_allocated() / 1e6
        print(f"sdpa_cudnn,{args.shape},{S},{f:.2f},{b:.2f},{f + b:.2f},{mb:.0f}", flush=True)
        del q, k, v, do, o
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
