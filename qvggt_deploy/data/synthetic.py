"""Procedural multi-view scenes with exact ground truth (no downloads).

A scene is a textured room (or an open floor under the sky) with boxes, spheres and thin panels,
seen by S cameras along an orbit, forward or random trajectory. :func:`generate_scene` is
deterministic for ``(seed, SceneConfig)`` and returns a :class:`Scene` in VGGT's conventions:
OpenCV camera axes, camera-from-world extrinsics with the first camera as the world frame, the
principal point at the image centre, pixel (u, v) = integer (column, row) indices.

Seed ranges (keep training and evaluation apart): training uses seeds below
:data:`TRAIN_SEED_LIMIT` (10^6), evaluation uses seeds from :data:`EVAL_SEED_START` (10^9) on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from qvggt_deploy.data import render
from qvggt_deploy.data.trajectory import TRAJECTORIES, get_trajectory, look_at
from qvggt_deploy.errors import QvggtError

GENERATOR_VERSION = "2"
TRAIN_SEED_LIMIT = 10 ** 6
EVAL_SEED_START = 10 ** 9
MAX_DEPTH = 100.0


@dataclass(frozen=True)
class SceneConfig:
    """What :func:`generate_scene` varies. Ranges are ``(low, high)`` sampled uniformly per scene.

    Args:
        frames: S, views per scene. Defaults to 4.
        image_size: (H, W) in pixels. Defaults to (224, 224).
        trajectory: "orbit", "forward", "random" or "mixed" (one of the three per scene).
        baseline: metres between consecutive cameras. Defaults to (0.25, 0.9).
        rotation: degrees of view-direction jitter on top of the path. Defaults to (3, 15).
        fov: horizontal field of view in degrees. Defaults to (50, 75).
        objects: number of objects. Defaults to (3, 9).
        open_sky: probability of an open scene (floor only; sky pixels are invalid). Defaults to 0.2.
        orientation_cue: colour the room (floor, walls, ceiling) by scene position and the sky by
            ray direction (:func:`~qvggt_deploy.data.render.world_tint`), so that each frame's pose
            in the scene can be read from the frame. Defaults to True (generator version 2).
    """

    frames: int = 4
    image_size: Tuple[int, int] = (224, 224)
    trajectory: str = "mixed"
    baseline: Tuple[float, float] = (0.25, 0.9)
    rotation: Tuple[float, float] = (3.0, 15.0)
    fov: Tuple[float, float] = (50.0, 75.0)
    objects: Tuple[int, int] = (3, 9)
    open_sky: float = 0.2
    orientation_cue: bool = True

    def __post_init__(self):
        if self.frames < 1:
            raise QvggtError(f"scene frames must be >= 1, got {self.frames}")
        if len(self.image_size) != 2 or min(self.image_size) < 8:
            raise QvggtError(f"image_size must be (H, W) of at least 8 pixels, got {self.image_size}")
        if self.trajectory != "mixed" and self.trajectory not in TRAJECTORIES:
            get_trajectory(self.trajectory)  # raises with the list of names


@dataclass
class Scene:
    """One multi-view scene with ground truth. S: frames, H x W: image size.

    ``images [S,3,H,W]`` RGB in [0,1]; ``depth [S,H,W]`` z-depth in metres (0 where invalid);
    ``mask [S,H,W]`` bool valid; ``intrinsics [S,3,3]``; ``extrinsics [S,3,4]`` camera-from-world
    (world = first camera); ``world_points [S,H,W,3]`` in the first camera's frame (0 where
    invalid). All float32 torch tensors. ``meta``: seed, generator version, config, contents.
    ``scene_extrinsics [S,3,4]``: camera-from-scene (room frame: y up, origin on the floor at the
    room centre), known for generated scenes only (training's absolute-pose target); else None.
    """

    images: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor
    intrinsics: torch.Tensor
    extrinsics: torch.Tensor
    world_points: torch.Tensor
    meta: Dict[str, Any] = field(default_factory=dict)
    scene_extrinsics: Optional[torch.Tensor] = None

    @property
    def num_frames(self) -> int:
        return self.images.shape[0]

    def subset(self, index) -> "Scene":
        """Frames ``index`` (re-anchored so that the first chosen frame is the world frame)."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.images.device)
        E = _to4(self.extrinsics[index].double())
        anchor_inv = torch.linalg.inv(E[0])
        new_E = (E @ anchor_inv)[:, :3, :].float()
        # World points move with the anchor: X' = E0 X (rigid, so it preserves validity).
        E0 = E[0]
        pts = self.world_points[index].double()
        pts = (pts @ E0[:3, :3].T + E0[:3, 3]).float() * self.mask[index][..., None]
        scene_E = None if self.scene_extrinsics is None else self.scene_extrinsics[index]
        return Scene(self.images[index], self.depth[index], self.mask[index], self.intrinsics[index],
                     new_E, pts, dict(self.meta, frames_index=index.tolist()), scene_E)


def _to4(E: torch.Tensor) -> torch.Tensor:
    bottom = torch.zeros(E.shape[:-2] + (1, 4), dtype=E.dtype, device=E.device)
    bottom[..., 0, 3] = 1
    return torch.cat([E, bottom], dim=-2)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _yaw(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _hsv(rng: np.random.Generator) -> np.ndarray:
    import colorsys

    return np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.2, 0.9), rng.uniform(0.35, 1.0)))


