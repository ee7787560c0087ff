# SPDX-License-Identifier: Apache-2.0
# conftest.py — shared fixtures of the Python tests: random NSA problems and the CUDA skip mark.
# Not a test. Invariant: every problem is drawn fresh from a seeded generator named by the test.
import pytest
import torch

import nsa

# One OpenMP thread: CI's 2 shared cores make a thread team's barriers cost milliseconds per
# call (measured: 44 ms vs 1 ms for a T=9 problem); results are the same for any count.
nsa.set_threads(1)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def problem(B=2, T=40, Hq=4, Hkv=2, Dk=8, Dv=8, cfg=None, per_branch=True, seed=0,
            dtype=torch.float32, device="cpu"):
    """Random q, k/v per branch (or one shared), gates in (0, 1), and a small config under
    which selection really chooses (n·lp < T) and the window is shorter than T."""
    cfg = cfg or nsa.Config(l=8, d=4, lp=8, n=3, n_init=1, n_local=1, w=8)
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g).to(dtype).to(device)  # noqa: E731
    q = r(B, T, Hq, Dk)
    kv = [(r(B, T, Hkv, Dk), r(B, T, Hkv, Dv)) for _ in range(3 if per_branch else 1)]
    gates = torch.rand(B, T, Hq, 3, generator=g).to(dtype).to(device)
    return cfg, q, kv, gates


def branches(kv):
    """(k_cmp, v_cmp, k_sel, v_sel, k_win, v_win) of a problem's kv list."""
    if len(kv) == 1:
        kv = kv * 3
    return kv[0][0], kv[0][1], kv[1][0], kv[1][1], kv[2][0], kv[2][1]


def call(q, kv, gates, cfg, **kw):
    if len(kv) == 1:
        return nsa.attention(q, kv[0][0], kv[0][1], gates, cfg, **kw)
    return nsa.attention(q, kv[0][0], kv[0][1], gates, cfg, k_sel=kv[1][0], v_sel=kv[1][1],
                         k_win=kv[2][0], v_win=kv[2][1], **kw)
