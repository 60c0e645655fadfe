"""Memory figures of this process, always in bytes (reports convert them where they print), and the
CPU a result was measured on."""
from __future__ import annotations

import sys
from typing import Optional


def ru_maxrss_bytes(value: int) -> int:
    """``getrusage().ru_maxrss`` in bytes: the kernel reports KiB on Linux, bytes on macOS."""
    return int(value) if sys.platform == "darwin" else int(value) * 1024


def peak_rss_bytes(children: bool = False) -> Optional[int]:
    """Peak resident set size of this process (``children``: of its waited-for children) in bytes;
    None where the ``resource`` module does not exist (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return ru_maxrss_bytes(resource.getrusage(who).ru_maxrss)


def current_rss_bytes() -> Optional[int]:
    """Resident bytes of this process now (Linux ``/proc``); None elsewhere."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except (OSError, ImportError):
        return None


#: CPU features that decide which kernels PyTorch and ONNX Runtime run (so timings and the
#: last bits of fp32 sums): what a result file records beside its thread count.
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
             "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


def cpu_info() -> dict:
    """The machine's CPU: model name, logical CPUs, PyTorch's kernel capability and the
    :data:`CPU_FLAGS` present (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    import os
    import platform

    info = {"machine": platform.machine(), "cpus": os.cpu_count(), "model": None, "flags": []}
    try:
        import torch

        info["capability"] = torch.backends.cpu.get_cpu_capability()
    except (ImportError, AttributeError):
        info["capability"] = None
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and info["model"] is None:
            info["model"] = value.strip()
        elif key.strip() == "flags":
            present = set(value.split())
            info["flags"] = [f for f in CPU_FLAGS if f in present]
            break
    return info
