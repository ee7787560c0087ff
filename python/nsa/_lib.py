# SPDX-License-Identifier: Apache-2.0
"""_lib.py — ctypes binding of libnsa's public C API (include/nsa.h): structs, loading, errors,
and one nsa_context per (device, thread).
Not the op itself (see _op.py) and no torch logic beyond turning a tensor into an nsa_tensor.
Invariant: the structs mirror nsa.h field for field; a failing call raises NsaError carrying
nsa_context_message (which names the field at fault).
"""
import ctypes
import os
import threading

MAX_DIMS = 5
DTYPE_F32, DTYPE_BF16, DTYPE_F16, DTYPE_I32 = 0, 1, 2, 3
DEVICE_CPU, DEVICE_CUDA = 0, 1
STATUS_NAMES = ["NSA_OK", "NSA_ERR_INVALID_ARG", "NSA_ERR_CONFIG", "NSA_ERR_SHAPE",
                "NSA_ERR_DTYPE", "NSA_ERR_DEVICE", "NSA_ERR_OVERFLOW", "NSA_ERR_NOMEM",
                "NSA_ERR_UNSUPPORTED", "NSA_ERR_CAUSALITY", "NSA_ERR_CACHE", "NSA_ERR_FLAG",
                "NSA_ERR_PROFILE", "NSA_ERR_CUDA", "NSA_ERR_IO", "NSA_ERR_INTERNAL"]


class NsaError(RuntimeError):
    """A libnsa call failed. `status` is the nsa_status name; the message is the library's own
    (it names the field at fault, e.g. "k_sel: shape[1] = 7, expected 8")."""

    def __init__(self, status, message):
        self.status = STATUS_NAMES[status] if 0 <= status < len(STATUS_NAMES) else str(status)
        super().__init__(f"{self.status}: {message}")


class Device(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("index", ctypes.c_int)]


class Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int), ("device", Device),
                ("ndim", ctypes.c_int), ("shape", ctypes.c_int64 * MAX_DIMS),
                ("stride", ctypes.c_int64 * MAX_DIMS)]


class Config(ctypes.Structure):
    _fields_ = [(f, ctypes.c_int) for f in ("l", "d", "lp", "n", "n_init", "n_local", "w")] + \
               [("scale", ctypes.c_float)] + \
               [(f, ctypes.c_int) for f in ("Hq", "Hkv", "Dk", "Dv")]


FWD_TENSORS = ("q", "k_cmp", "v_cmp", "k_sel", "v_sel", "k_win", "v_win", "gates", "out",
               "out_cmp", "out_sel", "out_win", "lse_cmp", "lse_sel", "lse_win", "sel_blocks",
               "sel_ranges")
BWD_TENSORS = ("dout", "dq", "dk_cmp", "dv_cmp", "dk_sel", "dv_sel", "dk_win", "dv_win",
               "dgates")


def _fwd_fields():
    f = [("cfg", Config)]
    for name in FWD_TENSORS:
        f.append((name, Tensor))
        if name == "v_cmp":
            f.append(("cmp_compressed", ctypes.c_int))
    f += [("cu_seqlens", Tensor), ("max_seqlen", ctypes.c_int64), ("block_indices", Tensor)]
    return f


class FwdArgs(ctypes.Structure):
    _fields_ = _fwd_fields()


class BwdArgs(ctypes.Structure):
    _fields_ = [(name, Tensor) for name in BWD_TENSORS]


class KvCacheDesc(ctypes.Structure):
    _fields_ = [("cfg", Config), ("dtype", ctypes.c_int), ("device", Device), ("B", ctypes.c_int),
                ("max_len", ctypes.c_int64), ("cmp_external", ctypes.c_int)]


class PrefillExtra(ctypes.Structure):
    _fields_ = [("b0", ctypes.c_int), ("raw_k_cmp", Tensor), ("raw_v_cmp", Tensor)]


class DecodeArgs(ctypes.Structure):
    _fields_ = [("cfg", Config)] + [(n, Tensor) for n in (
        "q", "k_cmp", "v_cmp", "k_sel", "v_sel", "k_win", "v_win", "kc_new", "vc_new", "gates",
        "out")] + [("active", ctypes.POINTER(ctypes.c_uint8)), ("sel_blocks", Tensor)]


class Toolchain(ctypes.Structure):
    _fields_ = [("cuda_built", ctypes.c_int), ("runtime_version", ctypes.c_int),
                ("driver_version", ctypes.c_int), ("narchs", ctypes.c_int),
                ("archs", ctypes.c_int * 8), ("note", ctypes.c_char * 128)]


