# SPDX-License-Identifier: Apache-2.0
"""test_errors.py — bad input raises a Python exception carrying libnsa's message, which names
the field; nothing is written. Not the numerical tests (test_op.py)."""
import pytest
import torch

import nsa
from conftest import call, problem


def test_shape_error_names_the_field():
    cfg, q, kv, gates = problem()
    bad = [(kv[0][0], kv[0][1]), (kv[1][0][:, :-1], kv[1][1]), kv[2]]
    with pytest.raises(nsa.NsaError, match=r"NSA_ERR_SHAPE: k_sel: shape\[1\]"):
        call(q, bad, gates, cfg)


def test_config_error_names_the_field():
    _, q, kv, gates = problem()
    with pytest.raises(nsa.NsaError, match=r"NSA_ERR_CONFIG: cfg\.n: "):
        call(q, kv, gates, nsa.Config(l=8, d=4, lp=8, n=1, n_init=1, n_local=1, w=8))
    with pytest.raises(nsa.NsaError, match=r"cfg\.d: 3 does not divide l=8"):
        call(q, kv, gates, nsa.Config(l=8, d=3, lp=8, n=3, w=8))


def test_dtype_mismatch_names_the_field():
    cfg, q, kv, gates = problem()
    bad = [kv[0], (kv[1][0], kv[1][1].half()), kv[2]]
    with pytest.raises(nsa.NsaError, match=r"NSA_ERR_DTYPE: v_sel: dtype f16, expected f32"):
        call(q, bad, gates, cfg)
    with pytest.raises(TypeError, match=r"q: dtype torch.float64 not supported"):
        call(q.double(), kv, gates, cfg)


def test_window_needs_its_tensors():
    cfg, q, kv, gates = problem()
    with pytest.raises(nsa.NsaError, match=r"k_win: NULL data"):
        nsa.attention(q, kv[0][0], kv[0][1], gates, cfg, k_sel=kv[1][0], v_sel=kv[1][1])


def test_gates_shape_and_heads():
    cfg, q, kv, gates = problem()
    with pytest.raises(nsa.NsaError, match=r"gates: shape\[3\] = 2, expected 3"):
        call(q, kv, gates[..., :2], cfg)
    with pytest.raises(nsa.NsaError, match=r"cfg\.Hkv: 3 does not divide Hq=4"):
        k = torch.randn(2, 40, 3, 8)
        nsa.attention(q, k, k, gates, cfg)


def test_meta_device_is_refused_by_name():
    cfg, q, kv, gates = problem()
    with pytest.raises(ValueError, match=r"nsa: q: device meta not supported"):
        nsa._op._forward._init_fn(q.to("meta"), [kv[0][0].to("meta")], [kv[0][1].to("meta")],
                                  gates.to("meta"), None, None, cfg.ints(), 0.0, False, False,
                                  False)


def test_error_leaves_the_next_call_working():
    cfg, q, kv, gates = problem()
    with pytest.raises(nsa.NsaError):
        call(q, kv, gates[..., :2], cfg)
    assert torch.isfinite(call(q, kv, gates, cfg)).all()


def test_block_indices_refused_by_element():
    cfg, q, kv, gates = problem(B=1, T=20)
    bi = torch.full((1, 20, 2, cfg.n), -1, dtype=torch.int32)
    bi[0, 5, 1, 0] = 1  # block 1 starts at 8 > t = 5
    with pytest.raises(nsa.NsaError, match=r"block_indices\[0, 5, 1, 0\] = 1 starts after"):
        call(q, kv, gates, cfg, block_indices=bi)
