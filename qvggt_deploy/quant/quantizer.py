"""The one weight quantizer everything else uses (calibration, fake-quant, export, kernels).

Format (also in ``docs/formats.md``; the ONNX exporter, the CUDA kernel's packer and the TensorRT
plugin all cite this module):

- A Linear weight ``W [N, K]`` (out x in) is split into groups of ``group`` consecutive input
  channels (``K % group == 0``; group in {32, 64, 128}, or ``group == K`` for per-channel).
- Symmetric, zero point 0 (TensorRT's INT4 needs it): ``s[n, j] = clip * max|W[n, jg:(j+1)g]| / qmax``
  with ``qmax = 2^(bits-1) - 1`` (3 for INT3, 7 for INT4, 127 for INT8), rounded to fp16 and floored at
  ``2^-14`` (fp16's smallest normal; an all-zero group gets that scale and q = 0).
- ``q = clamp(round_half_even(W / s), -qmax-1, qmax)``; the dequantised weight is ``q * s``
  computed in fp32 from the fp16 scale, so every backend reproduces it exactly.
- INT4 storage (``pack_int4``): uint8 ``[N, K/2]``; byte j of row n holds k = 2j in the low nibble
  and k = 2j+1 in the high nibble, each as the unsigned value ``q + 8`` in [0, 15]. This is
  byte-for-byte ONNX Runtime's ``MatMulNBits`` B layout (``[N, K/block, block/2]``, implicit zero
  point 8). INT8 storage: int8 ``[N, K]``. Scales: fp16 ``[N, K/group]``.
"""
from __future__ import annotations

import torch

from qvggt_deploy.errors import QvggtError

SCALE_FLOOR = 2.0 ** -14
SUPPORTED_BITS = (3, 4, 8)  # 3: the ablation's W3 setting (stored as INT8)


def qmax(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def _check(w: torch.Tensor, bits: int, group: int) -> None:
    if bits not in SUPPORTED_BITS:
        raise QvggtError(f"unsupported weight bit width {bits}; use one of {SUPPORTED_BITS}")
    if w.dim() != 2:
        raise QvggtError(f"expected a 2-D weight [out, in], got shape {tuple(w.shape)}")
    if group <= 0 or w.shape[1] % group:
        raise QvggtError(f"group size {group} does not divide the input dimension {w.shape[1]}")


def compute_scales(w: torch.Tensor, bits: int, group: int, clip=1.0) -> torch.Tensor:
    """Symmetric group scales ``[N, K/group]`` (fp32 tensor holding fp16-representable values).

    ``clip`` in (0, 1] shrinks the range (clipping search); values beyond it saturate. A float
    applies to the whole layer; a tensor ``[N, K/group]`` gives one ratio per group (AWQ's
    clip search).
    """
    _check(w, bits, group)
    N, K = w.shape
    if torch.is_tensor(clip):
        if clip.shape != (N, K // group):
            raise QvggtError(f"clip ratios of shape {tuple(clip.shape)} do not match weight "
                             f"{tuple(w.shape)} with group {group}")
        if clip.numel() and not bool(((clip > 0) & (clip <= 1)).all()):
            raise QvggtError("clip ratios must be in (0, 1]")
        clip = clip.detach().float()
    elif not 0.0 < clip <= 1.0:
        raise QvggtError(f"clip ratio must be in (0, 1], got {clip}")
    absmax = w.detach().float().reshape(N, K // group, group).abs().amax(dim=-1)
    scales = (absmax * clip / qmax(bits)).to(torch.float16).float()
    return scales.clamp_min(SCALE_FLOOR)


def quantize(w: torch.Tensor, scales: torch.Tensor, bits: int, group: int) -> torch.Tensor:
    """Integer weights ``q [N, K]`` (int8 dtype for both INT4 and INT8) for given scales."""
    _check(w, bits, group)
    N, K = w.shape
    if scales.shape != (N, K // group):
        raise QvggtError(f"scales shape {tuple(scales.shape)} does not match weight {tuple(w.shape)} "
                         f"with group {group}")
    s = scales.float().repeat_interleave(group, dim=1)
    q = torch.round(w.float() / s)
    return q.clamp(-qmax(bits) - 1, qmax(bits)).to(torch.int8)


def dequantize(q: torch.Tensor, scales: torch.Tensor, group: int) -> torch.Tensor:
    """``q * s`` in fp32, ``[N, K]``."""
    return q.float() * scales.float().repeat_interleave(group, dim=1)


def fake_quantize(w: torch.Tensor, bits: int, group: int, clip=1.0) -> torch.Tensor:
    """Quantize-dequantize ``w`` (same dtype as ``w``): what the deployed weight will be."""
    scales = compute_scales(w, bits, group, clip)
    return dequantize(quantize(w, scales, bits, group), scales, group).to(w.dtype)


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """``q [N, K]`` int8 in [-8, 7] -> uint8 ``[N, K/2]`` (low nibble = even k, value q + 8)."""
    if q.dim() != 2 or q.shape[1] % 2:
        raise QvggtError(f"pack_int4 needs [N, K] with even K, got {tuple(q.shape)}")
    if q.numel() and (int(q.min()) < -8 or int(q.max()) > 7):
        raise QvggtError("pack_int4: values outside [-8, 7]")
    u = (q.to(torch.int16) + 8).to(torch.uint8)
    return (u[:, 0::2] | (u[:, 1::2] << 4)).contiguous()


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_int4`: uint8 ``[N, K/2]`` -> int8 ``[N, K]``."""
    if packed.dtype != torch.uint8 or packed.dim() != 2:
        raise QvggtError(f"unpack_int4 needs a 2-D uint8 tensor, got {packed.dtype} {tuple(packed.shape)}")
    low = (packed & 0x0F).to(torch.int16) - 8
    high = (packed >> 4).to(torch.int16) - 8
    return torch.stack([low, high], dim=-1).reshape(packed.shape[0], -1).to(torch.int8)
