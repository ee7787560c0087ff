# SPDX-License-Identifier: Apache-2.0
"""_op.py — the torch.library custom ops nsa::forward / nsa::backward over nsa_forward and
nsa_backward, their fake (meta) kernels and autograd formula, and `nsa.attention`.
Not the model (module.py) nor fla's calling convention (fla.py).
Invariant: tensors go to libnsa as they are (data pointer, shape, strides: the C API accepts any
non-negative strides, so no input is ever copied); outputs are allocated here, contiguous.
Argument structs are built once per shape signature and thread, then only data pointers change.
"""
import ctypes
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch

from . import _lib as L

_DT = {torch.float32: L.DTYPE_F32, torch.bfloat16: L.DTYPE_BF16, torch.float16: L.DTYPE_F16,
       torch.int32: L.DTYPE_I32}


@dataclass(frozen=True)
class Config:
    """The NSA configuration (docs/design.md §1; nsa_config in nsa.h) less the head layout, which
    comes from the tensors. Defaults are the paper's. scale 0 means 1/sqrt(Dk)."""
    l: int = 32
    d: int = 16
    lp: int = 64
    n: int = 16
    n_init: int = 1
    n_local: int = 2
    w: int = 512
    scale: float = 0.0

    def ints(self, max_seqlen=0):
        """The op's int arguments: the config, then max_seqlen (varlen; 0 otherwise)."""
        return [self.l, self.d, self.lp, self.n, self.n_init, self.n_local, self.w, max_seqlen]


def num_cmp(cfg, T):
    """Compressed blocks complete after T tokens: T < l ? 0 : (T - l)//d + 1."""
    return 0 if T < cfg.l else (T - cfg.l) // cfg.d + 1


def _fill(dst, t, name):
    """Fills the nsa_tensor dst with t's dtype, device, shape and strides (not its data)."""
    dt = _DT.get(t.dtype)
    if dt is None:
        raise TypeError(f"nsa: {name}: dtype {t.dtype} not supported (float32, bfloat16, "
                        f"float16; int32 for block indices)")
    if t.dim() > L.MAX_DIMS:
        raise ValueError(f"nsa: {name}: {t.dim()} dims, at most {L.MAX_DIMS}")
    dst.dtype = dt
    if t.device.type == "cuda":
        dst.device.kind, dst.device.index = L.DEVICE_CUDA, t.device.index or 0
    elif t.device.type == "cpu":
        dst.device.kind, dst.device.index = L.DEVICE_CPU, 0
    else:
        raise ValueError(f"nsa: {name}: device {t.device} not supported (cpu, cuda)")
    dst.ndim = t.dim()
    for i, (n, s) in enumerate(zip(t.shape, t.stride())):
        dst.shape[i], dst.stride[i] = n, s


class _Bound:
    """A prebuilt FwdArgs (and BwdArgs) for one signature, with one c_void_p view per tensor
    field so a call only stores data pointers."""

    def __init__(self, cfg_ints, scale, cmp_compressed, named, grads=None):
        self.args = a = L.FwdArgs()
        q = named["q"]
        c = a.cfg
        c.l, c.d, c.lp, c.n, c.n_init, c.n_local, c.w, a.max_seqlen = cfg_ints
        c.scale = scale
        c.Hq, c.Dk = q.shape[2], q.shape[3]
        c.Hkv, c.Dv = named["k_sel"].shape[2], named["v_sel"].shape[3]
        a.cmp_compressed = int(cmp_compressed)
        self.fields = []
        for name, t in named.items():
            _fill(getattr(a, name), t, name)
            self.fields.append(ctypes.c_void_p.from_buffer(a, getattr(L.FwdArgs, name).offset))
        self.gfields = []
        if grads is not None:
            self.gargs = g = L.BwdArgs()
            for name, t in grads.items():
                _fill(getattr(g, name), t, name)
                self.gfields.append(ctypes.c_void_p.from_buffer(g, getattr(L.BwdArgs,
                                                                               name).offset))


def _branch_names(nk, prefix):
    return {1: (f"{prefix}_cmp", f"{prefix}_sel", f"{prefix}_win"),
            2: (f"{prefix}_cmp", f"{prefix}_sel"),
            3: (f"{prefix}_cmp", f"{prefix}_sel", f"{prefix}_win")}[nk]