def _material(rng: np.random.Generator) -> Dict[str, Any]:
    a = _hsv(rng)
    b = _hsv(rng) if rng.uniform() < 0.7 else a * rng.uniform(0.3, 0.6)
    d = rng.normal(size=3)
    return {"kind": int(rng.integers(0, 3)), "freq": float(np.exp(rng.uniform(np.log(0.8), np.log(4.0)))),
            "color_a": a, "color_b": b, "stripe_dir": d / np.linalg.norm(d),
            "offset": rng.uniform(-100, 100, size=3)}


def _sample_contents(rng: np.random.Generator, cfg: SceneConfig) -> Dict[str, Any]:
    """Room/floor, objects and lights as plain numpy (also recorded in the metadata)."""
    boxes, spheres = [], []  # (center, rot, half, inside, material) / (center, radius, rot, material)
    open_sky = bool(rng.uniform() < cfg.open_sky)
    hx, hz, height = rng.uniform(3.5, 6.0), rng.uniform(3.5, 6.0), rng.uniform(2.6, 4.0)
    t = 0.1  # wall thickness
    if open_sky:
        hx, hz = 20.0, 20.0
        boxes.append((np.array([0, -t, 0]), np.eye(3), np.array([hx, t, hz]), False, _material(rng)))
    else:
        slabs = [((0, -t, 0), (hx + t, t, hz + t)), ((0, height + t, 0), (hx + t, t, hz + t)),
                 ((hx + t, height / 2, 0), (t, height / 2, hz)), ((-hx - t, height / 2, 0), (t, height / 2, hz)),
                 ((0, height / 2, hz + t), (hx, height / 2, t)), ((0, height / 2, -hz - t), (hx, height / 2, t))]
        for center, half in slabs:
            boxes.append((np.array(center, float), np.eye(3), np.array(half, float), False, _material(rng)))
    n_obj = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    for _ in range(n_obj):
        r = 1.7 * np.sqrt(rng.uniform())
        a = rng.uniform(0, 2 * np.pi)
        x, z = r * np.cos(a), r * np.sin(a)
        kind = rng.choice(["box", "sphere", "panel"], p=[0.5, 0.3, 0.2])
        if kind == "sphere":
            radius = rng.uniform(0.2, 0.65)
            y = radius if rng.uniform() < 0.7 else rng.uniform(radius, 1.8)
            spheres.append((np.array([x, y, z]), radius, _random_rotation(rng), _material(rng)))
        elif kind == "box":
            half = rng.uniform(0.15, 0.7, size=3)
            if rng.uniform() < 0.7:
                rot, y = _yaw(rng.uniform(0, np.pi)), half[1]
            else:
                rot, y = _random_rotation(rng), rng.uniform(0.8, 1.8)
            boxes.append((np.array([x, y, z]), rot, half, False, _material(rng)))
        else:
            half = np.array([rng.uniform(0.3, 1.0), rng.uniform(0.3, 0.9), 0.02])
            rot = _yaw(rng.uniform(0, np.pi)) @ _rot_x(rng.uniform(-0.4, 0.4))
            boxes.append((np.array([x, half[1] + rng.uniform(0, 0.3), z]), rot, half, False, _material(rng)))
    light_dir = np.array([rng.uniform(-0.6, 0.6), 1.0, rng.uniform(-0.6, 0.6)])
    return {"open_sky": open_sky, "orientation_cue": cfg.orientation_cue, "room_half": (hx, height, hz), "boxes": boxes, "spheres": spheres,
            "light_dir": light_dir / np.linalg.norm(light_dir),
            "point_light": np.array([rng.uniform(-1, 1), min(height, 3.5) - 0.3, rng.uniform(-1, 1)]),
            "ambient": float(rng.uniform(0.25, 0.45))}


