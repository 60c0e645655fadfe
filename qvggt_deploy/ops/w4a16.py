"""ctypes binding of ``libqvggt_w4a16.so`` (the W4A16 GEMM of ``kernels/``).

No CUDA build of torch is needed to import this module or to build the library; calling the
kernel needs CUDA tensors. The library is found through ``QVGGT_W4A16_LIB`` (a file path), as
package data (``qvggt_deploy/ops/lib/libqvggt_w4a16.so``, where a wheel built after ``make -C
kernels`` carries it) or, in a source checkout, at ``kernels/build/libqvggt_w4a16.so``.

Tensor layouts are those of the LAYOUT block in ``kernels/w4a16_gemm.cu``; the packer is
:func:`repack_for_kernel` (re-exported from :mod:`qvggt_deploy.ops.layout`).
"""
from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path
from typing import Optional

import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.ops.layout import kernel_shape_error, repack_for_kernel, unrepack_from_kernel

__all__ = ["ABI_VERSION", "ALGOS", "library_path", "load_library", "gemm", "dequantize", "workspace_size",
           "dispatch_min_m", "repack_for_kernel", "unrepack_from_kernel"]

ABI_VERSION = 2  # QVGGT_W4A16_ABI_VERSION in kernels/w4a16_gemm.h
ENV_LIB = "QVGGT_W4A16_LIB"
# qvggt_w4a16_algo: "auto" is the library's whole dispatch (dispatch table included), "fused" the
# same without the dequantise + cuBLAS route, "dequant_cublas" that route forced.
ALGOS = {"auto": 0, "gemv": 1, "mma16": 2, "mma64": 3, "mma128": 4, "dequant_cublas": 5, "fused": 6}
STATUS_LAUNCH = 7
STATUS_CUBLAS = 8
# cudaError_t values worth a hint (the library links the CUDA runtime statically, so it cannot
# lend us cudaGetErrorString).
_CUDA_HINTS = {
    209: "no kernel image for this GPU: rebuild with its architecture, e.g. `make -C kernels ARCHS=90`",
    98: "invalid device function: rebuild the library for this GPU's architecture",
    2: "out of memory",
    1: "invalid value",
}

PACKAGE_LIB = Path(__file__).resolve().parent / "lib"
_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None


def library_path() -> Path:
    """Where the library is looked for: ``$QVGGT_W4A16_LIB``, the package's ``ops/lib/``, then the
    source checkout's ``kernels/build/`` (the last place is returned when none exists)."""
    from qvggt_deploy.ops.build import LIB_NAME, kernels_dir

    env = os.environ.get(ENV_LIB)
    if env:
        return Path(env)
    packaged = PACKAGE_LIB / LIB_NAME
    if packaged.is_file():
        return packaged
    source = kernels_dir(required=False)
    return (source / "build" / LIB_NAME) if source is not None else packaged


def _declare(lib: ctypes.CDLL) -> None:
    vp, i, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
    sigs = {
        "qvggt_w4a16_abi_version": [],
        "qvggt_w4a16_status_string": [i],
        "qvggt_w4a16_last_cuda_error": [],
        "qvggt_w4a16_check_shape": [i, i, i, i],
        "qvggt_w4a16_last_cublas_status": [],
        "qvggt_w4a16_dispatch_min_m": [i, i, i, ctypes.POINTER(i)],
        "qvggt_w4a16_workspace_size": [i, i, i, i, ctypes.POINTER(sz)],
        "qvggt_w4a16_workspace_size_ex": [i, i, i, i, i, ctypes.POINTER(sz)],
        "qvggt_w4a16_gemm": [vp, vp, vp, vp, vp, i, i, i, i, vp, sz, vp],
        "qvggt_w4a16_gemm_ex": [vp, vp, vp, vp, vp, i, i, i, i, vp, sz, vp, i, i],
        "qvggt_w4a16_gemm_ctx": [vp, vp, vp, vp, vp, vp, i, i, i, i, vp, sz, vp, i, i],
        "qvggt_w4a16_context_create": [ctypes.POINTER(vp)],
        "qvggt_w4a16_context_reserve_cublas": [vp],
        "qvggt_w4a16_context_destroy": [vp],
        "qvggt_w4a16_dequantize": [vp, vp, vp, i, i, i, vp],
    }
    for name, args in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = ctypes.c_char_p if name == "qvggt_w4a16_status_string" else ctypes.c_int


