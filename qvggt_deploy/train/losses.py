"""Training losses of VGGT (paper Sec. 3.3 and the official training code), for our small model.

- camera: Huber loss (smooth-L1, beta 0.02, so L1 for all but tiny errors: normalised relative
  translations are ~0.1) on the 9-d pose encoding (translation, quaternion, FoV), summed over the
  camera head's refinement iterations with weights ``gamma^(n-1-i)`` (later iterations count more);
  optionally the quaternion is scored by its rotation angle instead (:func:`geodesic_rotation_loss`).
- depth and points: aleatoric-uncertainty regression. With confidence ``c`` (>= 1, from the
  "expp1" activation) and per-pixel error ``e``: ``c * e + c * e_grad - alpha * log(c)``, where
  ``e_grad`` compares horizontal and vertical finite differences of prediction and target (sharp
  edges, flat planes). Only valid pixels (and valid neighbour pairs for gradients) count.
- optional pairwise camera terms, over every frame pair as the official metrics score them:
  :func:`translation_direction_loss` (the axis of the relative translation, sign and length free)
  and :func:`relative_rotation_loss`.

Ground truth is normalised before the losses (:func:`normalize_ground_truth`): every quantity
with units of length is divided by the mean distance of the valid world points (first camera's
frame) to the origin, per sample, as in VGGT's training.
Shapes: B batch, S frames, H x W pixels.
"""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F

from qvggt_deploy.geometry import extri_intri_to_pose_encoding
from qvggt_deploy.geometry.rotation import quat_to_mat
from qvggt_deploy.metrics.camera import pair_indices


