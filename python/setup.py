# SPDX-License-Identifier: Apache-2.0
# setup.py — builds libnsa with CMake into the package (nsa/_lib/libnsa.so), or copies the one
# NSA_LIBRARY names. Not a C++ extension: the package binds libnsa's C API through ctypes.
# Invariant: a missing tool fails the install with one line naming it and how to get it.
import os
import shutil
import subprocess
import sys

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _fail(what):
    sys.exit(f"nsa: cannot build libnsa: {what}\n"
             f"hint: or build it yourself and install with NSA_LIBRARY=/path/to/libnsa.so")


def _cuda_wanted():
    """NSA_CUDA=ON|OFF when given; else ON only where nvcc and a GPU (nvidia-smi -L) exist."""
    v = os.environ.get("NSA_CUDA", "").upper()
    if v in ("ON", "OFF"):
        return v
    if shutil.which("nvcc") is None or shutil.which("nvidia-smi") is None:
        return "OFF"
    r = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return "ON" if r.returncode == 0 and "GPU" in r.stdout else "OFF"


def build_libnsa(dest):
    given = os.environ.get("NSA_LIBRARY")
    if given:
        if not os.path.isfile(given):
            _fail(f"NSA_LIBRARY={given} is not a file")
        shutil.copy2(given, dest)
        return
    if not os.path.isfile(os.path.join(ROOT, "include", "nsa.h")):
        _fail(f"the repository (include/nsa.h) is not at {ROOT}: install from a checkout")
    if shutil.which("cmake") is None:
        _fail("cmake not found (apt-get install cmake, or pip install cmake)")
    if not any(shutil.which(c) for c in (os.environ.get("CC", "cc"), "gcc", "clang")):
        _fail("no C compiler found (apt-get install gcc)")
    bdir = os.path.join(ROOT, "build-python")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    cfg = ["cmake", "-S", ROOT, "-B", bdir, *gen, "-DCMAKE_BUILD_TYPE=Release",
           "-DNSA_TESTS=OFF", f"-DNSA_CUDA={_cuda_wanted()}"]
    r = subprocess.run(cfg, capture_output=True, text=True)
    if r.returncode != 0:
        log = r.stdout + r.stderr
        if "OpenBLAS not found" in log:
            _fail("OpenBLAS not found (apt-get install libopenblas-openmp-dev)")
        if "OpenMP" in log:
            _fail("OpenMP not found for the C compiler (gcc has it; apt-get install libomp-dev "
                  "for clang)")
        _fail("cmake configure failed:\n" + log[-2000:])
    jobs = str(os.cpu_count() or 2)
    r = subprocess.run(["cmake", "--build", bdir, "--target", "nsa_shared", "-j", jobs],
                       capture_output=True, text=True)
    if r.returncode != 0:
        _fail("cmake build failed:\n" + (r.stdout + r.stderr)[-3000:])
    shutil.copy2(os.path.join(bdir, "src", "libnsa.so"), dest)


class BuildPy(build_py):
    def run(self):
        super().run()
        out = os.path.join(self.build_lib, "nsa", "_lib")
        os.makedirs(out, exist_ok=True)
        build_libnsa(os.path.join(out, "libnsa.so"))


class BinaryDistribution(Distribution):
    """The wheel carries libnsa.so: tag it for this platform."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildPy}, distclass=BinaryDistribution)