def load_library() -> ctypes.CDLL:
    """Load (once) and return the library; :class:`QvggtError` says how to build it if missing."""
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        path = library_path()
        if not path.is_file():
            raise QvggtError(f"W4A16 kernel library not found at {path}; build it with `make -C kernels` "
                             f"(needs nvcc; ARCHS=87 for one architecture) or point {ENV_LIB} at a built "
                             f"libqvggt_w4a16.so")
        try:
            lib = ctypes.CDLL(str(path))
            _declare(lib)
        except (OSError, AttributeError) as exc:
            raise QvggtError(f"cannot load the W4A16 kernel library {path}: {exc}") from exc
        version = lib.qvggt_w4a16_abi_version()
        if version != ABI_VERSION:
            raise QvggtError(f"{path} has ABI version {version}, this binding needs {ABI_VERSION}; rebuild it "
                             f"with `make -C kernels`")
        _lib = lib
        return lib


def _raise(lib: ctypes.CDLL, status: int, what: str, m: int, n: int, k: int, group: int) -> None:
    if status == 0:
        return
    message = lib.qvggt_w4a16_status_string(status).decode()
    if status == STATUS_LAUNCH:
        code = lib.qvggt_w4a16_last_cuda_error()
        message += f" (cudaError_t {code}{': ' + _CUDA_HINTS[code] if code in _CUDA_HINTS else ''})"
    elif status == STATUS_CUBLAS:
        message += f" (cublasStatus_t {lib.qvggt_w4a16_last_cublas_status()})"
    raise QvggtError(f"{what} failed for m={m}, n={n}, k={k}, group={group}: {message}")


def workspace_size(m: int, n: int, k: int, group: int, algo: str = "auto") -> int:
    """Bytes of workspace that let ``algo`` take its preferred route for every M <= ``m``."""
    if algo not in ALGOS:
        raise QvggtError(f"unknown W4A16 algo {algo!r}; choose one of {', '.join(ALGOS)}")
    lib = load_library()
    size = ctypes.c_size_t(0)
    _raise(lib, lib.qvggt_w4a16_workspace_size_ex(m, n, k, group, ALGOS[algo], ctypes.byref(size)),
           "workspace query", m, n, k, group)
    return size.value


def dispatch_min_m(sm: int, n: int, k: int) -> Optional[int]:
    """The library's compiled-in dispatch table: rows from which AUTO uses dequantise + cuBLAS
    for an ``[n, k]`` weight on compute capability ``sm`` (None: never)."""
    lib = load_library()
    value = ctypes.c_int(0)
    _raise(lib, lib.qvggt_w4a16_dispatch_min_m(sm, n, k, ctypes.byref(value)), "dispatch lookup", 0, n, k, 0)
    return value.value or None


