#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# torch_train.py — the PyTorch baseline of bench_train's models (issue 18): byte vocabulary,
# RMSNorm, RoPE (adjacent pairs, base 10000), SwiGLU, GQA with dense causal SDPA (the cuDNN
# backend requested through torch.nn.attention.sdpa_kernel), fused AdamW with clipping at 1.0,
# bf16 autocast over fp32 weights; eager or torch.compile. The short and long configs are
# bench_train.c's (layers, width, heads, FFN, B, T); the attention is dense, not NSA.
# Prints bench_train's CSV (config,backend,B,T,tok_per_s,...,mfu,peak_mib): the step time is the
# median over --steps after --warmup with one CUDA sync per step; the part times come from extra
# steps synced after each part. MFU counts this model's own matmul weights (6·P per token, the
# attention's FLOPs not counted, as bench_train). Not a test; it checks only a finite loss.
# usage: python3 bench/torch_train.py --config short|long [--mode eager|compile]
#        python3 bench/torch_train.py --tiny --device cpu      (the CPU smoke run)
import argparse
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# bench_train.c's configs (layers, dim, q heads, kv heads, SwiGLU width, batch, tokens), and a
# tiny one for the CPU smoke run (smaller than bench_train's tiny: the CPU takes seconds a step)
CONFIGS = {
    "short": dict(layers=12, dim=768, heads=12, kv_heads=2, ffn=2048, B=8, T=2048),
    "long": dict(layers=12, dim=1024, heads=16, kv_heads=1, ffn=2816, B=1, T=32768),
    "tiny": dict(layers=2, dim=64, heads=4, kv_heads=2, ffn=128, B=2, T=128),  # CPU smoke size
}
BACKENDS = ("cudnn", "flash", "efficient", "math")


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):  # lm/layers.c's RMS_EPS
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return y.type_as(x) * self.weight


def rope(x, cos, sin):
    """x (B, T, H, D) rotated in adjacent pairs (x[2i], x[2i+1]) as lm_rope does."""
    x2 = x.float().unflatten(-1, (-1, 2))
    x0, x1 = x2[..., 0], x2[..., 1]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), -1).flatten(-2).type_as(x)


