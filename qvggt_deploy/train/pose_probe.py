"""Absolute-pose supervision and the held-out go/no-go check of camera learning.

Why an absolute-pose probe: VGGT's camera loss asks for each frame's pose relative to the first
frame, which a small model trained from few scenes answers with the median camera. Generated
scenes know every frame's pose in the room (``Scene.scene_extrinsics``), and the orientation cue
makes it readable from the frame alone; a linear read-out of the aggregator's camera token,
trained on it, gives every frame a direct target, and the camera head only has to compose two
such poses. The probe exists during training only: checkpoints hold the VGGT modules alone.

Why a go/no-go check: a camera loss that falls can still be the loss of a prior. The check
renders fixed held-out scenes and puts the model's rotation error beside that of the identity
rotation, and its AUC@30 beside that of the best camera prior.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Dict, Tuple

import torch
from torch import nn

from qvggt_deploy.data.synthetic import EVAL_SEED_START, SceneConfig, generate_scene

POSE_TARGET_DIM = 12  # rotation camera-from-scene (9) + camera centre in the scene / 3 m (3)
CENTRE_SCALE_M = 3.0
PROBE_SEED_OFFSET = 200_000  # held-out seeds EVAL_SEED_START + 200000 + i: neither training nor the eval range


class AbsolutePoseProbe(nn.Module):
    """LayerNorm + Linear from a camera token ``[B,S,C]`` to ``[B,S,12]``."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, POSE_TARGET_DIM)

    def forward(self, camera_tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(camera_tokens))


def absolute_pose_target(scene_extrinsics: torch.Tensor) -> torch.Tensor:
    """``[B,S,3,4]`` camera-from-scene -> ``[B,S,12]``: rotation rows, then centre / 3 m."""
    R = scene_extrinsics[..., :3, :3]
    t = scene_extrinsics[..., :3, 3:]
    centre = -(R.transpose(-1, -2) @ t).squeeze(-1) / CENTRE_SCALE_M
    return torch.cat([R.flatten(-2), centre], dim=-1)


def absolute_pose_loss(pred: torch.Tensor, scene_extrinsics: torch.Tensor) -> Dict[str, torch.Tensor]:
    """L1 between the probe and the true scene poses: ``loss_abs_pose`` and its rotation part."""
    target = absolute_pose_target(scene_extrinsics)
    err = (pred - target).abs()
    return {"loss_abs_pose": err.mean(), "abs_rot_l1": err[..., :9].mean().detach()}


class CameraTokenTap:
    """Keeps the last aggregator output's camera tokens ``[B,S,C]`` (a forward hook)."""

    def __init__(self, model: nn.Module):
        self.tokens = None
        self._handle = model.aggregator.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        tokens_list, _ = output
        self.tokens = tokens_list[-1][:, :, 0]

    def remove(self) -> None:
        self._handle.remove()


@lru_cache(maxsize=2)
def _heldout_scenes(num_scenes: int, frames: int, image_size: int) -> Tuple:
    """Rendered once per run (a check then costs only the forward passes)."""
    cfg = SceneConfig(frames=frames, image_size=(image_size, image_size))
    return tuple(generate_scene(EVAL_SEED_START + PROBE_SEED_OFFSET + i, cfg) for i in range(num_scenes))


@torch.no_grad()
def camera_go_no_go(model: nn.Module, num_scenes: int = 16, frames: int = 4, image_size: int = 224) -> Dict[str, float]:
    """Held-out camera figures beside the priors' (fixed scenes; see the module docstring).

    Returns mean RRE of the model and of identity rotations, median RRE, and AUC@30 of the
    model and of the best prior (identity, identity + forward translation); the global-attention
    match ratio (:mod:`qvggt_deploy.train.attention_match`); with a track head, its median pixel
    error on visible ground-truth tracks.
    """
    from qvggt_deploy.train.attention_match import attention_match_ratio
    from qvggt_deploy.geometry import pose_encoding_to_extri_intri
    from qvggt_deploy.metrics.baselines import camera_prior_extrinsics
    from qvggt_deploy.metrics.camera import auc, relative_pose_errors

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rre, rte, prior_err, track_err = [], [], {}, []
    scenes = _heldout_scenes(num_scenes, frames, image_size)
    try:
        for scene in scenes:
            query = _track_queries(scene) if getattr(model, "track_head", None) is not None else None
            pred = model(scene.images[None].to(device),
                         query_points=None if query is None else query["query_points"].to(device))
            if query is not None:
                seen = query["visible"][0, 1:]
                track_err.append((pred["track"][0, 1:].cpu() - query["tracks"][0, 1:]).norm(dim=-1)[seen])
            pose_enc = pred["pose_enc"][0].cpu()
            extr, _ = pose_encoding_to_extri_intri(pose_enc[None], (image_size, image_size))
            r, t = relative_pose_errors(extr[0], scene.extrinsics)
            rre.append(r)
            rte.append(t)
            for name in ("identity", "forward"):
                pr, pt = relative_pose_errors(camera_prior_extrinsics(name, scene), scene.extrinsics)
                prior_err.setdefault(name, []).append((pr, pt))
        match = attention_match_ratio(model, scenes)
    finally:
        model.train(was_training)
    rre_all, rte_all = torch.cat(rre), torch.cat(rte)
    out = {"heldout_rre_deg": float(rre_all.mean()), "heldout_rre_median_deg": float(rre_all.median()),
           "heldout_rte_deg": float(rte_all.mean()), "heldout_auc30": 100 * auc(rre_all, rte_all)}
    priors = {}
    for name, pairs in prior_err.items():
        pr = torch.cat([p for p, _ in pairs])
        pt = torch.cat([t for _, t in pairs])
        priors[name] = 100 * auc(pr, pt)
        if name == "identity":
            out["identity_rre_deg"] = float(pr.mean())
    out["best_prior_auc30"] = max(priors.values())
    out["attn_match_best"] = match["attn_match_best"]
    if track_err:
        out["heldout_track_px_median"] = float(torch.cat(track_err).median())
    return out


def _track_queries(scene, count: int = 64) -> Dict[str, torch.Tensor]:
    """Fixed query pixels of frame 0 and their true tracks (held-out check of the track head)."""
    from qvggt_deploy.train.tracks import query_tracks

    return query_tracks(scene.world_points[None], scene.mask[None], scene.depth[None], scene.extrinsics[None],
                        scene.intrinsics[None], count, torch.Generator().manual_seed(0))
