"""Build ``libqvggt_w4a16.so`` from this checkout's ``kernels/`` with nvcc (``make``).

Used by the kernel tests (one architecture into a temporary folder) and by
``benchmarks/gpu_check.py`` (the GPU's own architecture). ``make -C kernels`` stays the way to
build the full fat binary.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterable, Optional, Union

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)

LIB_NAME = "libqvggt_w4a16.so"
ENV_KERNELS = "QVGGT_KERNELS_DIR"


def kernels_dir(required: bool = True) -> Optional[Path]:
    """The kernel sources: ``$QVGGT_KERNELS_DIR``, else ``kernels/`` of the source checkout this
    package runs from (an editable install); None (or an error) when neither exists."""
    env = os.environ.get(ENV_KERNELS)
    candidates = [Path(env)] if env else [Path(__file__).resolve().parents[2] / "kernels"]
    for path in candidates:
        if (path / "w4a16_gemm.cu").is_file():
            return path
    if required:
        raise QvggtError(f"kernel sources not found ({env or 'no source checkout'}); set {ENV_KERNELS} to the "
                         f"kernels/ folder of a qvggt-deploy checkout")
    return None


def find_nvcc() -> Optional[str]:
    """Path of nvcc: ``$NVCC``, ``PATH``, then ``$CUDA_HOME/bin`` and ``/usr/local/cuda/bin``."""
    env = os.environ.get("NVCC")
    if env and Path(env).is_file():
        return env
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if root and (Path(root) / "bin" / "nvcc").is_file():
            return str(Path(root) / "bin" / "nvcc")
    return None


def cuda_arch_of_current_gpu() -> str:
    """``"90"`` for an H100, ``"87"`` for Orin: the current torch CUDA device's compute capability."""
    import torch

    major, minor = torch.cuda.get_device_capability()
    return f"{major}{minor}"


def build_library(archs: Union[str, Iterable[str]] = "87", build_dir: Optional[Union[str, Path]] = None,
                  jobs: int = 2, timeout: float = 900.0) -> Path:
    """Run ``make -C kernels ARCHS=... BUILD_DIR=...`` and return the library's path.

    Args:
        archs: SM numbers, e.g. ``"87"`` or ``["80", "90"]``. Defaults to ``"87"``.
        build_dir: output folder. Defaults to ``kernels/build``.
        jobs: parallel nvcc processes. Defaults to 2.
        timeout: seconds before giving up. Defaults to 900.
    """
    nvcc = find_nvcc()
    if nvcc is None:
        raise QvggtError("nvcc not found (set NVCC or CUDA_HOME, or put it on PATH); it builds the W4A16 kernel")
    if shutil.which("make") is None:
        raise QvggtError("make not found; it drives the W4A16 kernel build (kernels/Makefile)")
    arch_list = [archs] if isinstance(archs, str) else list(archs)
    source = kernels_dir()
    build_dir = Path(build_dir) if build_dir is not None else source / "build"
    cmd = ["make", "-C", str(source), f"-j{jobs}", f"NVCC={nvcc}", f"ARCHS={' '.join(arch_list)}",
           f"BUILD_DIR={build_dir.resolve()}"]
    logger.info("building the W4A16 kernel: %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise QvggtError(f"kernel build timed out after {timeout:.0f} s: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        raise QvggtError(f"kernel build failed ({' '.join(cmd)}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    lib = build_dir / LIB_NAME
    if not lib.is_file():
        raise QvggtError(f"kernel build reported success but {lib} is missing")
    return lib