def _rot_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _to_primitives(contents: Dict[str, Any], rng: np.random.Generator) -> render.Primitives:
    f = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float32)  # noqa: E731
    boxes, spheres = contents["boxes"], contents["spheres"]
    mats = [b[4] for b in boxes] + [s[3] for s in spheres]
    materials = render.Materials(
        kind=torch.tensor([m["kind"] for m in mats], dtype=torch.long),
        freq=f([m["freq"] for m in mats]), color_a=f([m["color_a"] for m in mats]),
        color_b=f([m["color_b"] for m in mats]), stripe_dir=f([m["stripe_dir"] for m in mats]),
        offset=f([m["offset"] for m in mats]))
    empty3 = torch.zeros(0, 3)
    room = 1 if contents["open_sky"] else 6  # the first boxes are the floor (and walls, ceiling)
    cue = bool(contents.get("orientation_cue", False))
    tinted = torch.zeros(len(mats), dtype=torch.bool)
    tinted[:room] = cue
    return render.Primitives(
        box_center=f([b[0] for b in boxes]), box_rot=f([b[1] for b in boxes]), box_half=f([b[2] for b in boxes]),
        box_inside=torch.tensor([b[3] for b in boxes], dtype=torch.bool),
        sphere_center=f([s[0] for s in spheres]) if spheres else empty3,
        sphere_radius=f([s[1] for s in spheres]) if spheres else torch.zeros(0),
        sphere_rot=f([s[2] for s in spheres]) if spheres else torch.zeros(0, 3, 3),
        materials=materials, light_dir=f(contents["light_dir"]), point_light=f(contents["point_light"]),
        ambient=contents["ambient"], noise_table=torch.as_tensor(rng.uniform(size=render._HASH_SIZE),
                                                                 dtype=torch.float32),
        tinted=tinted, sky_tint=cue)


def _camera_ok(eye: np.ndarray, contents: Dict[str, Any], margin: float = 0.3) -> bool:
    hx, height, hz = contents["room_half"]
    if not (abs(eye[0]) < hx - margin and abs(eye[2]) < hz - margin and margin < eye[1] < height - margin):
        return False
    for center, _, half, _, _ in contents["boxes"][1 if contents["open_sky"] else 6:]:
        if np.linalg.norm(eye - center) < np.linalg.norm(half) + margin:
            return False
    return all(np.linalg.norm(eye - c) >= r + margin for c, r, _, _ in contents["spheres"])


def _sample_cameras(rng: np.random.Generator, cfg: SceneConfig, contents: Dict[str, Any]):
    hx, height, hz = contents["room_half"]
    name = cfg.trajectory if cfg.trajectory != "mixed" else str(rng.choice(list(TRAJECTORIES)))
    traj = get_trajectory(name)
    for _ in range(50):
        baseline = rng.uniform(*cfg.baseline)
        rotation = rng.uniform(*cfg.rotation)
        radius = rng.uniform(2.4, max(2.5, min(hx, hz, 5.5) - 0.5))
        cam_h = rng.uniform(0.6, min(2.0, height - 0.5))
        center = np.array([rng.uniform(-0.4, 0.4), rng.uniform(0.2, 0.8), rng.uniform(-0.4, 0.4)])
        eyes, targets, roll = traj(rng, cfg.frames, center, radius, cam_h, baseline, rotation)
        if all(_camera_ok(e, contents) for e in eyes):
            break
    extr = np.stack([look_at(e, t, r) for e, t, r in zip(eyes, targets, roll)])
    fov = np.deg2rad(rng.uniform(*cfg.fov))
    return name, dict(baseline=float(baseline), rotation=float(rotation), fov_deg=float(np.rad2deg(fov))), extr, fov


