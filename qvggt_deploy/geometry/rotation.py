"""Quaternion <-> rotation matrix, quaternions scalar-last ``(x, y, z, w)``."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def quat_to_mat(q: torch.Tensor) -> torch.Tensor:
    """``q [..., 4]`` (XYZW, need not be unit: it is implicitly normalised) -> ``R [..., 3, 3]``."""
    i, j, k, r = torch.unbind(q, -1)
    s = 2.0 / (q * q).sum(-1)
    o = torch.stack((
        1 - s * (j * j + k * k), s * (i * j - k * r), s * (i * k + j * r),
        s * (i * j + k * r), 1 - s * (i * i + k * k), s * (j * k - i * r),
        s * (i * k - j * r), s * (j * k + i * r), 1 - s * (i * i + j * j),
    ), -1)
    return o.reshape(q.shape[:-1] + (3, 3))


def _sqrt_positive_part(x: torch.Tensor) -> torch.Tensor:
    ret = torch.zeros_like(x)
    positive = x > 0
    ret[positive] = torch.sqrt(x[positive])
    return ret


def mat_to_quat(R: torch.Tensor) -> torch.Tensor:
    """``R [..., 3, 3]`` -> unit quaternion ``[..., 4]`` XYZW with ``w >= 0``.

    Robust conversion: four candidates (one per largest component), each divided by twice its
    own large component (floored at 0.1), and the best-conditioned one picked.
    """
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"expected rotation matrices [..., 3, 3], got {tuple(R.shape)}")
    batch = R.shape[:-2]
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = torch.unbind(R.reshape(batch + (9,)), -1)
    q_abs = _sqrt_positive_part(torch.stack([
        1.0 + m00 + m11 + m22,
        1.0 + m00 - m11 - m22,
        1.0 - m00 + m11 - m22,
        1.0 - m00 - m11 + m22,
    ], dim=-1))
    # Candidates in (w, x, y, z) order, each scaled by 2 * its dominant component.
    quat_by_wxyz = torch.stack([
        torch.stack([q_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], dim=-1),
        torch.stack([m21 - m12, q_abs[..., 1] ** 2, m10 + m01, m02 + m20], dim=-1),
        torch.stack([m02 - m20, m10 + m01, q_abs[..., 2] ** 2, m12 + m21], dim=-1),
        torch.stack([m10 - m01, m20 + m02, m21 + m12, q_abs[..., 3] ** 2], dim=-1),
    ], dim=-2)
    floor = torch.tensor(0.1, dtype=q_abs.dtype, device=q_abs.device)
    candidates = quat_by_wxyz / (2.0 * q_abs[..., None].max(floor))
    best = F.one_hot(q_abs.argmax(dim=-1), num_classes=4) > 0.5
    wxyz = candidates[best, :].reshape(batch + (4,))
    xyzw = torch.cat([wxyz[..., 1:], wxyz[..., :1]], dim=-1)
    return torch.where(xyzw[..., 3:4] < 0, -xyzw, xyzw)
