# SPDX-License-Identifier: Apache-2.0
"""sdpa_baseline.py — dense causal attention through torch SDPA, cuDNN and FLASH backends, on the
shapes of docs/design.md §6 (A: Hq=64 Hkv=4 Dk=192 Dv=128; B: Dk=Dv=128), B=1, bf16, forward.
CUDA events, 3 warm-ups, median of --reps runs, L2 flushed (256 MB) before each run. Prints CSV
rows like bench_forward: kind,shape,S,roles,step,ms,tflop,tflops,pct_peak (peak: torch bf16
GEMM 8192^3 measured here). A backend that refuses a shape prints a row with ms = nan.
"""
import argparse
import statistics
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
import torch.nn.functional as F


def timed(fn, reps, flush):
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    out = []
    for i in range(3 + reps):
        flush.zero_()
        torch.cuda.synchronize()
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        if i >= 3:
            out.append(e0.elapsed_time(e1))
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="AB")
    ap.add_argument("--S", default="8192,16384,32768,65536")
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    dev = "cuda"
    print(f"# torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, "
          f"{torch.cuda.get_device_name()}", file=sys.stderr)
    flush = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    gms = timed(lambda: a @ b, 10, flush)
    peak = 2 * 8192**3 / (gms * 1e-3) / 1e12
    print("kind,shape,S,roles,step,ms,tflop,tflops,pct_peak")
    print(f"gemm,-,8192,torch_bf16,gemm,{gms:.3f},0,{peak:.1f},100.0")
    del a, b
    for shape in args.shapes:
        dk, dv = (192, 128) if shape == "A" else (128, 128)
        for S in [int(x) for x in args.S.split(",")]:
            hq, hkv = 64, 4
            q = torch.randn(1, hq, S, dk, device=dev, dtype=torch.bfloat16)
            k = torch.randn(1, hkv, S, dk, device=dev, dtype=torch.bfloat16)
            v = torch.randn(1, hkv, S, dv, device=dev, dtype=torch.bfloat16)
            # QK and PV, causal half (docs/design.md §6)
            tflop = 2 * (S * S / 2) * hq * (dk + dv) / 1e12
            for name, be in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)):
                ms = float("nan")
                for gqa in (True, False):
                    try:
                        kk, vv = (k, v) if gqa else (k.repeat_interleave(hq // hkv, 1), v.repeat_interleave(hq // hkv, 1))
                        kw = {"enable_gqa": True} if gqa else {}
                        with sdpa_kernel(be):
                            fn = lambda: F.scaled_dot_product_attention(q, kk, vv, is_causal=True, **kw)
                            fn()
                            ms = timed(fn, args.reps, flush)
                        break
                    except RuntimeError:
                        continue
                tf = tflop / (ms * 1e-3) if ms == ms else float("nan")
                print(f"sdpa,{shape},{S},{name},total,{ms:.3f},{tflop:.3f},{tf:.1f},{100 * tf / peak:.1f}", flush=True)
            del q, k, v
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
