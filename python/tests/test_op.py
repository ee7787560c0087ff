# SPDX-License-Identifier: Apache-2.0
"""test_op.py — nsa.attention against the independent float64 reference (nsa_reference.py):
outputs, lse, selected blocks, gradients, shared and per-branch K/V, strided views, dtypes.
Not the compile/error tests (test_compile.py, test_errors.py)."""
import pytest
import torch

import nsa
from conftest import branches, call, problem
from nsa_reference import nsa_ref

D64 = torch.float64


def ref_of(q, kv, gates, cfg, **kw):
    t = [x.detach().to(D64).requires_grad_() for x in (q, *branches(kv), gates)]
    return t, nsa_ref(*t, cfg, **kw)


@pytest.mark.parametrize("per_branch", [True, False], ids=["per_branch", "shared"])
@pytest.mark.parametrize("T", [1, 13, 40])
def test_forward_matches_reference(per_branch, T):
    cfg, q, kv, gates = problem(T=T, per_branch=per_branch, seed=T)
    out, lse, blocks = call(q, kv, gates, cfg, return_lse=True, return_blocks=True)
    _, (r_out, r_lse, r_blocks) = ref_of(q, kv, gates, cfg)
    torch.testing.assert_close(out.to(D64), r_out, atol=2e-6, rtol=2e-6)
    torch.testing.assert_close(lse.to(D64), r_lse, atol=2e-6, rtol=2e-6)
    assert torch.equal(blocks, r_blocks), "selected blocks differ from the reference's"


def test_group_shares_blocks_and_paper_shape():
    cfg = nsa.Config(l=8, d=4, lp=8, n=4, n_init=1, n_local=2, w=16)
    cfg_, q, kv, gates = problem(B=1, T=64, Hq=8, Hkv=2, cfg=cfg, seed=3)
    out, blocks = call(q, kv, gates, cfg, return_blocks=True)
    _, (r_out, _, r_blocks) = ref_of(q, kv, gates, cfg)
    torch.testing.assert_close(out.to(D64), r_out, atol=2e-6, rtol=2e-6)
    assert torch.equal(blocks, r_blocks)


@pytest.mark.parametrize("per_branch", [True, False], ids=["per_branch", "shared"])
def test_gradients_match_reference(per_branch):
    cfg, q, kv, gates = problem(B=1, T=24, per_branch=per_branch, seed=7)
    leaves = [x.clone().requires_grad_() for x in (q, *[t for p in kv for t in p], gates)]
    q_, gates_ = leaves[0], leaves[-1]
    kv_ = [(leaves[1 + 2 * i], leaves[2 + 2 * i]) for i in range(len(kv))]
    dout = torch.randn(1, 24, 4, 8, generator=torch.Generator().manual_seed(1))
    (call(q_, kv_, gates_, cfg) * dout).sum().backward()
    t, (r_out, _, _) = ref_of(q, kv, gates, cfg)
    (r_out * dout.to(D64)).sum().backward()
    r_grads = [t[0].grad]
    if per_branch:
        r_grads += [x.grad for x in t[1:7]]
    else:  # autograd sums the three branches' gradients of the one shared k and v
        r_grads += [t[1].grad + t[3].grad + t[5].grad, t[2].grad + t[4].grad + t[6].grad]
    r_grads.append(t[7].grad)
    for name, got, want in zip(["q"] + ["kv"] * (len(leaves) - 2) + ["gates"], leaves, r_grads):
        torch.testing.assert_close(got.grad.to(D64), want, atol=1e-5, rtol=1e-5,
                                   msg=lambda m: f"grad of {name}: {m}")


def test_gradcheck_finite_differences():
    """Central differences of the op itself (float32 outputs of a double computation, so the
    tolerance is that of f32 rounding over eps). Full coverage (n·lp >= T) keeps selection away
    from ties that a perturbation could flip."""
    cfg = nsa.Config(l=4, d=2, lp=4, n=3, n_init=1, n_local=1, w=5)
    _, q, kv, gates = problem(B=1, T=9, Hq=2, Hkv=1, Dk=4, Dv=4, cfg=cfg, seed=11)
    k, v, ks, vs, kw, vw = branches(kv)
    fn = lambda *x: nsa.attention(x[0], x[1], x[2], x[7], cfg, k_sel=x[3], v_sel=x[4],  # noqa
                                  k_win=x[5], v_win=x[6])
    args = tuple(x.clone().requires_grad_() for x in (q, k, v, ks, vs, kw, vw, gates))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not double precision": libnsa has no f64 tensors
        assert torch.autograd.gradcheck(fn, args, eps=1e-2, atol=2e-3, rtol=2e-3)


