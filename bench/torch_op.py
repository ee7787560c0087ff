# SPDX-License-Identifier: Apache-2.0
"""torch_op.py — issue 17's benchmark, for one call on nvidia-h100-x1 (not run yet: written in a
session without a GPU). Three parts, each printing CSV rows `part,config,impl,T,metric,value`:
  op     nsa.parallel_nsa against fla's parallel_nsa (the fla-core wheel), forward + backward,
         T = 16k and 64k, fla's native config: l = d = lp = 64 (block_size), shared K/V,
         block_counts 16, window 512; B 1, HQ 64, H 4 (G 16), K = V = 128, bf16. The outputs
         are compared first (max abs difference against an f32 reference of ours, each side's
         error printed: "same outputs up to rounding" = both near their bf16 rounding).
  model  the long training config of bench/RESULTS.md (12 L, dim 1024, 16 q / 1 kv heads,
         hd 64, ffn 2816, B 1 × T 32768, NSA l=32 d=16 lp=64 n=16 w=512) as nsa.NSALM with
         attention = nsa.NSAttention | fla's parallel_nsa | dense cuDNN SDPA: tokens/s of a
         training step (forward, backward, AdamW) and peak memory (torch.cuda.max_memory_
         allocated plus libnsa's own pools as cudaMemGetInfo sees them).
  overhead  the Python layer over the C call at T = 1024 (target <= 10 µs): nsa.attention with
         nsa_forward swapped for a C function that returns at once, minus that stub's own
         call (time.perf_counter over 2,000 calls); on CUDA also the real call end to end.
CUDA events, 3 warm-ups, median of --reps, L2 flushed (sdpa_baseline.timed). Run: python3 bench/torch_op.py [--parts op,model,
overhead] > bench/results/torch_op.csv; needs `pip install ./python` and `pip install fla-core`
(whose parallel_nsa also wants flash-attn for the window: without it the fla rows print nan).
"""
import argparse
import ctypes
import sys
import time

import torch
import torch.nn.functional as F

import nsa
from nsa import _lib as L
from sdpa_baseline import timed as sdpa_timed  # bench/ is on sys.path when run as a script

_flush = None


def timed(fn, reps):
    """sdpa_baseline.timed (CUDA events, 3 warm-ups, median, L2 flushed before each run)."""
    global _flush
    if _flush is None:
        _flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    return sdpa_timed(fn, reps, _flush)


def row(*f):
    print(",".join(str(x) for x in f), flush=True)


def fla_op():
    try:
        from fla.ops.nsa import parallel_nsa
        return parallel_nsa
    except Exception as e:  # not installed, or its Triton/flash-attn imports fail
        print(f"# fla unavailable: {e}", file=sys.stderr)
        return None


def part_op(reps):
    fla = fla_op()
    B, HQ, H, K = 1, 64, 4, 128
    for T in (16384, 65536):
        g = torch.Generator(device="cuda").manual_seed(T)
        mk = lambda *s: torch.randn(*s, device="cuda", generator=g, dtype=torch.bfloat16)  # noqa
        q, k, v = mk(B, T, HQ, K), mk(B, T, H, K), mk(B, T, H, K)
        gates = [torch.rand(B, T, HQ, device="cuda", generator=g).bfloat16() for _ in range(3)]
        kw = dict(block_counts=16, block_size=64, window_size=512)
        impls = [("nsa", nsa.parallel_nsa)] + ([("fla", fla)] if fla else [])
        ref = nsa.parallel_nsa(q.float(), k.float(), v.float(), *[x.float() for x in gates], **kw)
        for name, fn in impls:
            o = fn(q, k, v, *gates, **kw)
            row("op", "fla-native", name, T, "max_abs_err_vs_nsa_f32",
                (o.float() - ref).abs().max().item())
            leaves = [x.clone().requires_grad_() for x in (q, k, v, *gates)]
            dout = torch.randn_like(o)

            def step():
                for x in leaves:
                    x.grad = None
                fn(*leaves, **kw).backward(dout)
            row("op", "fla-native", name, T, "fwd_ms", timed(lambda: fn(q, k, v, *gates, **kw),
                                                             reps))
            row("op", "fla-native", name, T, "fwd_bwd_ms", timed(step, reps))
        del q, k, v, gates, ref
        torch.cuda.empty_cache()


