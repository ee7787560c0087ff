# SPDX-License-Identifier: Apache-2.0
"""sdpa_decode.py — the dense decode baseline of issue 7: torch SDPA with the cuDNN backend, one
query token per sequence, shape A of docs/design.md §6 (Hq=64 attending Hkv=4 groups, Dk=192,
Dv=128, bf16), batch B, S keys. CUDA events, 3 warm-ups, median of --reps runs, L2 flushed
(256 MB) before each run. Prints CSV rows: kind,B,S,us,bytes_MB,TBps (bytes = B·Hkv·S·(Dk+Dv)·2,
the K/V a dense step must read). A backend that refuses a shape prints us = nan and why.
"""
import argparse
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def timed(fn, reps, flush):
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    out = []
    for i in range(3 + reps):
        flush.zero_()
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        if i >= 3:
            out.append(e0.elapsed_time(e1))
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--B", default="1,16,64")
    ap.add_argument("--S", default="8192,16384,32768,65536")
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    dev, bf = "cuda", torch.bfloat16
    flush = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
    print("kind,B,S,us,bytes_MB,TBps")
    for B in [int(x) for x in args.B.split(",")]:
        for S in [int(x) for x in args.S.split(",")]:
            q = torch.randn(B, 64, 1, 192, device=dev, dtype=bf)
            k = torch.randn(B, 4, S, 192, device=dev, dtype=bf)
            v = torch.randn(B, 4, S, 128, device=dev, dtype=bf)
            mb = B * 4 * S * (192 + 128) * 2 / 1e6
            try:
                with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                    fn = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
                    fn()
                    us = timed(fn, args.reps, flush) * 1e3
                print(f"sdpa_cudnn,{B},{S},{us:.1f},{mb:.1f},{mb / us:.3f}", flush=True)
            except RuntimeError as e:
                print(f"sdpa_cudnn,{B},{S},nan,{mb:.1f},nan  # {str(e).splitlines()[0][:120]}",
                      flush=True)
            del q, k, v
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