def _named_inputs(q, ks, vs, gates, block_indices, cu_seqlens):
    """Field name -> tensor for the inputs; one shared k/v fills all three branches."""
    named = {"q": q}
    if len(ks) != len(vs) or len(ks) not in (1, 2, 3):
        raise ValueError("nsa: k and v: pass one shared tensor each or one per branch "
                         "(cmp, sel[, win])")
    ksrc = ks * 3 if len(ks) == 1 else ks
    vsrc = vs * 3 if len(vs) == 1 else vs
    for name, t in zip(_branch_names(len(ks), "k"), ksrc):
        named[name] = t
    for name, t in zip(_branch_names(len(vs), "v"), vsrc):
        named[name] = t
    named["gates"] = gates
    if block_indices is not None:
        named["block_indices"] = block_indices
    if cu_seqlens is not None:
        named["cu_seqlens"] = cu_seqlens
    return named


def _check_devices(named):
    dev = named["q"].device
    for name, t in named.items():
        if t.device != dev:
            raise ValueError(f"nsa: {name}: on {t.device}, expected {dev} (the device of q)")
    return dev


def _context(dev):
    if dev.type == "cuda":
        ctx = L.context_for(dev.index or 0)
        ctx.set_stream(torch.cuda.current_stream(dev).cuda_stream or None)
        return ctx
    return L.context_for(-1)


def _key(kind, cfg_ints, scale, cmp_compressed, tensors):
    return (kind, tuple(cfg_ints), scale, cmp_compressed) + tuple(
        (n, t.dtype, t.device, t.shape, t.stride()) for n, t in tensors.items())


def _bound(ctx, kind, cfg_ints, scale, cmp_compressed, named, outs, grads=None):
    allt = dict(named)
    allt.update(outs)
    if grads is not None:
        allt.update(grads)
    key = _key(kind, cfg_ints, scale, cmp_compressed, allt)
    b = ctx.cache.get(key)
    if b is None:
        fwd_named = dict(named)
        fwd_named.update(outs)
        b = ctx.cache[key] = _Bound(cfg_ints, scale, cmp_compressed, fwd_named, grads)
    return b


def _set(fields, tensors):
    for f, t in zip(fields, tensors):
        f.value = t.data_ptr()


def _out_shapes(q, ks, vs, cfg_ints):
    B, T, Hq, _ = q.shape
    Hkv, Dv = vs[-1].shape[2], vs[-1].shape[3]
    return (B, T, Hq, Dv), (B, T, Hq, 3), (B, T, Hkv, cfg_ints[3])


