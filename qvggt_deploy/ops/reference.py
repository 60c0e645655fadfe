"""CPU reference of the W4A16 kernel: the same arithmetic, rounding point by rounding point.

Arithmetic (LAYOUT block of ``kernels/w4a16_gemm.cu``):

- ``w[n, k] = fp16_rn(q * s)``: the kernel multiplies the exact integer ``q`` (as fp16) by the
  fp16 scale in one correctly rounded fp16 multiply; computing ``q * s`` in fp32 and rounding
  once to fp16 is the same number (the product of a 4-bit and an 11-bit significand is exact
  in fp32).
- ``out = fp16_rn(sum_k fp32(a) * fp32(w) + fp32(bias))``: fp16 x fp16 products are exact in
  fp32; only the FP32 summation order differs from the GPU, so results agree to FP32
  accumulation noise, and :func:`dequantize_reference` agrees with the kernel's dequantiser
  bit for bit.

Everything here reads the DEVICE layout (``qvggt_deploy/ops/layout.py``), so a test against
it also checks the packer.
"""
from __future__ import annotations

from typing import Optional

import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.ops.layout import unpack_words


def dequantize_reference(qweight_dev: torch.Tensor, scales_dev: torch.Tensor, group: int) -> torch.Tensor:
    """fp16 ``[N, K]``: the weights the kernel multiplies (``fp16_rn(q * s)``).

    Args:
        qweight_dev (Tensor): int32 ``[K/64, 8*N]`` (device layout).
        scales_dev (Tensor): fp16 ``[K/group, N]``.
        group (int): input channels per scale.
    """
    q = unpack_words(qweight_dev) - 8                                   # [N, K] int64 in [-8, 7]
    s = scales_dev.t().float().repeat_interleave(group, dim=1)          # [N, K]
    if s.shape != q.shape:
        raise QvggtError(f"scales {tuple(scales_dev.shape)} do not fit weights [N, K] = {tuple(q.shape)} "
                         f"with group {group}")
    return (q.float() * s).to(torch.float16)


def w4a16_gemm_reference(a: torch.Tensor, qweight_dev: torch.Tensor, scales_dev: torch.Tensor,
                         bias: Optional[torch.Tensor], group: int) -> torch.Tensor:
    """``fp16 [M, N] = a @ w^T + bias`` as the kernel computes it (FP32 sums, one final rounding).

    Args:
        a (Tensor): ``[M, K]``, rounded to fp16 first (the kernel's input type).
        qweight_dev, scales_dev, group: as in :func:`dequantize_reference`.
        bias (Tensor, optional): ``[N]``, rounded to fp16 first.
    """
    w = dequantize_reference(qweight_dev, scales_dev, group).to(a.device)
    if a.dim() != 2 or a.shape[1] != w.shape[1]:
        raise QvggtError(f"activations {tuple(a.shape)} do not match weights [N, K] = {tuple(w.shape)}")
    acc = a.to(torch.float16).float() @ w.float().t()
    if bias is not None:
        acc = acc + bias.to(torch.float16).float().to(acc.device)
    return acc.to(torch.float16)