def normalize_ground_truth(gt: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Scale-normalise a batch of ground truth.

    Args:
        gt: ``depth [B,S,H,W]``, ``mask [B,S,H,W]`` bool, ``world_points [B,S,H,W,3]``,
            ``extrinsics [B,S,3,4]``, ``intrinsics [B,S,3,3]``.

    Returns:
        the same keys scaled (intrinsics unchanged), plus ``scale [B]`` (what was divided by)
        and ``pose_enc [B,S,9]`` of the normalised cameras.
    """
    mask = gt["mask"]
    dist = gt["world_points"].norm(dim=-1)
    count = mask.flatten(1).sum(1).clamp_min(1)
    scale = (dist * mask).flatten(1).sum(1) / count
    scale = scale.clamp_min(1e-6)
    out = dict(gt)
    out["scale"] = scale
    out["depth"] = gt["depth"] / scale[:, None, None, None]
    out["world_points"] = gt["world_points"] / scale[:, None, None, None, None]
    extr = gt["extrinsics"].clone()
    extr[..., :3, 3] = extr[..., :3, 3] / scale[:, None, None]
    out["extrinsics"] = extr
    H, W = mask.shape[-2:]
    out["pose_enc"] = extri_intri_to_pose_encoding(extr, gt["intrinsics"], (H, W))
    return out


ROTATION_LOSSES = ("huber", "geodesic")


def geodesic_rotation_loss(quat: torch.Tensor, gt_quat: torch.Tensor) -> torch.Tensor:
    """Mean of ``1 - <q / |q|, q_gt>^2 = sin^2(theta / 2)``, theta the angle between each frame's
    predicted and true rotation; quaternions ``[..., 4]``, the prediction not normalised.

    Why: the Huber term regresses the four raw quaternion components one by one, each to its own
    median, while the rotation is read after normalisation; this term scores the rotation itself
    (its angle, sign-free). Refitting the tiny model's camera head on its cached tokens with this
    term (weight 100) cut the median rotation error from 10.3 to 6.0 degrees (``docs/training.md``).
    """
    cos_half = (F.normalize(quat, dim=-1, eps=1e-6) * gt_quat).sum(-1)
    return (1 - cos_half ** 2).mean()


def camera_loss(pose_enc_list: List[torch.Tensor], gt_pose_enc: torch.Tensor, gamma: float = 0.6,
                huber_beta: float = 0.02, weight_fov: float = 0.5, rotation: str = "huber",
                weight_rotation: float = 1.0) -> Dict[str, torch.Tensor]:
    """Weighted Huber loss over refinement iterations; ``[B,S,9]`` each. ``rotation="geodesic"``
    scores the quaternion with :func:`geodesic_rotation_loss` (times ``weight_rotation``) instead
    of the Huber term. Returns ``loss_camera`` and its parts (of the last iteration, the rotation
    part weighted) for logging."""
    if rotation not in ROTATION_LOSSES:
        raise ValueError(f"rotation loss {rotation!r} is not one of {ROTATION_LOSSES}")
    n = len(pose_enc_list)
    total = gt_pose_enc.new_zeros(())
    parts = {}
    for i, pred in enumerate(pose_enc_list):
        w = gamma ** (n - 1 - i)
        lt = F.smooth_l1_loss(pred[..., :3], gt_pose_enc[..., :3], beta=huber_beta)
        if rotation == "geodesic":
            lr = weight_rotation * geodesic_rotation_loss(pred[..., 3:7], gt_pose_enc[..., 3:7])
        else:
            lr = weight_rotation * F.smooth_l1_loss(pred[..., 3:7], gt_pose_enc[..., 3:7], beta=huber_beta)
        lf = F.smooth_l1_loss(pred[..., 7:], gt_pose_enc[..., 7:], beta=huber_beta)
        total = total + w * (lt + lr + weight_fov * lf)
        parts = {"cam_t": lt.detach(), "cam_r": lr.detach(), "cam_fov": lf.detach()}
    return {"loss_camera": total / n, **parts}


def _relative_poses(pose_enc: torch.Tensor):
    """Rotations ``[..., P, 3, 3]`` and translations ``[..., P, 3]`` of the relative poses
    ``E_i inv(E_j)`` of every frame pair ``i < j`` (the metrics' pairs) from ``pose_enc [..., S, 9]``."""
    i, j = pair_indices(pose_enc.shape[-2])
    R = quat_to_mat(pose_enc[..., 3:7])
    t = pose_enc[..., :3]
    R_ij = R[..., i, :, :] @ R[..., j, :, :].transpose(-1, -2)
    return R_ij, t[..., i, :] - (R_ij @ t[..., j, :, None])[..., 0]


def translation_direction_loss(pose_enc: torch.Tensor, gt_pose_enc: torch.Tensor) -> torch.Tensor:
    """Mean over frame pairs ``i < j`` of ``1 - |cos|`` between predicted and true relative
    translations ``[B,S,9]`` each.

    Why: the official RTE scores only the direction of each pair's relative translation, up to sign.
    The L1 term on ``t`` must also get the sign and length right; where the images leave the sign
    open (shuffled frames: forward or backward), its minimiser shrinks the uncertain component
    towards zero and the direction left over is noise. This term rewards the axis alone.
    """
    if pose_enc.shape[-2] < 2:
        return pose_enc.new_zeros(())
    cos = F.cosine_similarity(_relative_poses(pose_enc)[1], _relative_poses(gt_pose_enc)[1], dim=-1, eps=1e-6)
    return (1 - cos.abs()).mean()


def relative_rotation_loss(pose_enc: torch.Tensor, gt_pose_enc: torch.Tensor) -> torch.Tensor:
    """Mean over frame pairs ``i < j`` of ``sin^2(theta / 2)``, theta the angle between predicted
    and true relative rotations (the official RRE is ``theta``); ``[B,S,9]`` each.

    Why: the pose encoding holds rotations relative to the first frame, so the L1 term never sees a
    pair of two later frames, whose error composes both of theirs; the metric scores every pair.
    """
    if pose_enc.shape[-2] < 2:
        return pose_enc.new_zeros(())
    R_err = _relative_poses(pose_enc)[0] @ _relative_poses(gt_pose_enc)[0].transpose(-1, -2)
    cos_theta = (R_err.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return ((1 - cos_theta) / 2).mean()


def _grad_error(diff: torch.Tensor, conf: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Confidence-weighted finite-difference error; ``diff [N,H,W,C]``, ``conf, mask [N,H,W]``."""
    dx = (diff[:, :, 1:] - diff[:, :, :-1]).abs().sum(-1)
    mx = mask[:, :, 1:] & mask[:, :, :-1]
    cx = (conf[:, :, 1:] + conf[:, :, :-1]) / 2
    dy = (diff[:, 1:] - diff[:, :-1]).abs().sum(-1)
    my = mask[:, 1:] & mask[:, :-1]
    cy = (conf[:, 1:] + conf[:, :-1]) / 2
    num = (cx * dx)[mx].sum() + (cy * dy)[my].sum()
    return num / (mx.sum() + my.sum()).clamp_min(1)


def confidence_regression_loss(pred: torch.Tensor, conf: torch.Tensor, target: torch.Tensor,
                               mask: torch.Tensor, alpha: float = 0.2,
                               grad_weight: float = 1.0) -> Dict[str, torch.Tensor]:
    """Aleatoric L1 + gradient loss.

    Args:
        pred, target: ``[B,S,H,W,C]`` (C = 1 for depth, 3 for points).
        conf: ``[B,S,H,W]`` confidence >= 1. mask: ``[B,S,H,W]`` bool.
        alpha: weight of ``-log(conf)`` (stops the confidence from collapsing to 1). Defaults to 0.2.
        grad_weight: weight of the gradient term. Defaults to 1.

    Returns:
        ``loss`` (regression + gradient + confidence terms) and ``l1`` (plain masked L1, for logs).
    """
    C = pred.shape[-1]
    diff = (pred - target).flatten(0, 1)
    conf_f = conf.flatten(0, 1)
    mask_f = mask.flatten(0, 1)
    err = diff.abs().sum(-1)
    n = mask_f.sum().clamp_min(1)
    reg = (conf_f * err)[mask_f].sum() / n
    reg_conf = -alpha * torch.log(conf_f)[mask_f].sum() / n
    grad = _grad_error(diff, conf_f, mask_f) if grad_weight else diff.new_zeros(())
    l1 = err[mask_f].sum().detach() / n / C
    return {"loss": reg + grad_weight * grad + reg_conf, "l1": l1}


def vggt_loss(pred: Dict[str, torch.Tensor], gt: Dict[str, torch.Tensor], weight_camera: float = 5.0,
              weight_depth: float = 1.0, weight_point: float = 1.0, camera_rotation: str = "huber",
              weight_camera_rotation: float = 1.0) -> Dict[str, torch.Tensor]:
    """Total loss for a batch; ``gt`` already normalised (``camera_rotation`` and
    ``weight_camera_rotation`` go to :func:`camera_loss`). Returns ``loss`` and logged parts."""
    mask = gt["mask"]
    out: Dict[str, torch.Tensor] = {}
    total = gt["depth"].new_zeros(())
    if "pose_enc_list" in pred:
        cam = camera_loss(pred["pose_enc_list"], gt["pose_enc"], rotation=camera_rotation,
                          weight_rotation=weight_camera_rotation)
        total = total + weight_camera * cam["loss_camera"]
        out.update(cam)
    if "depth" in pred:
        d = confidence_regression_loss(pred["depth"], pred["depth_conf"], gt["depth"][..., None], mask)
        total = total + weight_depth * d["loss"]
        out.update(loss_depth=d["loss"].detach(), depth_l1=d["l1"])
    if "world_points" in pred:
        p = confidence_regression_loss(pred["world_points"], pred["world_points_conf"], gt["world_points"], mask)
        total = total + weight_point * p["loss"]
        out.update(loss_point=p["loss"].detach(), point_l1=p["l1"])
    out["loss"] = total
    return out