def _candidates():
    env = os.environ.get("NSA_LIBRARY")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    return [os.path.join(here, "_lib", "libnsa.so")]


def _load():
    tried = []
    for path in _candidates():
        if os.path.exists(path):
            return ctypes.CDLL(path), path
        tried.append(path)
    raise ImportError("nsa: libnsa.so not found (looked at " + ", ".join(tried) + "); reinstall "
                      "with `pip install ./python` from the repository, or set NSA_LIBRARY="
                      "/path/to/libnsa.so")


lib, lib_path = _load()

_P = ctypes.c_void_p
_sigs = {
    "nsa_context_create": (ctypes.c_int, [ctypes.POINTER(_P), ctypes.c_char_p, ctypes.c_size_t]),
    "nsa_context_destroy": (None, [_P]),
    "nsa_context_message": (ctypes.c_char_p, [_P]),
    "nsa_context_set_stream": (ctypes.c_int, [_P, _P]),
    "nsa_context_set_threads": (ctypes.c_int, [_P, ctypes.c_int]),
    "nsa_context_toolchain": (ctypes.c_int, [_P, ctypes.POINTER(Toolchain)]),
    "nsa_forward": (ctypes.c_int, [_P, ctypes.POINTER(FwdArgs)]),
    "nsa_backward": (ctypes.c_int, [_P, ctypes.POINTER(FwdArgs), ctypes.POINTER(BwdArgs)]),
    "nsa_num_cmp": (ctypes.c_int64, [ctypes.POINTER(Config), ctypes.c_int64]),
    "nsa_kv_cache_create": (ctypes.c_int, [_P, ctypes.POINTER(KvCacheDesc), ctypes.POINTER(_P)]),
    "nsa_kv_cache_destroy": (None, [_P]),
    "nsa_kv_cache_reset": (ctypes.c_int, [_P, _P, ctypes.c_int]),
    "nsa_kv_cache_len": (ctypes.c_int64, [_P, ctypes.c_int]),
    "nsa_kv_cache_prefill": (ctypes.c_int, [_P, _P, ctypes.POINTER(FwdArgs),
                                            ctypes.POINTER(PrefillExtra)]),
    "nsa_kv_cache_emits_next": (ctypes.c_int, [_P, ctypes.c_int]),
    "nsa_kv_cache_raw_cmp_tail": (ctypes.c_int, [_P, _P, ctypes.c_int, Tensor, Tensor]),
    "nsa_decode_step": (ctypes.c_int, [_P, _P, ctypes.POINTER(DecodeArgs)]),
}
for _name, (_res, _args) in _sigs.items():
    _fn = getattr(lib, _name)
    _fn.restype, _fn.argtypes = _res, _args


class Context:
    """One nsa_context: created once per (device, thread) by context_for and kept for the
    thread's life; the C context is not thread-safe (per-call message, counters)."""

    def __init__(self):
        h = _P()
        msg = ctypes.create_string_buffer(256)
        st = lib.nsa_context_create(ctypes.byref(h), msg, 256)
        if st != 0:
            raise NsaError(st, msg.value.decode(errors="replace"))
        self.h = h
        self.stream = None
        self.cache = {}  # per-signature argument structs (see _op.py)

    def __del__(self):
        if getattr(self, "h", None):
            lib.nsa_context_destroy(self.h)
            self.h = None

    def check(self, status):
        if status != 0:
            raise NsaError(status, lib.nsa_context_message(self.h).decode(errors="replace"))

    def set_stream(self, stream):
        if stream != self.stream:
            self.check(lib.nsa_context_set_stream(self.h, stream))
            self.stream = stream


_tls = threading.local()


def context_for(device_key):
    """The calling thread's context for device_key (-1 for the CPU, else the CUDA ordinal)."""
    d = getattr(_tls, "ctx", None)
    if d is None:
        d = _tls.ctx = {}
    c = d.get(device_key)
    if c is None:
        c = d[device_key] = Context()
    return c


def set_threads(n):
    """OpenMP threads of libnsa's CPU paths for this thread's CPU context (0: the OpenMP
    default). Results do not depend on it (the CPU reference is bitwise deterministic)."""
    c = context_for(-1)
    c.check(lib.nsa_context_set_threads(c.h, int(n)))


def toolchain():
    """What nsa_context_toolchain reports for this build and machine, as a dict."""
    c = context_for(-1)
    t = Toolchain()
    c.check(lib.nsa_context_toolchain(c.h, ctypes.byref(t)))
    return {"cuda_built": bool(t.cuda_built), "runtime_version": t.runtime_version,
            "driver_version": t.driver_version, "archs": list(t.archs[:t.narchs]),
            "note": t.note.decode(errors="replace")}