class FlaAttention(torch.nn.Module):
    """nsa.NSAttention's projections and gates around fla's parallel_nsa (shared K/V: the
    sel branch's; fla has one block size, so l = d = lp = 64 there: its native config)."""

    def __init__(self, inner, fla):
        super().__init__()
        self.inner, self.fla = inner, fla

    def forward(self, x):
        a = self.inner
        B, T, _ = x.shape
        q, ks, vs, g = a.project(x)
        o = self.fla(q, ks[1], vs[1], g[..., 0], g[..., 1], g[..., 2], block_counts=a.cfg.n,
                     block_size=64, window_size=a.cfg.w)
        return a.wo(o.reshape(B, T, -1))


class SdpaAttention(torch.nn.Module):
    """Dense causal attention (cuDNN SDPA) with the same q/k/v projections (sel branch's k/v)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        from torch.nn.attention import SDPBackend, sdpa_kernel
        a = self.inner
        B, T, _ = x.shape
        q, ks, vs, _ = a.project(x)
        rep = a.Hq // a.Hkv
        k = ks[1].repeat_interleave(rep, 2)
        v = vs[1].repeat_interleave(rep, 2)
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION]):
            o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                               v.transpose(1, 2), is_causal=True)
        return a.wo(o.transpose(1, 2).reshape(B, T, -1))


def part_model(reps):
    cfg = dict(layers=12, dim=1024, heads=16, kv_heads=1, ffn=2816, l=32, d=16, lp=64, n=16,
               w=512)
    T = 32768
    fla = fla_op()
    for impl in ["nsa"] + (["fla"] if fla else []) + ["sdpa"]:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        model = nsa.NSALM(**cfg).cuda()
        for blk in model.layers:
            if impl == "fla":
                blk.attn = FlaAttention(blk.attn, fla)
            elif impl == "sdpa":
                blk.attn = SdpaAttention(blk.attn)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        x = torch.randint(0, 256, (1, T + 1), device="cuda")

        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(x[:, :-1])
            loss = F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        ms = timed(step, reps)
        free, total = torch.cuda.mem_get_info()
        row("model", "long", impl, T, "tokens_per_s", T / ms * 1e3)
        row("model", "long", impl, T, "step_ms", ms)
        row("model", "long", impl, T, "peak_allocated_gib",
            torch.cuda.max_memory_allocated() / 2**30)
        row("model", "long", impl, T, "device_used_gib", (total - free) / 2**30)
        del model, opt


def part_overhead(n=2000):
    """Python layer over the C call at T = 1024: nsa.attention with libnsa's nsa_forward swapped
    for a C function that returns at once (nsa_context_set_stream on the same context, then
    reset), minus that stub's own ctypes call. On CUDA also the real call, end to end."""
    for dev in (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]:
        B, T, Hq, Hkv, D = 1, 1024, 16, 1, 64
        dt = torch.bfloat16 if dev == "cuda" else torch.float32
        q = torch.randn(B, T, Hq, D, device=dev, dtype=dt)
        k, v = (torch.randn(B, T, Hkv, D, device=dev, dtype=dt) for _ in range(2))
        g = torch.rand(B, T, Hq, 3, device=dev, dtype=dt)
        cfg = nsa.Config()
        out = nsa.attention(q, k, v, g, cfg)  # builds the cached arguments
        ctx = L.context_for(-1 if dev == "cpu" else 0)
        b = list(ctx.cache.values())[-1]
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

        def per_call(fn, m):
            sync()
            t = time.perf_counter()
            for _ in range(m):
                fn()
            sync()
            return (time.perf_counter() - t) / m * 1e6
        real = L.lib.nsa_forward
        stub = L.lib.nsa_context_set_stream
        L.lib.nsa_forward = stub
        try:
            stub_us = per_call(lambda: stub(ctx.h, ctypes.byref(b.args)), n)
            op_us = per_call(lambda: nsa.attention(q, k, v, g, cfg), n)
        finally:
            L.lib.nsa_forward = real
            stub(ctx.h, None)
            ctx.stream = None
        row("overhead", f"T{T}", dev, T, "python_overhead_us", op_us - stub_us)
        if dev == "cuda":
            c_us = per_call(lambda: real(ctx.h, ctypes.byref(b.args)), 50)
            row("overhead", f"T{T}", dev, T, "c_call_us", c_us)
            row("overhead", f"T{T}", dev, T, "op_call_us",
                per_call(lambda: nsa.attention(q, k, v, g, cfg), 50))
        del out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="op,model,overhead")
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    row("part", "config", "impl", "T", "metric", "value")
    parts = a.parts.split(",")
    if "overhead" in parts:
        part_overhead()
    if not torch.cuda.is_available():
        print("# no CUDA device: op and model parts skipped", file=sys.stderr)
        return
    if "op" in parts:
        part_op(a.reps)
    if "model" in parts:
        part_model(a.reps)


if __name__ == "__main__":
    main()
