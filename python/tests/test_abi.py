# SPDX-License-Identifier: Apache-2.0
"""test_abi.py — the ctypes structs of nsa/_lib.py against include/nsa.h, compiled: size and
every field's offset. Catches a field added to nsa.h without its mirror (which would make
libnsa read past the Python-made struct). Not a behaviour test."""
import os
import shutil
import subprocess

import pytest

from nsa import _lib as L

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STRUCTS = {"nsa_fwd_args": L.FwdArgs, "nsa_bwd_args": L.BwdArgs, "nsa_tensor": L.Tensor,
           "nsa_config": L.Config, "nsa_kv_cache_desc": L.KvCacheDesc,
           "nsa_prefill_extra": L.PrefillExtra, "nsa_decode_args": L.DecodeArgs,
           "nsa_toolchain": L.Toolchain}


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_struct_layouts_match_nsa_h(tmp_path):
    lines = ['#include <stdio.h>', '#include <stddef.h>', '#include "nsa.h"', 'int main(void) {']
    for cname, py in STRUCTS.items():
        lines.append(f'printf("{cname} sizeof %zu\\n", sizeof({cname}));')
        for fname, _ in py._fields_:
            lines.append(f'printf("{cname} {fname} %zu\\n", offsetof({cname}, {fname}));')
    lines.append("return 0; }")
    src = tmp_path / "abi.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "abi"
    subprocess.run(["cc", "-I", os.path.join(ROOT, "include"), str(src), "-o", str(exe)],
                   check=True)
    got = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split("\n")
    for line in filter(None, got):
        cname, fname, val = line.split()
        py = STRUCTS[cname]
        want = ctypes_sizeof(py) if fname == "sizeof" else getattr(py, fname).offset
        assert int(val) == want, f"{cname}.{fname}: C {val}, ctypes {want}"


def ctypes_sizeof(t):
    import ctypes
    return ctypes.sizeof(t)
