# SPDX-License-Identifier: Apache-2.0
"""test_compile.py — nsa.attention under torch.compile(fullgraph=True): no graph break, same
values and gradients as eager. Not a speed test.
aot_eager traces dynamo + fake tensors + the autograd formula without codegen (seconds); one
case runs inductor too (its C++ codegen is what takes CI time)."""
import pytest
import torch

import nsa
from conftest import call, problem


def step(q, kv, gates, cfg):
    out, lse = call(q, kv, gates, cfg, return_lse=True)
    return (out * out).sum() + lse[..., 0].clamp_min(-10).sum().detach()


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_fullgraph_forward_backward(backend):
    torch._dynamo.reset()
    cfg, q, kv, gates = problem(B=1, T=24, seed=23)

    def leaves():
        return ([q.clone().requires_grad_()],
                [(k.clone().requires_grad_(), v.clone().requires_grad_()) for k, v in kv],
                [gates.clone().requires_grad_()])

    (qe,), kve, (ge,) = leaves()
    step(qe, kve, ge, cfg).backward()
    (qc,), kvc, (gc,) = leaves()
    f = torch.compile(lambda q, kv, g: step(q, kv, g, cfg), backend=backend, fullgraph=True)
    f(qc, kvc, gc).backward()
    torch.testing.assert_close(qc.grad, qe.grad)
    torch.testing.assert_close(gc.grad, ge.grad)
    for (a, b), (c, d) in zip(kvc, kve):
        torch.testing.assert_close(a.grad, c.grad)
        torch.testing.assert_close(b.grad, d.grad)


def test_opcheck():
    """torch.library.opcheck: schema, fake kernel and autograd registration agree."""
    cfg, q, kv, gates = problem(B=1, T=16, per_branch=False, seed=29)
    q.requires_grad_()
    args = (q, [kv[0][0]], [kv[0][1]], gates, None, None, cfg.ints(), 0.0, False, True,
            True)
    torch.library.opcheck(nsa._op._forward, args,
                          test_utils=("test_schema", "test_faketensor",
                                      "test_autograd_registration", "test_aot_dispatch_dynamic"))
