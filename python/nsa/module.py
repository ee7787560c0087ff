# SPDX-License-Identifier: Apache-2.0
"""module.py — nsa.NSAttention, the attention layer of lm/ (lm/pass.c) as an nn.Module: q, k, v
projections (k/v per branch), RoPE, gates from the layer input, an optional learnable φ, the
NSA op and the output projection; and nsa.KVCache, prefill and decode over libnsa's KV cache.
Not the whole model (lm.py).
Invariant: parameter names and shapes are those of the C trainer's checkpoints (lm/model.c), so
lm.py loads them by renaming only; the math is lm/layers.c's (RoPE on interleaved pairs,
sigmoid or temperature-softmax gates, φ = block mean + MLP over the position-embedded block).
"""
import ctypes

import torch
import torch.nn.functional as F
from torch import nn

from . import _lib as L
from ._op import Config, _fill, attention

_BRANCHES = ("cmp", "sel", "win")


def rope(x, pos0, base):
    """RoPE of lm/layers.c over (B, T, H, D): pairs (2i, 2i+1) rotate by (pos0 + t)·base^(-2i/D);
    the tables are computed in double and rounded to float32, as lm_rope_table does."""
    B, T, H, D = x.shape
    i = torch.arange(D // 2, dtype=torch.float64, device=x.device)
    p = torch.arange(pos0, pos0 + T, dtype=torch.float64, device=x.device)
    a = p[:, None] * base ** (-2.0 * i / D)[None, :]
    c, s = a.cos().float().to(x.dtype)[None, :, None], a.sin().float().to(x.dtype)[None, :, None]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1).flatten(-2)


class LearnedPhi(nn.Module):
    """The learnable φ of lm/layers.c for one of k, v: block mean + W2·silu(W1·flatten(raw + pe))
    over blocks [i·d, i·d + l) of raw (B, T, Hkv, D) -> (B, num_cmp(T), Hkv, D)."""

    def __init__(self, l, d, D):
        super().__init__()
        self.l, self.d = l, d
        self.pe = nn.Parameter(torch.zeros(l, D))
        self.w1 = nn.Parameter(torch.empty(D, l * D).normal_(0, 0.02))
        self.w2 = nn.Parameter(torch.zeros(D, D))

    def forward(self, raw):
        B, T, H, D = raw.shape
        Tc = 0 if T < self.l else (T - self.l) // self.d + 1
        if Tc == 0:
            return raw.new_zeros(B, 0, H, D)
        blk = raw.unfold(1, self.l, self.d)[:, :Tc].permute(0, 1, 2, 4, 3)  # (B, Tc, H, l, D)
        u = (blk + self.pe).flatten(-2)
        return blk.mean(-2) + F.linear(F.silu(F.linear(u, self.w1)), self.w2)


