"""Memory estimates before large runs: refuse, with the estimate, what cannot fit.

A run that does not fit is otherwise killed by the kernel after minutes of work (``check
--frames 1000`` reached 23 GB). The estimate is the structural activation model of
:mod:`qvggt_deploy.trt.memory` for a PyTorch fp32 forward pass, plus the weights and whatever the
command keeps per scene; it is compared with the memory the kernel reports as available
(``QVGGT_MEMORY_BYTES`` overrides it, for tests and for sharing a machine).
"""
from __future__ import annotations

import os
from typing import Optional

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)

#: Bytes per pixel per frame a generated scene with ground truth holds (images, depth, mask, points).
SCENE_PIXEL_BYTES = 4 * (3 + 1 + 3) + 1
#: Share of the available memory a run may plan for (the rest: Python, allocator slack, the OS).
USABLE = 0.9


def available_bytes() -> Optional[int]:
    """Memory available to a new allocation (MemAvailable), or None when unknown."""
    override = os.environ.get("QVGGT_MEMORY_BYTES")
    if override:
        return int(float(override))
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def forward_bytes(cfg, height: int, width: int, frames: int, explicit_attention: bool = False) -> int:
    """Peak bytes of one fp32 forward pass of ``cfg`` over ``frames`` frames, weights included.

    ``explicit_attention``: the runtime materialises the attention scores (an exported graph on
    ONNX Runtime), which grows with the square of the frame count; PyTorch's SDPA does not.
    """
    import dataclasses

    from qvggt_deploy.trt.memory import PYTORCH_FP32, activation_bytes, weight_bytes_for_preset

    mode = dataclasses.replace(PYTORCH_FP32, attention="explicit") if explicit_attention else PYTORCH_FP32
    act = activation_bytes(cfg, height, width, frames, mode).peak
    return int(act + weight_bytes_for_preset(cfg, "fp32", image=(height, width)).total)


def scenes_bytes(scenes: int, frames: int, height: int, width: int) -> int:
    """Bytes of ``scenes`` generated scenes with ground truth held at once."""
    return scenes * frames * height * width * SCENE_PIXEL_BYTES


def check_fits(need: int, what: str, hint: str) -> None:
    """Refuse ``what`` when its estimated ``need`` exceeds the usable available memory."""
    avail = available_bytes()
    gib = 1 << 30
    logger.debug("memory estimate for %s: %.2f GiB (available %s)", what, need / gib,
                 "unknown" if avail is None else f"{avail / gib:.2f} GiB")
    if avail is not None and need > USABLE * avail:
        raise QvggtError(f"{what} needs about {need / gib:.1f} GiB of memory by estimate, but "
                         f"{avail / gib:.1f} GiB is available; {hint}")


def check_calibration_fits(cfg, scenes: int, frames: int, size: int) -> None:
    """Refuse a calibration whose forward pass plus block caches cannot fit (the ``check_memory``
    of :mod:`qvggt_deploy.quant.run`): block-wise calibration keeps every scene's block input,
    output and float target."""
    tokens = cfg.patch_start_idx + (size // cfg.patch_size) ** 2
    cache = 4 * scenes * frames * tokens * cfg.embed_dim * 4
    check_fits(forward_bytes(cfg, size, size, frames) + cache,
               f"calibration on {scenes} scene(s) of {frames} frame(s) at {size}x{size}",
               "use fewer scenes (--synthetic / --calib-batches) or --frames")
