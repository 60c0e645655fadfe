"""Canonical INT4 weights <-> the W4A16 kernel's device layout.

The layout is specified once, in the LAYOUT block at the top of ``kernels/w4a16_gemm.cu``
(summarised in ``docs/formats.md``, "W4A16 kernel layout"). In short, for ``W [N, K]``:

- ``qweight``: int32 ``[K/64, 8*N]`` = words ``[K/64][N/16][32][4]`` indexed
  ``[kc][nb][lane][j]``; the word's nibble ``i`` (bits ``4i..4i+3``) is ``u = q + 8`` at
  column ``16*nb + NIBBLE_N[lane, i]`` and input channel ``64*kc + 16*j + NIBBLE_K[lane, i]``.
- ``scales``: fp16 ``[K/group, N]`` (the canonical ``[N, K/group]`` transposed).

The canonical format (``qvggt_deploy/quant/quantizer.py``): uint8 ``[N, K/2]``, low nibble =
even k, value ``q + 8``; fp16 scales ``[N, K/group]``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from qvggt_deploy.errors import QvggtError

K_CHUNK = 64      # K % 64 == 0: one word chunk = one pipeline stage of the tensor-core kernel
N_BLOCK = 16      # N % 16 == 0: one word serves columns g and g + 8 of a 16-column block
GROUP_MULTIPLE = 32  # a scale must be constant over each 32-deep half of a chunk


def _nibble_tables() -> Tuple[torch.Tensor, torch.Tensor]:
    """``(NIBBLE_N, NIBBLE_K)``, each int64 ``[32, 8]``: for lane ``4g + t`` and nibble ``i``, the
    column offset in the 16-column block and the k offset in the 16-deep step (LAYOUT block)."""
    n_off = torch.empty(32, 8, dtype=torch.int64)
    k_off = torch.empty(32, 8, dtype=torch.int64)
    for lane in range(32):
        g, t = divmod(lane, 4)
        #          nibble:  0       1           2       3           4           5           6           7
        n_off[lane] = torch.tensor([g, g, g + 8, g + 8, g, g, g + 8, g + 8])
        k_off[lane] = torch.tensor([2 * t, 2 * t + 8, 2 * t, 2 * t + 8, 2 * t + 1, 2 * t + 9, 2 * t + 1, 2 * t + 9])
    return n_off, k_off


NIBBLE_N, NIBBLE_K = _nibble_tables()


def kernel_shape_error(n: int, k: int, group: int) -> Optional[str]:
    """Why ``W [n, k]`` with ``group`` cannot use the kernel, or None if it can."""
    if n <= 0 or n % N_BLOCK:
        return f"out_features N={n} must be a positive multiple of {N_BLOCK}"
    if k <= 0 or k % K_CHUNK:
        return f"in_features K={k} must be a positive multiple of {K_CHUNK}"
    if group <= 0 or group % GROUP_MULTIPLE or k % group:
        return f"group size {group} must be a multiple of {GROUP_MULTIPLE} dividing K={k}"
    return None


def _check(n: int, k: int, group: int, what: str) -> None:
    reason = kernel_shape_error(n, k, group)
    if reason is not None:
        raise QvggtError(f"{what}: {reason} (W4A16 kernel rules, kernels/w4a16_gemm.cu LAYOUT block)")


def _to_int32(words: torch.Tensor) -> torch.Tensor:
    """int64 holding unsigned 32-bit values -> int32 with the same bits."""
    return torch.where(words >= 2 ** 31, words - 2 ** 32, words).to(torch.int32)


def repack_for_kernel(qweight: torch.Tensor, scales: torch.Tensor, group: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Canonical INT4 weights -> the kernel's device layout (runs on the tensors' device).

    Args:
        qweight (Tensor): uint8 ``[N, K/2]``, canonical packing (low nibble = even k, q + 8).
        scales (Tensor): fp16 ``[N, K/group]``.
        group (int): input channels per scale.

    Returns:
        ``(qweight_dev, scales_dev)``: int32 ``[K/64, 8*N]`` and fp16 ``[K/group, N]``, contiguous.
    """
    if qweight.dtype != torch.uint8 or qweight.dim() != 2:
        raise QvggtError(f"repack_for_kernel: qweight must be uint8 [N, K/2], got {qweight.dtype} {tuple(qweight.shape)}")
    n, k = qweight.shape[0], qweight.shape[1] * 2
    _check(n, k, group, "repack_for_kernel")
    if tuple(scales.shape) != (n, k // group):
        raise QvggtError(f"repack_for_kernel: scales shape {tuple(scales.shape)} != ({n}, {k // group}) "
                         f"for qweight {tuple(qweight.shape)} and group {group}")
    # u[n, k] in [0, 15], straight from the canonical bytes (no sign round trip).
    u = torch.stack([qweight & 0x0F, qweight >> 4], dim=-1).reshape(n, k).to(torch.int64)
    # [nb, n16, kc, j, k16] -> [kc, nb, j, n16, k16], then gather each lane's 8 nibbles.
    u = u.reshape(n // 16, 16, k // 64, 4, 16).permute(2, 0, 3, 1, 4)
    lanes = u[:, :, :, NIBBLE_N.to(u.device), NIBBLE_K.to(u.device)]  # [kc, nb, j, 32, 8]
    shifts = torch.arange(0, 32, 4, device=u.device, dtype=torch.int64)
    words = (lanes << shifts).sum(dim=-1)                               # [kc, nb, j, 32]
    words = words.permute(0, 1, 3, 2).reshape(k // 64, 8 * n)           # [kc][nb][lane][j]
    return _to_int32(words).contiguous(), scales.to(torch.float16).t().contiguous()


def unrepack_from_kernel(qweight_dev: torch.Tensor, scales_dev: torch.Tensor, group: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`repack_for_kernel`: -> canonical (uint8 ``[N, K/2]``, fp16 ``[N, K/group]``)."""
    if qweight_dev.dtype != torch.int32 or qweight_dev.dim() != 2 or qweight_dev.shape[1] % 8:
        raise QvggtError(f"unrepack_from_kernel: qweight must be int32 [K/64, 8*N], got "
                         f"{qweight_dev.dtype} {tuple(qweight_dev.shape)}")
    k, n = qweight_dev.shape[0] * 64, qweight_dev.shape[1] // 8
    _check(n, k, group, "unrepack_from_kernel")
    if tuple(scales_dev.shape) != (k // group, n):
        raise QvggtError(f"unrepack_from_kernel: scales shape {tuple(scales_dev.shape)} != ({k // group}, {n})")
    u = unpack_words(qweight_dev)                                       # [N, K] in [0, 15]
    packed = (u[:, 0::2] | (u[:, 1::2] << 4)).to(torch.uint8)
    return packed.contiguous(), scales_dev.t().contiguous()


def unpack_words(qweight_dev: torch.Tensor) -> torch.Tensor:
    """Device-layout words -> ``u = q + 8`` as int64 ``[N, K]`` (the nibble map of the LAYOUT block)."""
    k, n = qweight_dev.shape[0] * 64, qweight_dev.shape[1] // 8
    words = qweight_dev.to(torch.int64) & 0xFFFFFFFF
    words = words.reshape(k // 64, n // 16, 32, 4).permute(0, 1, 3, 2)  # [kc, nb, j, lane]
    shifts = torch.arange(0, 32, 4, device=words.device, dtype=torch.int64)
    nibbles = (words[..., None] >> shifts) & 0xF                        # [kc, nb, j, lane, 8]
    u = torch.empty(k // 64, n // 16, 4, 16, 16, dtype=torch.int64, device=words.device)
    u[:, :, :, NIBBLE_N.to(words.device), NIBBLE_K.to(words.device)] = nibbles
    return u.permute(1, 3, 0, 2, 4).reshape(n, k)                       # [nb, n16, kc, j, k16]
