"""A COLMAP text model (cameras.txt, images.txt, points3D.txt) of one reconstruction.

Conventions, checked against COLMAP's documentation (Output Format) and
``colmap/src/colmap/scene/reconstruction_io.cc``:

- One ``PINHOLE`` camera per image (VGGT predicts each frame's field of view), ``fx fy cx cy``
  at the photo's own resolution (upright, EXIF applied) and named as given, so the model opens
  with the original photos.
- images.txt stores world-to-camera ``QW QX QY QZ TX TY TZ``: our extrinsic ``[R | t]`` is
  camera-from-world already; the quaternion is VGGT's predicted one (scalar-last in the pose
  encoding), normalised, scalar first, ``QW >= 0``.
- Pixel coordinates: COLMAP puts the centre of the top-left pixel at (0.5, 0.5); VGGT's
  intrinsics (cx = W/2) are used with integer pixel indices (centre of the top-left pixel at
  (0, 0), :mod:`qvggt_deploy.geometry.unproject`). So at network resolution COLMAP's principal
  point is VGGT's + 0.5; it then maps to the photo by the :class:`Placement` (scale and offset).
  (VGGT's own ``demo_colmap.py`` writes cx = W/2, half a pixel off this.)
- Each point comes from one pixel of one image: its track has one element, and that image
  lists it among its POINTS2D (x, y in the photo's pixels). ERROR is 0 (no bundle adjustment).
  The world frame is the first camera's, at the model's normalised (non-metric) scale.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.fileio import write_text
from qvggt_deploy.outputs.reconstruction import Points, Reconstruction

FILES = ("cameras.txt", "images.txt", "points3D.txt")


@dataclass(frozen=True)
class ColmapImage:
    """One image's COLMAP camera (PINHOLE at the photo's size) and pose (world-to-camera)."""

    name: str
    width: int
    height: int
    params: Tuple[float, float, float, float]  # fx, fy, cx, cy
    qvec: Tuple[float, float, float, float]  # qw, qx, qy, qz
    tvec: Tuple[float, float, float]


def check_names(names: Sequence[str]) -> None:
    """COLMAP's text format ends a line's fields at whitespace: such names cannot be written."""
    for name in names:
        if not name or any(c.isspace() for c in name):
            raise QvggtError(f"image name {name!r} contains whitespace, which COLMAP's text format cannot hold; "
                             f"rename the file")


def colmap_images(recon: Reconstruction) -> List[ColmapImage]:
    """Each frame's camera and pose in COLMAP's conventions (see the module docstring)."""
    import torch

    from qvggt_deploy.geometry.pose_enc import pose_encoding_to_extri_intri

    H, W = recon.size_hw
    enc = torch.from_numpy(recon.pose_enc).double()
    _, K = pose_encoding_to_extri_intri(enc, (H, W))
    K = K.numpy()
    out = []
    for i, (name, place) in enumerate(zip(recon.names, recon.placements)):
        sx, sy = place.scale_xy
        params = (K[i, 0, 0] / sx, K[i, 1, 1] / sy, (K[i, 0, 2] + 0.5 - place.left) / sx,
                  (K[i, 1, 2] + 0.5 - place.top) / sy)
        q = enc[i, 3:7].numpy()
        q = q / np.linalg.norm(q)
        qvec = (q[3], q[0], q[1], q[2]) if q[3] >= 0 else (-q[3], -q[0], -q[1], -q[2])
        out.append(ColmapImage(name, int(place.original_wh[0]), int(place.original_wh[1]),
                               tuple(float(v) for v in params), tuple(float(v) for v in qvec),
                               tuple(float(v) for v in enc[i, :3].numpy())))
    return out


def photo_pixels(recon: Reconstruction, points: Points) -> np.ndarray:
    """``[M, 2]`` float64: each point's source pixel centre in its photo, COLMAP's coordinates."""
    scale = np.array([p.scale_xy for p in recon.placements], dtype=np.float64)
    offset = np.array([(p.left, p.top) for p in recon.placements], dtype=np.float64)
    net = np.stack([points.col, points.row], axis=1) + 0.5
    return (net - offset[points.frame]) / scale[points.frame]


def _num(x: float) -> str:
    return repr(float(x))  # shortest text that reads back as the same double


def write_colmap_text(folder, recon: Reconstruction, points: Points) -> List[Path]:
    """Write cameras.txt, images.txt and points3D.txt into ``folder``; returns their paths."""
    check_names(recon.names)
    folder = Path(folder)
    images = colmap_images(recon)
    xy = photo_pixels(recon, points)
    ids = np.arange(1, len(points) + 1)
    counts = np.bincount(points.frame, minlength=len(images))
    starts = np.concatenate([[0], np.cumsum(counts)])
    point2d_idx = ids - 1 - starts[points.frame]

    cameras = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
               f"# Number of cameras: {len(images)}"]
    cameras += [f"{i} PINHOLE {im.width} {im.height} {' '.join(_num(v) for v in im.params)}"
                for i, im in enumerate(images, 1)]
    lines = ["# Image list with two lines of data per image:",
             "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
             "#   POINTS2D[] as (X, Y, POINT3D_ID)",
             f"# Number of images: {len(images)}, mean observations per image: "
             f"{len(points) / max(len(images), 1):g}"]
    for i, im in enumerate(images):
        pose = " ".join(_num(v) for v in im.qvec + im.tvec)
        lines.append(f"{i + 1} {pose} {i + 1} {im.name}")
        sel = slice(starts[i], starts[i + 1])
        lines.append(" ".join(f"{x:.6f} {y:.6f} {pid}" for (x, y), pid in zip(xy[sel], ids[sel])))
    pts = ["# 3D point list with one line of data per point:",
           "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
           f"# Number of points: {len(points)}, mean track length: 1"]
    pts += [f"{pid} {x:.9g} {y:.9g} {z:.9g} {r} {g} {b} 0 {f + 1} {j}"
            for pid, (x, y, z), (r, g, b), f, j in zip(ids, points.xyz.tolist(), points.rgb.tolist(),
                                                        points.frame.tolist(), point2d_idx.tolist())]
    paths = [folder / name for name in FILES]
    for path, text in zip(paths, (cameras, lines, pts)):
        write_text(path, "\n".join(text) + "\n")
    return paths
