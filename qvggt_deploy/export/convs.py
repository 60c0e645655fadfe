"""Precision of the convolution weights (not part of the Linear recipe).

``conv_precision="fp16"`` rounds the DPT heads' Conv/ConvTranspose weights to fp16 in the model;
the exporter then stores them in fp16 (``fp16-conv-weights`` pass) and the PyTorch reference of
``qvggt check`` applies the same rounding, so graph and reference stay identical.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from qvggt_deploy.errors import QvggtError

CONV_PRECISIONS = ("fp32", "fp16")
CONV_ROOTS = ("depth_head", "point_head")


@torch.no_grad()
def round_conv_weights(model: nn.Module, precision: str = "fp16") -> List[str]:
    """Round the DPT heads' convolution weights to ``precision`` in place; returns their names."""
    if precision not in CONV_PRECISIONS:
        raise QvggtError(f"conv precision must be one of {', '.join(CONV_PRECISIONS)}, got {precision!r}")
    names = []
    if precision == "fp32":
        return names
    for root in CONV_ROOTS:
        head = getattr(model, root, None)
        if head is None:
            continue
        for name, module in head.named_modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                module.weight.copy_(module.weight.half().float())
                names.append(f"{root}.{name}.weight")
    return names
