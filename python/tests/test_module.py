# SPDX-License-Identifier: Apache-2.0
"""test_module.py — nsa.NSAttention / nsa.NSALM against the C trainer: a checkpoint written by
`nsa train` (2 CPU steps) loads into nsa.load_checkpoint, and greedy generation from it equals
`nsa sample --temperature 0` byte for byte on a copy whose attention weights are scaled up and
written back by nsa.save_checkpoint (the C model's logits drive the C sampler; a difference in
names, RoPE, gates, φ or norms changes the argmax within a few bytes);
nsa.KVCache's prefill + decode equal the layer's forward over the whole sequence."""
import os
import subprocess

import pytest
import torch

import nsa

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.environ.get("NSA_CLI", os.path.join(ROOT, "build", "nsa"))
PROMPT = "Ge1:1 In the beginning"


@pytest.mark.parametrize("phi", ["avg", "learned"])
def test_checkpoint_loads_and_generates_like_nsa_sample(phi, tmp_path):
    if not os.path.exists(CLI):
        pytest.skip(f"no nsa command at {CLI} (build the repository, or set NSA_CLI)")
    out = tmp_path / "run"
    subprocess.run([CLI, "train", "--out", str(out), "--steps", "2", "--layers", "2", "--dim",
                    "32", "--heads", "4", "--kv_heads", "2", "--ffn", "64", "--seq_len", "64",
                    "--batch", "2", "--eval_every", "1000", "--ckpt_every", "2", "--phi", phi,
                    "--threads", "1", "--quiet"], check=True, capture_output=True)
    model = nsa.load_checkpoint(str(out / "model.safetensors"))
    assert model.config["phi"] == phi and len(model.layers) == 2
    # After 2 steps the attention path barely moves the logits: scale it up (and write the
    # model back with save_checkpoint, which nsa sample must read) so a wrong RoPE, gate or φ
    # changes the greedy bytes.
    with torch.no_grad():
        for blk in model.layers:
            for name in ("wq", "wk_cmp", "wk_sel", "wk_win", "wo", "wg"):
                getattr(blk.attn, name).weight.mul_(4)
    ckpt = str(tmp_path / "scaled.safetensors")
    nsa.save_checkpoint(model, ckpt)
    toks = list(PROMPT.encode())
    with torch.no_grad():
        for _ in range(24):
            toks.append(int(model(torch.tensor([toks]))[0, -1].argmax()))
    c = subprocess.run([CLI, "sample", "--ckpt", ckpt, "--temperature", "0", "--tokens", "24",
                        "--prompt", PROMPT, "--threads", "1"], check=True, capture_output=True)
    assert bytes(toks) == c.stdout.rstrip(b"\n"), "greedy bytes differ from nsa sample's"


def test_kv_cache_decode_equals_forward():
    torch.manual_seed(0)
    cfg = nsa.Config(l=8, d=4, lp=8, n=3, n_init=1, n_local=2, w=8)
    layer = nsa.NSAttention(32, 4, 2, cfg)
    x = torch.randn(2, 30, 32)
    with torch.no_grad():
        want = layer(x)
    cache = nsa.KVCache(layer, batch=2, max_len=30)
    got = [cache.prefill(x[:, :13])]
    for t in range(13, 30):
        got.append(cache.step(x[:, t:t + 1]))
    assert len(cache) == 30
    torch.testing.assert_close(torch.cat(got, 1), want, atol=1e-5, rtol=1e-5)


def test_learned_phi_gradients_flow():
    cfg = nsa.Config(l=8, d=4, lp=8, n=3, n_init=1, n_local=2, w=8)
    layer = nsa.NSAttention(32, 4, 2, cfg, phi="learned")
    layer(torch.randn(1, 24, 32)).sum().backward()
    # w2 starts at zero (lm/model.c), so w1 gets no gradient on the first step; w2 does
    assert layer.phi_k.w2.grad.abs().sum() > 0 and layer.phi_v.w2.grad.abs().sum() > 0
    assert layer.wk_sel.weight.grad.abs().sum() > 0