class Block(nn.Module):
    def __init__(self, c, gqa):
        super().__init__()
        C, Hq, Hkv, Fh = c["dim"], c["heads"], c["kv_heads"], c["ffn"]
        self.Hq, self.Hkv, self.D, self.gqa = Hq, Hkv, C // Hq, gqa
        self.ln1, self.ln2 = RMSNorm(C), RMSNorm(C)
        self.wq = nn.Linear(C, Hq * self.D, bias=False)
        self.wk = nn.Linear(C, Hkv * self.D, bias=False)
        self.wv = nn.Linear(C, Hkv * self.D, bias=False)
        self.wo = nn.Linear(Hq * self.D, C, bias=False)
        self.w1 = nn.Linear(C, Fh, bias=False)
        self.w3 = nn.Linear(C, Fh, bias=False)
        self.w2 = nn.Linear(Fh, C, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        h = self.ln1(x)
        q = rope(self.wq(h).view(B, T, self.Hq, self.D), cos, sin).transpose(1, 2)
        k = rope(self.wk(h).view(B, T, self.Hkv, self.D), cos, sin).transpose(1, 2)
        v = self.wv(h).view(B, T, self.Hkv, self.D).transpose(1, 2)
        if self.gqa == "expand" and self.Hkv != self.Hq:
            k = k.repeat_interleave(self.Hq // self.Hkv, dim=1)
            v = v.repeat_interleave(self.Hq // self.Hkv, dim=1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           enable_gqa=self.gqa == "native")
        x = x + self.wo(o.transpose(1, 2).reshape(B, T, self.Hq * self.D))
        h = self.ln2(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class Model(nn.Module):
    def __init__(self, c, gqa):
        super().__init__()
        self.emb = nn.Embedding(256, c["dim"])
        self.blocks = nn.ModuleList(Block(c, gqa) for _ in range(c["layers"]))
        self.lnf = RMSNorm(c["dim"])
        self.head = nn.Linear(c["dim"], 256, bias=False)
        D = c["dim"] // c["heads"]
        inv = 10000.0 ** (-torch.arange(0, D, 2, dtype=torch.float32) / D)
        ang = torch.arange(c["T"], dtype=torch.float32)[:, None] * inv[None]
        self.register_buffer("cos", ang.cos(), persistent=False)
        self.register_buffer("sin", ang.sin(), persistent=False)
        for n, p in self.named_parameters():  # lm/model.c's init: N(0, 0.02), outputs scaled
            if p.dim() == 2:
                s = 0.02 / math.sqrt(2 * c["layers"]) if n.endswith(("wo.weight", "w2.weight")) \
                    else 0.02
                nn.init.normal_(p, 0.0, s)

    def forward(self, x, y):
        h = self.emb(x)
        for b in self.blocks:
            h = b(h, self.cos, self.sin)
        logits = self.head(self.lnf(h))
        return F.cross_entropy(logits.float().view(-1, 256), y.view(-1))


def matmul_params(c):
    """6·P per token: every 2-D weight but the embedding (bench_train.c's P for this model)."""
    C, D = c["dim"], c["dim"] // c["heads"]
    per = 2 * C * c["heads"] * D + 2 * C * c["kv_heads"] * D + 3 * C * c["ffn"]
    return per * c["layers"] + 256 * C


def sdpa_ctx(backend):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    b = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
         "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}[backend]
    return sdpa_kernel([b])


def probe(backend, gqa, c, dev):
    """One small SDPA forward and backward with this backend and GQA handling; the error or None."""
    Hq, Hkv, D = c["heads"], c["kv_heads"], c["dim"] // c["heads"]
    rep = Hq // Hkv if gqa == "expand" else 1
    try:
        q = torch.randn(1, Hq, 256, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn(1, Hkv, 256, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
        v = torch.randn(1, Hkv, 256, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
        with sdpa_ctx(backend):
            o = F.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1),
                                               v.repeat_interleave(rep, 1), is_causal=True,
                                               enable_gqa=gqa == "native")
            o.sum().backward()
        return None
    except (RuntimeError, NotImplementedError) as e:
        return str(e).splitlines()[0][:160]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="short")
    ap.add_argument("--tiny", action="store_true", help="--config tiny (the CPU smoke run)")
    ap.add_argument("--mode", choices=("eager", "compile"), default="eager")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sdpa", choices=BACKENDS, default=None,
                    help="SDPA backend (default: cudnn on CUDA, math on the CPU)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--part_steps", type=int, default=3, help="steps synced after each part")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--peak_tflops", type=float, default=989.0, help="bf16 dense peak (H100)")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    name = "tiny" if a.tiny else a.config
    c = CONFIGS[name]
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if a.steps < 1 or a.warmup < 0 or a.part_steps < 0:
        ap.error("--steps >= 1, --warmup >= 0, --part_steps >= 0")
    backend = a.sdpa or ("cudnn" if cuda else "math")
    # GQA: the backend's own (enable_gqa) where it takes it, else k/v expanded to the q heads;
    # a CUDA backend that refuses both falls back to flash, said in the comment line and the name
    gqa, why = "native", probe(backend, "native", c, dev)
    if why:
        gqa, why2 = "expand", probe(backend, "expand", c, dev)
        if why2 and cuda and backend != "flash":
            print(f"# sdpa {backend} unavailable ({why2}); flash instead", flush=True)
            backend = "flash"
            gqa = "native" if probe(backend, "native", c, dev) is None else "expand"
    torch.manual_seed(1)
    model = Model(c, gqa).to(dev)
    params = [p for p in model.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1,
                            fused=True)
    fwd = torch.compile(model) if a.mode == "compile" else model
    B, T = c["B"], c["T"]
    N = B * T
    P = matmul_params(c)
    label = f"torch-{a.mode}-{backend}"
    print(f"# {name}: torch {torch.__version__} {label}, gqa {gqa}, params "
          f"{sum(p.numel() for p in params)} (matmul {P}), B {B} T {T}, "
          f"{torch.cuda.get_device_name(dev) if cuda else 'cpu'}", flush=True)
    g = torch.Generator().manual_seed(42)
    host = torch.empty(N + 1, dtype=torch.uint8, pin_memory=cuda)

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    def step(parts):
        """One training step; with parts, the seconds of data, forward, backward, optimizer."""
        t = [time.perf_counter()]
        host.copy_(torch.randint(0, 256, (N + 1,), generator=g, dtype=torch.uint8))
        xy = host.to(dev, non_blocking=True).long()
        x, y = xy[:-1].view(B, T), xy[1:].view(B, T)
        if parts:
            sync(), t.append(time.perf_counter())
        with sdpa_ctx(backend), torch.autocast(dev.type, dtype=torch.bfloat16):
            loss = fwd(x, y)
        if parts:
            sync(), t.append(time.perf_counter())
        loss.backward()
        if parts:
            sync(), t.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        t.append(time.perf_counter())
        return loss, [b - a for a, b in zip(t, t[1:])]

    for _ in range(a.warmup):
        loss, _ = step(False)
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss, _ = step(False)
        times.append(time.perf_counter() - t0)
    parts = [step(True)[1] for _ in range(a.part_steps)]
    if not math.isfinite(loss.item()):
        print("torch_train: the loss is not finite", file=sys.stderr)
        return 1
    ms = 1e3 * statistics.median(times)
    tps = N / (ms * 1e-3)
    mfu = 6.0 * P * tps / (a.peak_tflops * 1e12) if cuda else float("nan")
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else float("nan")
    med = [1e3 * statistics.median(p[i] for p in parts) if parts else float("nan")
           for i in range(4)]
    print("config,backend,B,T,tok_per_s,step_ms,fwd_ms,bwd_ms,opt_ms,data_ms,mfu,peak_mib")
    print(f"{name},{label},{B},{T},{tps:.0f},{ms:.1f},{med[1]:.1f},{med[2]:.1f},{med[3]:.1f},"
          f"{med[0]:.1f},{mfu:.4f},{peak:.0f}")
    if cuda:
        print(f"# peak reserved {torch.cuda.max_memory_reserved(dev) / 2**20:.0f} MiB; "
              f"loss {loss.item():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
