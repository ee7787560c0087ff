# SPDX-License-Identifier: Apache-2.0
"""nsa — Native Sparse Attention for PyTorch, on libnsa (the C11/CUDA C library of this
repository), bound through ctypes.

    import nsa
    out = nsa.attention(q, k, v, gates, nsa.Config(w=512))    # autograd, torch.compile
    from nsa import parallel_nsa                              # fla's calling convention

Not a C++ extension: nothing here is compiled against torch, so one build of libnsa serves
every supported torch version (the version matrix: docs/pytorch.md).
"""
import re

import torch

TORCH_MIN = (2, 4)   # torch.library.custom_op / register_autograd / get_autocast_dtype
TORCH_BELOW = (3, 0)
TORCH_TESTED = ("2.15.0",)


def _torch_version():
    m = re.match(r"(\d+)\.(\d+)", torch.__version__)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


if not (TORCH_MIN <= _torch_version() < TORCH_BELOW):
    raise ImportError(f"nsa needs torch >= {TORCH_MIN[0]}.{TORCH_MIN[1]} and < "
                      f"{TORCH_BELOW[0]}, found {torch.__version__}; tested: "
                      f"{', '.join(TORCH_TESTED)} (docs/pytorch.md)")

from ._lib import NsaError, set_threads, toolchain  # noqa: E402
from ._op import Config, attention, num_cmp  # noqa: E402
from .fla import parallel_nsa  # noqa: E402
from .lm import NSALM, load_checkpoint, save_checkpoint  # noqa: E402
from .module import KVCache, NSAttention  # noqa: E402

__all__ = ["Config", "KVCache", "NSALM", "NSAttention", "load_checkpoint", "save_checkpoint", "NsaError", "attention", "num_cmp", "parallel_nsa", "set_threads", "toolchain"]
__version__ = "0.1.0"