@torch.library.custom_op("nsa::forward", mutates_args=())
def _forward(q: torch.Tensor, ks: List[torch.Tensor], vs: List[torch.Tensor],
             gates: torch.Tensor, block_indices: Optional[torch.Tensor],
             cu_seqlens: Optional[torch.Tensor], cfg: List[int], scale: float,
             cmp_compressed: bool, want_lse: bool,
             want_blocks: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    named = _named_inputs(q, ks, vs, gates, block_indices, cu_seqlens)
    dev = _check_devices(named)
    os_, ls, bs = _out_shapes(q, ks, vs, cfg)
    out = q.new_empty(os_)
    lse = q.new_empty(ls, dtype=torch.float32) if want_lse else q.new_empty(0, dtype=torch.float32)
    blocks = q.new_empty(bs, dtype=torch.int32) if want_blocks else q.new_empty(0, dtype=torch.int32)
    outs = {"out": out}
    if want_lse:
        outs.update(lse_cmp=lse[..., 0], lse_sel=lse[..., 1], lse_win=lse[..., 2])
    if want_blocks:
        outs["sel_blocks"] = blocks
    ctx = _context(dev)
    b = _bound(ctx, "f", cfg, scale, cmp_compressed, named, outs)
    _set(b.fields, list(named.values()) + list(outs.values()))
    with _device_guard(dev):
        ctx.check(L.lib.nsa_forward(ctx.h, ctypes.byref(b.args)))
    return out, lse, blocks


@_forward.register_fake
def _forward_fake(q, ks, vs, gates, block_indices, cu_seqlens, cfg, scale, cmp_compressed,
                  want_lse, want_blocks):
    os_, ls, bs = _out_shapes(q, ks, vs, cfg)
    return (q.new_empty(os_),
            q.new_empty(ls if want_lse else (0,), dtype=torch.float32),
            q.new_empty(bs if want_blocks else (0,), dtype=torch.int32))


class _device_guard:
    """Makes dev the current CUDA device for the call when it is not already (libnsa launches
    on the current device); a no-op on the CPU."""

    def __init__(self, dev):
        self.dev = dev if dev.type == "cuda" else None
        self.prev = None

    def __enter__(self):
        if self.dev is not None:
            cur = torch.cuda.current_device()
            if cur != (self.dev.index or 0):
                self.prev = cur
                torch.cuda.set_device(self.dev)

    def __exit__(self, *exc):
        if self.prev is not None:
            torch.cuda.set_device(self.prev)


def _grad_like(t, want):
    return t.new_empty(t.shape) if want else t.new_empty(0)


@torch.library.custom_op("nsa::backward", mutates_args=())
def _backward(dout: torch.Tensor, q: torch.Tensor, ks: List[torch.Tensor],
              vs: List[torch.Tensor], gates: torch.Tensor, block_indices: Optional[torch.Tensor],
              cu_seqlens: Optional[torch.Tensor], cfg: List[int], scale: float,
              cmp_compressed: bool, need: List[bool]) -> List[torch.Tensor]:
    named = _named_inputs(q, ks, vs, gates, block_indices, cu_seqlens)
    dev = _check_devices(named)
    nk = len(ks)
    dq = _grad_like(q, need[0])
    dks = [_grad_like(k, need[1]) for k in ks]
    dvs = [_grad_like(v, need[2]) for v in vs]
    dg = _grad_like(gates, need[3])
    grads = {"dout": dout}
    if need[0]:
        grads["dq"] = dq
    if need[1]:
        for name, t in zip(_branch_names(nk, "dk"), dks * 3 if nk == 1 else dks):
            grads[name] = t
    if need[2]:
        for name, t in zip(_branch_names(nk, "dv"), dvs * 3 if nk == 1 else dvs):
            grads[name] = t
    if need[3]:
        grads["dgates"] = dg
    outs = {"out": dout}  # nsa_backward does not read fwd.out; it must only be well formed
    ctx = _context(dev)
    b = _bound(ctx, "b", cfg, scale, cmp_compressed, named, outs, grads)
    _set(b.fields, list(named.values()) + [dout])
    _set(b.gfields, list(grads.values()))
    with _device_guard(dev):
        ctx.check(L.lib.nsa_backward(ctx.h, ctypes.byref(b.args), ctypes.byref(b.gargs)))
    return [dq] + dks + dvs + [dg]


@_backward.register_fake
def _backward_fake(dout, q, ks, vs, gates, block_indices, cu_seqlens, cfg, scale, cmp_compressed,
                   need):
    return ([_grad_like(q, need[0])] + [_grad_like(k, need[1]) for k in ks] +
            [_grad_like(v, need[2]) for v in vs] + [_grad_like(gates, need[3])])


def _setup_context(ctx, inputs, output):
    q, ks, vs, gates, block_indices, cu_seqlens, cfg, scale, cmp_compressed, _, _ = inputs
    ctx.nk = len(ks)
    ctx.has_bi = block_indices is not None
    ctx.has_cu = cu_seqlens is not None
    extra = ([block_indices] if ctx.has_bi else []) + ([cu_seqlens] if ctx.has_cu else [])
    ctx.save_for_backward(q, gates, *ks, *vs, *extra)
    ctx.cfg, ctx.scale, ctx.cmp_compressed = cfg, scale, cmp_compressed
    ctx.mark_non_differentiable(output[1], output[2])


def _autograd(ctx, dout, dlse, dblocks):
    saved = ctx.saved_tensors
    nk = ctx.nk
    q, gates = saved[0], saved[1]
    ks, vs = list(saved[2:2 + nk]), list(saved[2 + nk:2 + 2 * nk])
    bi = saved[2 + 2 * nk] if ctx.has_bi else None
    cu = saved[2 + 2 * nk + ctx.has_bi] if ctx.has_cu else None
    nig = ctx.needs_input_grad
    need = [bool(nig[0]), bool(nig[1]), bool(nig[2]), bool(nig[3])]
    if not any(need):
        return (None,) * 11
    g = _backward(dout, q, ks, vs, gates, bi, cu, ctx.cfg, ctx.scale, ctx.cmp_compressed, need)
    dq, dks, dvs, dg = g[0], g[1:1 + nk], g[1 + nk:1 + 2 * nk], g[1 + 2 * nk]
    return (dq if need[0] else None, dks if need[1] else None, dvs if need[2] else None,
            dg if need[3] else None, None, None, None, None, None, None, None)


_forward.register_autograd(_autograd, setup_context=_setup_context)


def _autocast(tensors, device_type):
    """Under torch.autocast, the op runs in the autocast dtype (f16/bf16): floating inputs are
    cast to it, as autocast does for attention."""
    if not torch.is_autocast_enabled(device_type):
        return tensors
    dt = torch.get_autocast_dtype(device_type)
    return [t.to(dt) if t is not None and t.is_floating_point() else t for t in tensors]


def attention(q, k, v, gates, config=None, *, k_sel=None, v_sel=None, k_win=None, v_win=None,
              cmp_compressed=False, block_indices=None, cu_seqlens=None, max_seqlen=None,
              return_lse=False, return_blocks=False):
    """Native Sparse Attention (docs/design.md §1) through libnsa, with autograd.

    q: (B, T, Hq, Dk). k, v: (B, T, Hkv, Dk/Dv) — the keys/values of every branch when k_sel,
    k_win are not given (shared K/V), else those of the cmp branch (raw, or compressed
    (B, num_cmp(T), Hkv, D) with cmp_compressed=True: a learnable φ). k_sel/v_sel and
    k_win/v_win: the sel and win branches' own keys/values (k_win may be left out when
    config.w == 0). gates: (B, T, Hq, 3) in the order cmp, sel, win, used as given.
    config: nsa.Config (paper defaults when None). block_indices: optional (B, T, Hkv, n) int32
    selected blocks to use instead of the computed selection (ascending, -1 padding at the end,
    causal: block j needs j·lp <= t); they are constants for the backward. cu_seqlens: optional
    (n_docs + 1,) int32 offsets of documents packed in one row (B = 1; docs/varlen.md), each its
    own causal NSA sequence; max_seqlen (the longest document) is computed when not given.

    Returns out (B, T, Hq, Dv), and when asked (in this order): lse (B, T, Hq, 3) float32,
    natural log, per branch (-inf where a branch sees no key; not differentiable), blocks
    (B, T, Hkv, n) int32 (the selected blocks, ascending, -1 padded).
    Inputs must share one dtype (float32, bfloat16, float16) and one device; under
    torch.autocast they are cast to the autocast dtype. Errors of libnsa raise nsa.NsaError
    with the library's message, which names the field.
    """
    cfg = config or Config()
    if k_sel is None and k_win is None and v_sel is None and v_win is None:
        ks, vs = [k], [v]
        if cmp_compressed:
            raise ValueError("nsa: cmp_compressed needs k_sel/v_sel (compressed k, v are not "
                             "the sel branch's keys)")
    elif k_sel is None or v_sel is None:
        raise ValueError("nsa: k_sel and v_sel go together (per-branch K/V)")
    elif k_win is None and v_win is None:
        ks, vs = [k, k_sel], [v, v_sel]
    else:
        ks, vs = [k, k_sel, k_win], [v, v_sel, v_win]
    flat = _autocast([q, gates] + ks + vs, q.device.type)
    q, gates = flat[0], flat[1]
    nk = len(ks)
    ks, vs = flat[2:2 + nk], flat[2 + nk:]
    if gates.dtype != q.dtype:
        gates = gates.to(q.dtype)
    if cu_seqlens is not None:
        if cu_seqlens.dtype != torch.int32:
            cu_seqlens = cu_seqlens.to(torch.int32)
        if max_seqlen is None:  # a host sync on CUDA: pass max_seqlen to avoid it
            max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max()) if cu_seqlens.numel() > 1 else 0
    out, lse, blocks = _forward(q, ks, vs, gates, block_indices, cu_seqlens,
                                cfg.ints(int(max_seqlen or 0)), float(cfg.scale),
                                bool(cmp_compressed), bool(return_lse), bool(return_blocks))
    res = (out,) + ((lse,) if return_lse else ()) + ((blocks,) if return_blocks else ())
    return res[0] if len(res) == 1 else res
