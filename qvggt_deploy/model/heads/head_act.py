"""Output activations of the heads.

Dense heads ("exp" for depth, "inv_log" for points; confidence "expp1" = 1 + exp) and the
camera head's pose activation (translation and quaternion linear, FoV ReLU).
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


def inverse_log_transform(y: torch.Tensor) -> torch.Tensor:
    """``sign(y) * (exp(|y|) - 1)``; written with exp - 1 (no expm1) so it exports to ONNX."""
    return torch.sign(y) * (torch.exp(torch.abs(y)) - 1)


def activate_dense(out: torch.Tensor, activation: str, conf_activation: str = "expp1") -> Tuple[torch.Tensor, torch.Tensor]:
    """``out [N, C, H, W]`` -> (values ``[N, H, W, C-1]``, confidence ``[N, H, W]``)."""
    fmap = out.permute(0, 2, 3, 1)
    values, conf = fmap[..., :-1], fmap[..., -1]
    if activation == "exp":
        values = torch.exp(values)
    elif activation == "inv_log":
        values = inverse_log_transform(values)
    elif activation != "linear":
        raise ValueError(f"unknown dense activation {activation!r}")
    if conf_activation == "expp1":
        conf = 1 + torch.exp(conf)
    elif conf_activation != "linear":
        raise ValueError(f"unknown confidence activation {conf_activation!r}")
    return values, conf


def activate_pose(raw: torch.Tensor) -> torch.Tensor:
    """absT_quaR_FoV activation: T and quaternion unchanged (not normalised), FoV through ReLU."""
    return torch.cat([raw[..., :7], F.relu(raw[..., 7:])], dim=-1)
