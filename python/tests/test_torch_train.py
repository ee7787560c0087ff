# SPDX-License-Identifier: Apache-2.0
# test_torch_train.py — the CPU smoke run of bench/torch_train.py (the PyTorch baseline of
# bench_train, issue 18): the tiny config trains 2 steps eagerly and prints bench_train's CSV
# with a finite, positive throughput. Not a benchmark, and not its GPU modes (cuDNN SDPA,
# torch.compile), which only the GPU call runs. Skipped, with the reason, where torch is absent.
import csv
import math
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="torch is not installed (scripts/torch_cpu.sh installs it)")

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "bench" / "torch_train.py"
HEADER = "config,backend,B,T,tok_per_s,step_ms,fwd_ms,bwd_ms,opt_ms,data_ms,mfu,peak_mib"


def test_tiny_cpu_eager():
    r = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--steps", "2",
                        "--warmup", "1", "--part_steps", "1", "--threads", "1"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stdout.splitlines() if not l.startswith("#")]
    assert lines[0] == HEADER, r.stdout
    row = next(csv.DictReader(lines))
    assert row["config"] == "tiny" and row["backend"] == "torch-eager-math", row
    assert (int(row["B"]), int(row["T"])) == (2, 128), row
    tps, ms = float(row["tok_per_s"]), float(row["step_ms"])
    assert math.isfinite(tps) and tps > 0 and ms > 0, row
    # the throughput is the tokens of a step over its median time
    assert abs(tps - 2 * 128 / (ms * 1e-3)) <= 0.01 * tps, row
    for k in ("fwd_ms", "bwd_ms", "opt_ms", "data_ms"):
        assert float(row[k]) >= 0, row
