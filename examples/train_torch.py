# SPDX-License-Identifier: Apache-2.0
"""train_torch.py — a small byte-level GPT with nsa.NSAttention (nsa.NSALM: the model of
`nsa train`) trained with torch's AdamW on the bundled corpus (data/kjv.tar.xz), on CPU or GPU.
Not the C trainer (lm/): same model and config keys, torch's autograd and optimizer.

    python3 examples/train_torch.py --steps 40                # CPU, a few minutes
    python3 examples/train_torch.py --device cuda --dtype bf16 --steps 2000 --dim 384 --layers 6
    nsa sample --ckpt runs/torch/model.safetensors            # the C sampler reads its output
"""
import argparse
import math
import os
import tarfile
import time

import torch

import nsa

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def corpus():
    with tarfile.open(os.path.join(ROOT, "data", "kjv.tar.xz")) as tf:
        data = tf.extractfile("kjv.txt").read()
    t = torch.frombuffer(bytearray(data), dtype=torch.uint8).long()
    cut = len(t) * 9 // 10  # the last tenth is held out
    return t[:cut], t[cut:]


def batch(data, B, T, g, device):
    i = torch.randint(0, len(data) - T - 1, (B,), generator=g)
    x = torch.stack([data[j:j + T + 1] for j in i.tolist()]).to(device)
    return x[:, :-1], x[:, 1:]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv_heads", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--log_every", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="f32", choices=["f32", "bf16"],
                   help="bf16: torch.autocast around the forward (the NSA op runs in bf16)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "torch"))
    p.add_argument("--seed", type=int, default=1337)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(a.seed)
    train, val = corpus()
    model = nsa.NSALM(layers=a.layers, dim=a.dim, heads=a.heads, kv_heads=a.kv_heads,
                      ffn=3 * a.dim).to(a.device)
    fwd = torch.compile(model) if a.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1)
    amp = torch.autocast(a.device, dtype=torch.bfloat16, enabled=a.dtype == "bf16")
    print(f"model: {sum(x.numel() for x in model.parameters()):,} parameters on {a.device}, "
          f"NSA l={model.config['l']} d={model.config['d']} lp={model.config['lp']} "
          f"n={model.config['n']} w={model.config['w']}")
    t0 = time.time()
    for step in range(1, a.steps + 1):
        lr = a.lr * min(1.0, step / 10) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / a.steps)))
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = batch(train, a.batch, a.seq_len, g, a.device)
        with amp:
            loss = torch.nn.functional.cross_entropy(fwd(x).float().flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % a.log_every == 0 or step == 1:
            toks = step * a.batch * a.seq_len / (time.time() - t0)
            print(f"step {step:5d}  loss {loss.item():.4f} ({loss.item() / math.log(2):.3f} "
                  f"bits/byte)  lr {lr:.2e}  {toks:,.0f} tokens/s", flush=True)
    with torch.no_grad(), amp:
        x, y = batch(val, a.batch, a.seq_len, g, a.device)
        vl = torch.nn.functional.cross_entropy(fwd(x).float().flatten(0, 1), y.flatten())
    print(f"validation loss {vl.item():.4f} ({vl.item() / math.log(2):.3f} bits/byte)")
    os.makedirs(a.out, exist_ok=True)
    nsa.save_checkpoint(model.cpu(), os.path.join(a.out, "model.safetensors"), step=a.steps)
    print(f"wrote {os.path.join(a.out, 'model.safetensors')} (nsa sample --ckpt reads it)")


if __name__ == "__main__":
    main()