def test_strided_views_are_used_as_they_are():
    cfg, q, kv, gates = problem(seed=5)
    # (B, Hq, T, Dk) storage viewed as (B, T, Hq, Dk): non-contiguous, no copy
    qt = q.transpose(1, 2).contiguous().transpose(1, 2)
    assert not qt.is_contiguous()
    kvt = [(k[..., ::1], v.transpose(1, 2).contiguous().transpose(1, 2)) for k, v in kv]
    torch.testing.assert_close(call(qt, kvt, gates, cfg), call(q, kv, gates, cfg), atol=0, rtol=0)
    # a broadcast (zero-stride) gate works too
    g1 = gates[:, :, :1].expand_as(gates)
    torch.testing.assert_close(call(q, kv, g1, cfg), call(q, kv, g1.contiguous(), cfg),
                               atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision(dtype):
    cfg, q, kv, gates = problem(seed=9, dtype=dtype)
    out = call(q, kv, gates, cfg)
    assert out.dtype == dtype
    _, (r_out, _, _) = ref_of(q, kv, gates, cfg)
    # inputs are exact in dtype; the only error is the output's rounding: half an ulp
    ulp = torch.finfo(dtype).eps
    assert (out.to(D64) - r_out).abs().max() <= ulp * (r_out.abs().max() + 1)


def test_cmp_compressed_learnable_phi():
    cfg, q, kv, gates = problem(T=32, seed=13)
    Tc = nsa.num_cmp(cfg, 32)
    kc = torch.randn(2, Tc, 2, 8)
    vc = torch.randn(2, Tc, 2, 8)
    out = nsa.attention(q, kc, vc, gates, cfg, k_sel=kv[1][0], v_sel=kv[1][1], k_win=kv[2][0],
                        v_win=kv[2][1], cmp_compressed=True)
    t = [x.to(D64) for x in (q, kc, vc, kv[1][0], kv[1][1], kv[2][0], kv[2][1], gates)]
    r_out, _, _ = nsa_ref(*t, cfg, cmp_compressed=True)
    torch.testing.assert_close(out.to(D64), r_out, atol=2e-6, rtol=2e-6)


def test_window_off_needs_no_window_tensors():
    cfg = nsa.Config(l=8, d=4, lp=8, n=3, n_init=1, n_local=1, w=0)
    _, q, kv, gates = problem(cfg=cfg, seed=17)
    out = nsa.attention(q, kv[0][0], kv[0][1], gates, cfg, k_sel=kv[1][0], v_sel=kv[1][1])
    _, (r_out, _, _) = ref_of(q, kv, gates, cfg)
    torch.testing.assert_close(out.to(D64), r_out, atol=2e-6, rtol=2e-6)


def test_autocast_runs_in_the_autocast_dtype():
    cfg, q, kv, gates = problem(seed=19)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = call(q, kv, gates, cfg)
    assert out.dtype == torch.bfloat16
    want = call(q.bfloat16(), [(k.bfloat16(), v.bfloat16()) for k, v in kv], gates.bfloat16(),
                cfg)
    torch.testing.assert_close(out, want, atol=0, rtol=0)


def random_blocks(cfg, B, T, Hkv, seed):
    """Valid caller blocks: per (b, t, g) a random subset of 0..t//lp, ascending, -1 padded."""
    g = torch.Generator().manual_seed(seed)
    bi = torch.full((B, T, Hkv, cfg.n), -1, dtype=torch.int32)
    for b in range(B):
        for t in range(T):
            for h in range(Hkv):
                cand = torch.randperm(t // cfg.lp + 1, generator=g)[:cfg.n]
                k = int(torch.randint(0, len(cand) + 1, (1,), generator=g))
                sel = sorted(cand[:k].tolist())
                bi[b, t, h, :len(sel)] = torch.tensor(sel, dtype=torch.int32)
    return bi


def test_block_indices_given():
    """Caller-supplied blocks (fla's block_indices) against the reference attending the same
    blocks; gradients too (the blocks are constants)."""
    cfg, q, kv, gates = problem(B=1, T=30, seed=31)
    bi = random_blocks(cfg, 1, 30, 2, seed=3)
    leaves = [x.clone().requires_grad_() for x in (q, *[t for p in kv for t in p], gates)]
    kv_ = [(leaves[1 + 2 * i], leaves[2 + 2 * i]) for i in range(3)]
    out, blocks = call(leaves[0], kv_, leaves[-1], cfg, block_indices=bi, return_blocks=True)
    assert torch.equal(blocks, bi), "sel_blocks does not echo the caller's blocks"
    t, (r_out, _, _) = ref_of(q, kv, gates, cfg, block_indices=bi)
    torch.testing.assert_close(out.to(D64), r_out, atol=2e-6, rtol=2e-6)
    out.sum().backward()
    r_out.sum().backward()
    for got, want in zip(leaves, t):
        torch.testing.assert_close(got.grad.to(D64), want.grad, atol=1e-5, rtol=1e-5)


def test_cu_seqlens_equals_documents_alone():
    """Packed documents (varlen): each document's rows equal the document passed alone."""
    cfg, q, kv, gates = problem(B=1, T=37, seed=41)
    cu = torch.tensor([0, 9, 9, 30, 37], dtype=torch.int32)
    out = call(q, kv, gates, cfg, cu_seqlens=cu)
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):
        if a == b:
            continue
        part = call(q[:, a:b], [(k[:, a:b], v[:, a:b]) for k, v in kv], gates[:, a:b], cfg)
        torch.testing.assert_close(out[:, a:b], part, atol=0, rtol=0)