def generate_scene(seed: int, config: Optional[SceneConfig] = None, device=None) -> Scene:
    """Render one scene; the same ``(seed, config)`` always gives bit-identical tensors.

    ``device`` (default the CPU) is where the rays are cast and the scene's tensors live; a GPU
    render differs from the CPU's by float rounding only (the scene is drawn on the CPU).
    """
    cfg = config or SceneConfig()
    device = torch.device("cpu") if device is None else torch.device(device)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x51CE]))
    contents = _sample_contents(rng, cfg)
    traj_name, traj_params, extr_scene, fov = _sample_cameras(rng, cfg, contents)
    prim = _to_primitives(contents, rng)

    H, W = cfg.image_size
    S = cfg.frames
    fx = (W / 2) / np.tan(fov / 2)
    K = torch.tensor([[fx, 0, W / 2], [0, fx, H / 2], [0, 0, 1]], dtype=torch.float32)
    u = torch.arange(W, dtype=torch.float32).view(1, W).expand(H, W)
    v = torch.arange(H, dtype=torch.float32).view(H, 1).expand(H, W)
    d_cam = torch.stack([(u - W / 2) / fx, (v - H / 2) / fx, torch.ones(H, W)], dim=-1).reshape(-1, 3)
    E_scene = torch.as_tensor(extr_scene, dtype=torch.float64)
    R_wc = E_scene[:, :3, :3].transpose(1, 2).float()  # camera -> scene rotation
    eyes = (-E_scene[:, :3, :3].transpose(1, 2) @ E_scene[:, :3, 3:]).squeeze(-1).float()
    dirs = torch.einsum("sij,pj->spi", R_wc, d_cam).reshape(-1, 3)
    origins = eyes[:, None, :].expand(S, H * W, 3).reshape(-1, 3)
    out = render.cast(origins.to(device), dirs.to(device),
                      torch.full((S * H * W,), 1.0 / fx, dtype=torch.float32, device=device), prim.to(device))

    depth = out["t"].reshape(S, H, W)  # dirs have unit z in the camera: t is the z-depth
    mask = out["hit"].reshape(S, H, W) & (depth > 1e-3) & (depth < MAX_DEPTH)
    depth = torch.where(mask, depth, torch.zeros_like(depth))
    images = out["rgb"].reshape(S, H, W, 3).permute(0, 3, 1, 2).contiguous()
    # Re-anchor at the first camera: E_i' = E_i inv(E_0); points X' = E_0 X (computed from the
    # hit points themselves, independently of the depth maps, so the two can be cross-checked).
    E0 = E_scene[0]
    rel = (E_scene @ torch.linalg.inv(E0))[:, :3, :].float().to(device)
    E0 = E0.to(device)
    pts = out["point"].double().reshape(S, H, W, 3) @ E0[:3, :3].T + E0[:3, 3]
    pts = torch.where(mask[..., None], pts.float(), torch.zeros(()))
    meta = {"seed": int(seed), "generator": "qvggt_deploy.data.synthetic", "generator_version": GENERATOR_VERSION,
            "config": _jsonable(asdict(cfg)), "trajectory": traj_name, **traj_params,
            "open_sky": contents["open_sky"], "num_boxes": len(contents["boxes"]),
            "num_spheres": len(contents["spheres"])}
    return Scene(images=images, depth=depth, mask=mask, intrinsics=K.expand(S, 3, 3).clone().to(device),
                 extrinsics=rel, world_points=pts, meta=meta, scene_extrinsics=E_scene[:, :3, :].float().to(device))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