def _forced_split_bytes(split_k: int, m: int, n: int, k: int) -> int:
    """Split-K scratch a forced ``split_k`` needs (the library's normalize_splits: no empty K
    slice): fp32 partials ``[splits, m, n]``, then one int32 arrival counter per output tile."""
    chunks = k // 64
    if split_k <= 1 or chunks <= 1:
        return 0
    splits = min(split_k, chunks)
    per = -(-chunks // splits)
    splits = -(-chunks // per)
    counters = max(n // 16, -(-m // 16) * -(-n // 128))  # splitk_counter_count in kernels/w4a16_internal.h
    return splits * m * n * 4 + 4 * counters if splits > 1 else 0


def _check_weights(qweight: torch.Tensor, scales: torch.Tensor, group: int, device: torch.device):
    if qweight.dtype != torch.int32 or qweight.dim() != 2 or qweight.shape[1] % 8:
        raise QvggtError(f"qweight must be int32 [K/64, 8*N] (repack_for_kernel), got {qweight.dtype} "
                         f"{tuple(qweight.shape)}")
    k, n = qweight.shape[0] * 64, qweight.shape[1] // 8
    reason = kernel_shape_error(n, k, group)
    if reason is not None:
        raise QvggtError(f"W4A16 weights [N={n}, K={k}], group {group}: {reason}")
    if scales.dtype != torch.float16 or tuple(scales.shape) != (k // group, n):
        raise QvggtError(f"scales must be fp16 [K/group, N] = [{k // group}, {n}], got {scales.dtype} "
                         f"{tuple(scales.shape)}")
    for name, t in (("qweight", qweight), ("scales", scales)):
        if t.device != device:
            raise QvggtError(f"{name} is on {t.device}, expected {device}")
        if not t.is_contiguous():
            raise QvggtError(f"{name} must be contiguous")
    return n, k


def gemm(a: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, bias: Optional[torch.Tensor], group: int,
         *, algo: str = "auto", split_k: int = 0, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out [M, N] = a @ W^T (+ bias)`` on the GPU, on torch's current stream of ``a``'s device.

    Args:
        a (Tensor): fp16 CUDA ``[M, K]`` (made contiguous if it is not).
        qweight (Tensor): int32 ``[K/64, 8*N]`` from :func:`repack_for_kernel`, same device.
        scales (Tensor): fp16 ``[K/group, N]`` from :func:`repack_for_kernel`.
        bias (Tensor, optional): fp16 ``[N]``.
        group (int): input channels per scale.
        algo (str): one of :data:`ALGOS`. Defaults to ``"auto"`` (the library's dispatch, which
            dequantises + calls cuBLAS from the dispatch table's threshold on).
        split_k (int): K slices for the GEMV and tensor-core algos, 0 = the library's choice. Defaults to 0.
        out (Tensor, optional): fp16 ``[M, N]`` to write into.

    Returns:
        fp16 ``[M, N]``.
    """
    if not a.is_cuda or a.dtype != torch.float16 or a.dim() != 2:
        raise QvggtError(f"activations must be a 2-D fp16 CUDA tensor [M, K], got {a.dtype} "
                         f"{tuple(a.shape)} on {a.device}")
    n, k = _check_weights(qweight, scales, group, a.device)
    m = a.shape[0]
    if a.shape[1] != k:
        raise QvggtError(f"activations [M={m}, K={a.shape[1]}] do not match weights [N={n}, K={k}]")
    if bias is not None and (bias.dtype != torch.float16 or tuple(bias.shape) != (n,) or bias.device != a.device):
        raise QvggtError(f"bias must be fp16 [{n}] on {a.device}, got {bias.dtype} {tuple(bias.shape)} on {bias.device}")
    if algo not in ALGOS:
        raise QvggtError(f"unknown W4A16 algo {algo!r}; choose one of {', '.join(ALGOS)}")
    lib = load_library()
    a = a.contiguous()
    bias = bias.contiguous() if bias is not None else None
    if out is None:
        out = torch.empty(m, n, dtype=torch.float16, device=a.device)
    elif out.dtype != torch.float16 or tuple(out.shape) != (m, n) or out.device != a.device or not out.is_contiguous():
        raise QvggtError(f"out must be a contiguous fp16 [{m}, {n}] tensor on {a.device}")
    with torch.cuda.device(a.device):
        ws_bytes = max(workspace_size(m, n, k, group, algo), _forced_split_bytes(split_k, m, n, k))
        workspace = torch.empty(ws_bytes, dtype=torch.uint8, device=a.device) if ws_bytes else None
        stream = torch.cuda.current_stream(a.device).cuda_stream
        status = lib.qvggt_w4a16_gemm_ex(
            a.data_ptr(), qweight.data_ptr(), scales.data_ptr(), bias.data_ptr() if bias is not None else None,
            out.data_ptr(), m, n, k, group, workspace.data_ptr() if workspace is not None else None, ws_bytes,
            stream, ALGOS[algo], split_k)
    _raise(lib, status, f"W4A16 GEMM ({algo})", m, n, k, group)
    return out


def dequantize(qweight: torch.Tensor, scales: torch.Tensor, group: int, *,
               out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """fp16 ``[N, K]`` (PyTorch Linear layout): exactly the weights :func:`gemm` multiplies.

    Args:
        qweight, scales, group: as in :func:`gemm`.
        out (Tensor, optional): contiguous fp16 ``[N, K]`` on the same device to write into.
    """
    if not qweight.is_cuda:
        raise QvggtError(f"dequantize needs CUDA tensors, got qweight on {qweight.device}")
    n, k = _check_weights(qweight, scales, group, qweight.device)
    if out is None:
        out = torch.empty(n, k, dtype=torch.float16, device=qweight.device)
    elif out.dtype != torch.float16 or tuple(out.shape) != (n, k) or out.device != qweight.device \
            or not out.is_contiguous():
        raise QvggtError(f"out must be a contiguous fp16 [{n}, {k}] tensor on {qweight.device}")
    lib = load_library()
    with torch.cuda.device(qweight.device):
        stream = torch.cuda.current_stream(qweight.device).cuda_stream
        status = lib.qvggt_w4a16_dequantize(qweight.data_ptr(), scales.data_ptr(), out.data_ptr(), n, k, group, stream)
    _raise(lib, status, "W4A16 dequantize", 0, n, k, group)
    return out
