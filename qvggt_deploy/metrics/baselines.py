"""Trivial predictions that every trained model must beat, built from the ground truth itself.

``trivial``: depth = the median valid ground-truth depth of the first frame, everywhere and in
every frame; cameras = identity extrinsics for every frame (all cameras identical) with the
true intrinsics; point map = that depth unprojected with those cameras (S overlapping
fronto-parallel planes). Its camera errors are the true relative rotations, and 90 degrees of
translation error per pair (a zero translation has no direction).

Camera priors (depth and points as ``trivial``; they never look at the images), because the
official translation metric is sign-ambiguous and saturates at 90 degrees, so a prior can score a
camera AUC that looks like learning:

- ``forward``: identity rotations, frame i moved forward by i units (one direction for every pair).
- ``mean_trajectory``: frame i's pose relative to frame 0, averaged over training-seed scenes of
  the same configuration (rotation: chordal mean projected to SO(3); translation: mean vector).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Dict, Tuple

import torch

from qvggt_deploy.geometry import extri_intri_to_pose_encoding, unproject_depth_map_to_point_map

BASELINE_DESCRIPTIONS = {
    "trivial": "depth = median valid GT depth of frame 0 everywhere; extrinsics = identity for every "
               "frame with the true intrinsics; points = that depth unprojected with those cameras",
}


def _prediction_with_cameras(scene: Any, extr: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Constant depth (median valid GT depth of frame 0) seen by cameras ``extr [S,3,4]`` with the
    true intrinsics, in the model's output format (batch dim 1)."""
    depth_gt, mask, K = scene.depth, scene.mask, scene.intrinsics
    S, H, W = depth_gt.shape
    first = depth_gt[0][mask[0]]
    value = first.median() if first.numel() else depth_gt[mask].median() if mask.any() else torch.tensor(1.0)
    depth = torch.full((S, H, W), float(value))
    points = unproject_depth_map_to_point_map(depth, extr, K)
    pose_enc = extri_intri_to_pose_encoding(extr, K, (H, W))
    return {"pose_enc": pose_enc[None], "depth": depth[None, ..., None], "world_points": points[None].float()}


def trivial_prediction(scene: Any) -> Dict[str, torch.Tensor]:
    """The ``trivial`` baseline for one scene: constant depth, identity cameras."""
    return _prediction_with_cameras(scene, camera_prior_extrinsics("identity", scene))


MEAN_TRAJECTORY_SCENES = 128


@lru_cache(maxsize=8)
def _mean_trajectory(frames: int, config_key: Tuple) -> torch.Tensor:
    """Mean relative extrinsics ``[S,3,4]`` over training-seed scenes (cameras only matter, so
    they are rendered at 14x14 pixels)."""
    from qvggt_deploy.data.synthetic import SceneConfig, generate_scene

    cfg = SceneConfig(**dict(config_key), frames=frames, image_size=(14, 14))
    extr = torch.stack([generate_scene(seed, cfg).extrinsics.double() for seed in range(MEAN_TRAJECTORY_SCENES)])
    U, _, Vh = torch.linalg.svd(extr[..., :3].mean(0))
    R = U @ Vh
    R = torch.where(torch.linalg.det(R)[:, None, None] < 0, U @ torch.diag(torch.tensor([1.0, 1.0, -1.0],
                                                                                         dtype=R.dtype)) @ Vh, R)
    return torch.cat([R, extr[..., 3:].mean(0)], dim=-1).float()


def camera_prior_extrinsics(name: str, scene: Any) -> torch.Tensor:
    """Extrinsics ``[S,3,4]`` of the camera prior ``name`` ("identity", "forward", "mean_trajectory")."""
    S = scene.extrinsics.shape[0]
    extr = torch.eye(4)[:3].expand(S, 3, 4).clone()
    if name == "forward":
        extr[:, 2, 3] = -torch.arange(S, dtype=extr.dtype)
    elif name == "mean_trajectory":
        config = dict(scene.meta.get("config") or {})
        keep = ("trajectory", "baseline", "rotation", "fov", "objects", "open_sky", "orientation_cue")
        key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in config.items() if k in keep))
        extr = _mean_trajectory(S, key)
    elif name != "identity":
        raise ValueError(f"unknown camera prior {name!r}")
    return extr


def _with_prior_cameras(name: str) -> Callable[[Any], Dict[str, torch.Tensor]]:
    def predict(scene: Any) -> Dict[str, torch.Tensor]:
        return _prediction_with_cameras(scene, camera_prior_extrinsics(name, scene))

    predict.__name__ = f"{name}_prediction"
    return predict


BASELINE_DESCRIPTIONS["forward"] = ("camera prior: identity rotations, frame i translated i units forward "
                                    "(never looks at the images); depth as trivial")
BASELINE_DESCRIPTIONS["mean_trajectory"] = (f"camera prior: each frame's mean pose relative to frame 0 over "
                                            f"{MEAN_TRAJECTORY_SCENES} training-seed scenes of the same config; "
                                            f"depth as trivial")
CAMERA_PRIORS = ("forward", "mean_trajectory")

BASELINES: Dict[str, Callable[[Any], Dict[str, torch.Tensor]]] = {
    "trivial": trivial_prediction, **{name: _with_prior_cameras(name) for name in CAMERA_PRIORS}}
