# SPDX-License-Identifier: Apache-2.0
"""test_fla.py — nsa.parallel_nsa (fla's calling convention) against the float64 reference
under the mapping its docstring states: l = d = lp = block_size, n_init 1, n_local 2, one K/V
for every branch, gates stacked (g_slc None = 1), block_indices canonicalised.
Not a comparison with fla itself (no Triton here; bench/torch_op.py does it on the GPU)."""
import pytest
import torch

import nsa
from nsa_reference import nsa_ref

D64 = torch.float64


def inputs(B=1, T=40, HQ=4, H=2, K=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return r(B, T, HQ, K), r(B, T, H, K), r(B, T, H, K), [torch.rand(B, T, HQ, generator=g)
                                                         for _ in range(3)]


def ref(q, k, v, gates, cfg, block_indices=None):
    d = [x.to(D64) for x in (q, k, v)]
    return nsa_ref(d[0], d[1], d[2], d[1], d[2], d[1], d[2], gates.to(D64), cfg,
                   block_indices=block_indices)[0]


def test_defaults_map_to_the_stated_config():
    q, k, v, (gc, gs, gw) = inputs()
    out = nsa.parallel_nsa(q, k, v, gc, gs, gw, block_counts=3, block_size=8, window_size=8)
    cfg = nsa.Config(l=8, d=8, lp=8, n=3, n_init=1, n_local=2, w=8)
    torch.testing.assert_close(out.to(D64), ref(q, k, v, torch.stack([gc, gs, gw], -1), cfg),
                               atol=2e-6, rtol=2e-6)


def test_missing_gates_and_no_window():
    q, k, v, (gc, _, _) = inputs(seed=1)
    out = nsa.parallel_nsa(q, k, v, g_cmp=gc, block_counts=4, block_size=8)
    cfg = nsa.Config(l=8, d=8, lp=8, n=4, n_init=1, n_local=2, w=0)
    g = torch.stack([gc, torch.ones_like(gc), torch.zeros_like(gc)], -1)
    torch.testing.assert_close(out.to(D64), ref(q, k, v, g, cfg), atol=2e-6, rtol=2e-6)


def test_block_indices_fla_style():
    """fla-style rows: unsorted, a duplicate, an entry past the query's block, padding with T
    (as fla's tests build them) — equal to the reference on the canonical rows."""
    q, k, v, (gc, gs, _) = inputs(T=32, seed=2)
    B, T, H, S = 1, 32, 2, 3
    bi = torch.full((B, T, H, S), T, dtype=torch.long)
    for t in range(T):
        for h in range(H):
            cand = torch.randperm(t // 8 + 1)[:S]
            bi[0, t, h, :len(cand)] = cand.flip(0)  # descending: fla does not sort
    bi[0, 20, 0] = torch.tensor([2, 2, 0])  # duplicate
    out = nsa.parallel_nsa(q, k, v, gc, gs, block_indices=bi, block_counts=S, block_size=8)
    canon = torch.full((B, T, H, S), -1, dtype=torch.int32)
    for t in range(T):
        for h in range(H):
            sel = sorted({int(j) for j in bi[0, t, h] if 0 <= j <= t // 8})
            canon[0, t, h, :len(sel)] = torch.tensor(sel, dtype=torch.int32)
    cfg = nsa.Config(l=8, d=8, lp=8, n=S, n_init=1, n_local=2, w=0)
    g = torch.stack([gc, gs, torch.zeros_like(gc)], -1)
    torch.testing.assert_close(out.to(D64), ref(q, k, v, g, cfg, block_indices=canon),
                               atol=2e-6, rtol=2e-6)


def test_unsupported_arguments_say_so():
    q, k, v, (gc, gs, gw) = inputs()
    with pytest.raises(NotImplementedError, match="block_counts tensor needs block_indices"):
        nsa.parallel_nsa(q, k, v, gc, gs, block_counts=torch.full((1, 40, 2), 3))
    with pytest.raises(NotImplementedError, match="tuple"):
        cu = torch.tensor([0, 40])
        nsa.parallel_nsa(q, k, v, gc, gs, block_counts=3, block_size=8, cu_seqlens=(cu, cu))
    with pytest.raises(ValueError, match="needs g_swa"):
        nsa.parallel_nsa(q, k, v, gc, gs, block_counts=3, block_size=8, window_size=8)


def test_cu_seqlens():
    q, k, v, (gc, gs, gw) = inputs(T=40, seed=3)
    cu = torch.tensor([0, 17, 40])
    out = nsa.parallel_nsa(q, k, v, gc, gs, gw, block_counts=3, block_size=8, window_size=8,
                           cu_seqlens=cu)
    for a, b in ((0, 17), (17, 40)):
        part = nsa.parallel_nsa(q[:, a:b], k[:, a:b], v[:, a:b], gc[:, a:b], gs[:, a:b],
                                gw[:, a:b], block_counts=3, block_size=8, window_size=8)
        torch.testing.assert_close(out[:, a:b], part, atol=0, rtol=0)