class NSAttention(nn.Module):
    """NSA attention layer (lm/ semantics). Input x (B, T, dim), already normalised; output
    (B, T, dim). Parameters (checkpoint names of lm/model.c with ".weight" for the Linears):
    wq, wk_cmp, wv_cmp, wk_sel, wv_sel, wk_win, wv_win, wg, bg, wo, and with phi="learned"
    phi_k.{pe,w1,w2}, phi_v.{pe,w1,w2}. cfg: nsa.Config (n_init 1, n_local 2 in lm/)."""

    def __init__(self, dim, n_head, n_kv_head, cfg=None, phi="avg", gate="sigmoid",
                 gate_temp=1.0, rope_base=10000.0):
        super().__init__()
        if dim % n_head or (dim // n_head) % 2:
            raise ValueError(f"nsa.NSAttention: dim {dim} / heads {n_head} must be an even "
                             f"head dim")
        if phi not in ("avg", "learned") or gate not in ("sigmoid", "softmax"):
            raise ValueError(f"nsa.NSAttention: phi {phi!r} (avg, learned), gate {gate!r} "
                             f"(sigmoid, softmax)")
        self.cfg = cfg or Config()
        self.Hq, self.Hkv, self.D = n_head, n_kv_head, dim // n_head
        self.phi, self.gate, self.gate_temp, self.rope_base = phi, gate, gate_temp, rope_base
        HD, KD = n_head * self.D, n_kv_head * self.D
        self.wq = nn.Linear(dim, HD, bias=False)
        for b in _BRANCHES:
            setattr(self, f"wk_{b}", nn.Linear(dim, KD, bias=False))
            setattr(self, f"wv_{b}", nn.Linear(dim, KD, bias=False))
        self.wg = nn.Linear(dim, 3 * n_head, bias=False)
        self.bg = nn.Parameter(torch.zeros(3 * n_head))
        self.wo = nn.Linear(HD, dim, bias=False)
        if phi == "learned":
            self.phi_k = LearnedPhi(self.cfg.l, self.cfg.d, self.D)
            self.phi_v = LearnedPhi(self.cfg.l, self.cfg.d, self.D)

    def project(self, x, pos0=0):
        """q, [k_cmp, k_sel, k_win], [v_cmp, v_sel, v_win] (RoPE at pos0 + t) and gates."""
        B, T, _ = x.shape
        q = rope(self.wq(x).view(B, T, self.Hq, self.D), pos0, self.rope_base)
        ks = [rope(getattr(self, f"wk_{b}")(x).view(B, T, self.Hkv, self.D), pos0,
                   self.rope_base) for b in _BRANCHES]
        vs = [getattr(self, f"wv_{b}")(x).view(B, T, self.Hkv, self.D) for b in _BRANCHES]
        z = (self.wg(x) + self.bg).view(B, T, self.Hq, 3)
        g = torch.sigmoid(z) if self.gate == "sigmoid" else torch.softmax(z / self.gate_temp, -1)
        return q, ks, vs, g

    def forward(self, x):
        B, T, _ = x.shape
        q, ks, vs, g = self.project(x)
        kc, vc, learned = ks[0], vs[0], self.phi == "learned"
        if learned:
            kc, vc = self.phi_k(ks[0]), self.phi_v(vs[0])
        o = attention(q, kc, vc, g, self.cfg, k_sel=ks[1], v_sel=vs[1], k_win=ks[2],
                      v_win=vs[2], cmp_compressed=learned)
        return self.wo(o.reshape(B, T, self.Hq * self.D))


class KVCache:
    """libnsa's KV cache of one NSAttention layer (nsa_kv_cache): prefill(x) with the layer's
    normalised input (B, T, dim) fills it and returns the layer output; step(x) (B, 1, dim)
    decodes one token per row. Inference only (no autograd). CPU caches and φ = avg in this
    build; a learned-φ layer raises NotImplementedError (lm/pass.c's decode_phi is the way)."""

    def __init__(self, layer, batch, max_len, dtype=torch.float32, device="cpu"):
        if layer.phi != "avg":
            raise NotImplementedError("nsa.KVCache: learned φ layers are not supported yet")
        self.layer, self.B = layer, batch
        self.dev = torch.device(device)
        self.ctx = L.context_for(-1 if self.dev.type == "cpu" else (self.dev.index or 0))
        self.dtype = dtype
        c = L.KvCacheDesc()
        self._cfg(c.cfg)
        c.dtype = {torch.float32: L.DTYPE_F32, torch.bfloat16: L.DTYPE_BF16,
                   torch.float16: L.DTYPE_F16}[dtype]
        c.device.kind = L.DEVICE_CPU if self.dev.type == "cpu" else L.DEVICE_CUDA
        c.device.index = self.dev.index or 0
        c.B, c.max_len, c.cmp_external = batch, max_len, 0
        self.h = ctypes.c_void_p()
        self.ctx.check(L.lib.nsa_kv_cache_create(self.ctx.h, ctypes.byref(c),
                                                 ctypes.byref(self.h)))

    def _cfg(self, c):
        k = self.layer.cfg
        c.l, c.d, c.lp, c.n, c.n_init, c.n_local, c.w = k.ints()[:7]
        c.scale = k.scale
        c.Hq, c.Hkv, c.Dk, c.Dv = self.layer.Hq, self.layer.Hkv, self.layer.D, self.layer.D

    def __del__(self):
        if getattr(self, "h", None):
            L.lib.nsa_kv_cache_destroy(self.h)
            self.h = None

    def __len__(self):
        return int(L.lib.nsa_kv_cache_len(self.h, 0))

    def reset(self):
        self.ctx.check(L.lib.nsa_kv_cache_reset(self.ctx.h, self.h, -1))

    def _inputs(self, x, pos0):
        q, ks, vs, g = self.layer.project(x.to(self.dtype), pos0)
        return [t.contiguous() for t in (q, *ks, *vs, g)]

    @torch.no_grad()
    def prefill(self, x):
        B, T, _ = x.shape
        q, kc, ks, kw, vc, vs, vw, g = self._inputs(x, 0)
        out = q.new_empty(B, T, self.layer.Hq, self.layer.D)
        a = L.FwdArgs()
        self._cfg(a.cfg)
        keep = dict(q=q, k_cmp=kc, v_cmp=vc, k_sel=ks, v_sel=vs, k_win=kw, v_win=vw, gates=g,
                    out=out)
        for name, t in keep.items():
            _fill(getattr(a, name), t, name)
            getattr(a, name).data = t.data_ptr()
        self.ctx.check(L.lib.nsa_kv_cache_prefill(self.ctx.h, self.h, ctypes.byref(a), None))
        return self.layer.wo(out.reshape(B, T, -1).to(x.dtype))

    @torch.no_grad()
    def step(self, x):
        B = x.shape[0]
        q, kc, ks, kw, vc, vs, vw, g = self._inputs(x, len(self))
        out = q.new_empty(B, 1, self.layer.Hq, self.layer.D)
        a = L.DecodeArgs()
        self._cfg(a.cfg)
        keep = dict(q=q, k_cmp=kc, v_cmp=vc, k_sel=ks, v_sel=vs, k_win=kw, v_win=vw, gates=g,
                    out=out)
        for name, t in keep.items():
            _fill(getattr(a, name), t, name)
            getattr(a, name).data = t.data_ptr()
        self.ctx.check(L.lib.nsa_decode_step(self.ctx.h, self.h, ctypes.byref(a)))
        return self.layer.wo(out.reshape(B, 1, -1).to(x.dtype))
