# SPDX-License-Identifier: Apache-2.0
"""lm.py — the byte-level language model of lm/ in PyTorch (nsa.NSALM: embedding, blocks of
RMSNorm + NSAttention + RMSNorm + SwiGLU, final RMSNorm, head) and the loader of the C trainer's
safetensors checkpoints (lm/ckpt.c: F32 tensors under lm/model.c's names, the model config in
the metadata).
Not the trainer (examples/train_torch.py trains one with torch's optimizers).
Invariant: load_checkpoint gives a model whose forward is the C model's forward (same names,
shapes and math; fp32).
"""
import json
import struct

import torch
import torch.nn.functional as F
from torch import nn

from ._op import Config
from .module import NSAttention


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x²) + 1e-5) · w (lm/layers.c, RMS_EPS)."""

    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        cfg = Config(l=c["l"], d=c["d"], lp=c["lp"], n=c["n"], n_init=1, n_local=2, w=c["w"])
        self.ln1 = RMSNorm(c["dim"])
        self.attn = NSAttention(c["dim"], c["heads"], c["kv_heads"], cfg, phi=c["phi"],
                                gate=c["gate"], gate_temp=c["gate_temp"],
                                rope_base=c["rope_base"])
        self.ln2 = RMSNorm(c["dim"])
        self.w1 = nn.Linear(c["dim"], c["ffn"], bias=False)
        self.w3 = nn.Linear(c["dim"], c["ffn"], bias=False)
        self.w2 = nn.Linear(c["ffn"], c["dim"], bias=False)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        h = self.ln2(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


DEFAULTS = dict(layers=4, dim=128, heads=4, kv_heads=2, ffn=384, l=16, d=8, lp=16, n=4, w=32,
                phi="avg", gate="sigmoid", gate_temp=1.0, rope_base=10000.0)


class NSALM(nn.Module):
    """The byte-level NSA model of lm/ (vocabulary 256). config: dict with DEFAULTS' keys (the
    names of `nsa train`'s flags)."""

    def __init__(self, **config):
        super().__init__()
        c = dict(DEFAULTS)
        c.update(config)
        self.config = c
        self.emb = nn.Embedding(256, c["dim"])
        self.layers = nn.ModuleList(Block(c) for _ in range(c["layers"]))
        self.lnf = RMSNorm(c["dim"])
        self.head = nn.Linear(c["dim"], 256, bias=False)

    def forward(self, tokens):
        """tokens (B, T) int64 bytes -> logits (B, T, 256)."""
        x = self.emb(tokens)
        for blk in self.layers:
            x = blk(x)
        return self.head(self.lnf(x))


def _parse_config(s):
    c = {}
    for kv in s.split():
        k, v = kv.split("=", 1)
        c[k] = v if k in ("phi", "gate") else (float(v) if "." in v or k in ("gate_temp",
                                                                        "rope_base") else int(v))
    return c


def _torch_name(name):
    """Checkpoint name (lm/model.c) -> NSALM state_dict name."""
    if name in ("emb", "head"):
        return name + ".weight"
    if name == "lnf":
        return "lnf.weight"
    parts = name.split(".")  # layers.L.<rest>
    rest = ".".join(parts[2:])
    pre = f"layers.{parts[1]}."
    if rest in ("ln1", "ln2"):
        return pre + rest + ".weight"
    if rest.startswith("mlp."):
        return pre + rest[4:] + ".weight"
    if rest == "attn.bg" or rest.startswith("attn.phi_"):
        return pre + rest
    return pre + rest + ".weight"


def read_safetensors(path):
    """(tensors by name as float32, metadata) of a safetensors file with F32 or BF16 tensors
    (lm/ckpt.c's; docs/hardening.md checks the format strictly, this reader does not)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    dts = {"F32": torch.float32, "BF16": torch.bfloat16}
    for name, t in header.items():
        if t["dtype"] not in dts:
            raise ValueError(f"{path}: {name}: dtype {t['dtype']}, expected F32 or BF16")
        a, b = t["data_offsets"]
        x = torch.frombuffer(bytearray(data[a:b]), dtype=dts[t["dtype"]]).view(t["shape"])
        out[name] = x.float()
    return out, meta


def load_checkpoint(path):
    """An NSALM with the parameters of a checkpoint written by `nsa train` (model.safetensors);
    the AdamW moments in the file are skipped."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") not in ("nsa-lm-1", "nsa-lm-2"):
        raise ValueError(f"{path}: format {meta.get('format')!r}, expected nsa-lm-2 (or -1)")
    model = NSALM(**_parse_config(meta["config"]))
    sd = {_torch_name(k): v for k, v in tensors.items() if not k.startswith("adam.")}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: missing {missing}, unexpected {unexpected}")
    return model


def _ckpt_name(torch_name):
    """NSALM state_dict name -> checkpoint name (the inverse of _torch_name)."""
    n = torch_name[:-len(".weight")] if torch_name.endswith(".weight") else torch_name
    parts = n.split(".")
    if parts[0] == "layers" and parts[2] in ("w1", "w2", "w3"):
        return ".".join(parts[:2] + ["mlp", parts[2]])
    return n


def _config_str(c):
    keys = ("layers", "dim", "heads", "kv_heads", "ffn", "l", "d", "lp", "n", "w", "phi", "gate",
            "gate_temp", "rope_base")
    fmt = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
    return " ".join(f"{k}={fmt(c[k])}" for k in keys)


def save_checkpoint(model, path, step=0):
    """Writes model as a checkpoint `nsa sample` (and `nsa train --resume`'s loader) reads:
    format nsa-lm-2 of docs/hardening.md (F32, FNV-1a of the whole file, no optimizer moments)."""
    names, blobs, off = {}, [], 0
    for tn, t in model.state_dict().items():
        b = t.detach().to(torch.float32).contiguous().cpu().numpy().tobytes()
        names[_ckpt_name(tn)] = {"dtype": "F32", "shape": list(t.shape),
                                 "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    zero = "0" * 16
    meta = {"format": "nsa-lm-2", "step": str(step), "seed": "0", "data_hash": zero,
            "config": _config_str(model.config), "optimizer": "none", "checksum": zero}
    header = json.dumps({"__metadata__": meta, **names}, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    blob = struct.pack("<Q", len(header)) + header + b"".join(blobs)
    h = 1469598103934665603  # FNV-1a 64 of the whole file, its own digits read as zeros
    for byte in blob:
        h = ((h ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    blob = blob.replace(f'"checksum":"{zero}"'.encode(), f'"checksum":"{h:016x}"'.encode(), 1)
    with open(path, "wb") as f:
        f.write(blob)
