"""Camera trajectories for synthetic scenes: orbit, forward, random.

Each trajectory returns eye positions and look-at targets (scene frame, y up, metres) plus a roll
angle per frame; :func:`look_at` turns them into OpenCV camera-from-world extrinsics.
Two knobs control difficulty: ``baseline`` (metres between consecutive cameras; the spread
radius for ``random``) and ``rotation`` (degrees of random view-direction jitter and roll on top
of the path's own turning).
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import numpy as np

from qvggt_deploy.errors import QvggtError

Path = Tuple[np.ndarray, np.ndarray, np.ndarray]  # eyes [S,3], targets [S,3], roll [S] (radians)
UP = np.array([0.0, 1.0, 0.0])


def look_at(eye: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """Camera-from-world ``[4, 4]`` (OpenCV: x right, y down, z forward) for a y-up scene."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, UP)
    if np.linalg.norm(x) < 1e-6:  # looking straight up/down: any horizontal x works
        x = np.array([1.0, 0.0, 0.0])
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    c, s = np.cos(roll), np.sin(roll)
    x, y = c * x + s * y, -s * x + c * y
    R_wc = np.stack([x, y, z], axis=1)  # columns: camera axes in the scene frame
    E = np.eye(4)
    E[:3, :3] = R_wc.T
    E[:3, 3] = -R_wc.T @ eye
    return E


def _jitter(rng: np.random.Generator, n: int, rotation_deg: float, distance: np.ndarray) -> np.ndarray:
    """Target offsets that turn the view by up to ~``rotation_deg`` at ``distance [n]``."""
    ang = np.deg2rad(rotation_deg) * rng.uniform(-1, 1, size=(n, 3))
    return ang * distance[:, None]


def orbit(rng: np.random.Generator, n: int, center: np.ndarray, radius: float, height: float,
          baseline: float, rotation: float) -> Path:
    """Arc around ``center`` at ``radius`` and eye ``height``; consecutive eyes ``baseline`` apart."""
    step = baseline / radius * rng.choice([-1.0, 1.0])
    start = rng.uniform(0, 2 * np.pi)
    ang = start + step * np.arange(n)
    heights = height + rng.uniform(-0.15, 0.15, size=n) * baseline
    eyes = np.stack([center[0] + radius * np.cos(ang), heights, center[2] + radius * np.sin(ang)], axis=1)
    targets = center[None] + _jitter(rng, n, rotation, np.full(n, radius))
    roll = np.deg2rad(rotation) * 0.3 * rng.uniform(-1, 1, size=n)
    return eyes, targets, roll


def forward(rng: np.random.Generator, n: int, center: np.ndarray, radius: float, height: float,
            baseline: float, rotation: float) -> Path:
    """Walk from ``radius`` away towards ``center``, turning a little each step."""
    start_ang = rng.uniform(0, 2 * np.pi)
    eye = np.array([center[0] + radius * np.cos(start_ang), height, center[2] + radius * np.sin(start_ang)])
    heading = np.arctan2(center[2] - eye[2], center[0] - eye[0]) + np.deg2rad(rng.uniform(-20, 20))
    turn = np.deg2rad(rotation) * rng.uniform(-1, 1)
    eyes, targets = [], []
    for _ in range(n):
        direction = np.array([np.cos(heading), rng.uniform(-0.15, 0.05), np.sin(heading)])
        eyes.append(eye.copy())
        targets.append(eye + 3.0 * direction)
        eye = eye + baseline * np.array([np.cos(heading), 0.0, np.sin(heading)])
        heading += turn
    eyes, targets = np.stack(eyes), np.stack(targets)
    targets = targets + _jitter(rng, n, rotation * 0.5, np.full(n, 3.0))
    roll = np.deg2rad(rotation) * 0.3 * rng.uniform(-1, 1, size=n)
    return eyes, targets, roll


def random_views(rng: np.random.Generator, n: int, center: np.ndarray, radius: float, height: float,
                 baseline: float, rotation: float) -> Path:
    """Eyes scattered within ``baseline`` of one viewpoint, all looking at the scene centre."""
    ang = rng.uniform(0, 2 * np.pi)
    base = np.array([center[0] + radius * np.cos(ang), height, center[2] + radius * np.sin(ang)])
    offsets = rng.normal(size=(n, 3))
    offsets *= (baseline * rng.uniform(0.3, 1.0, size=(n, 1))) / np.linalg.norm(offsets, axis=1, keepdims=True)
    offsets[:, 1] *= 0.4
    eyes = base[None] + offsets
    targets = center[None] + _jitter(rng, n, rotation, np.full(n, radius))
    roll = np.deg2rad(rotation) * 0.3 * rng.uniform(-1, 1, size=n)
    return eyes, targets, roll


TRAJECTORIES: Dict[str, Callable[..., Path]] = {"orbit": orbit, "forward": forward, "random": random_views}


def get_trajectory(name: str) -> Callable[..., Path]:
    try:
        return TRAJECTORIES[name]
    except KeyError:
        raise QvggtError(f"unknown trajectory {name!r}; choose one of {', '.join(TRAJECTORIES)} "
                         f"or 'mixed'") from None
