"""Small file formats of the benchmark layouts: gzipped JSON (CO3Dv2 ``.jgz``), PFM depth maps
(DTU, MVSNet layout), COLMAP text models and ETH3D's raw float32 depth maps."""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np

from qvggt_deploy.errors import QvggtError


def read_jgz(path: Path) -> Any:
    """A gzipped JSON file (CO3Dv2 annotations)."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError, EOFError) as exc:
        raise QvggtError(f"{path}: not a gzipped JSON file ({exc})") from exc


def read_pfm(path: Path) -> np.ndarray:
    """A PFM image -> float32 ``[H, W]`` (``Pf``) or ``[H, W, 3]`` (``PF``), top row first."""
    try:
        with open(path, "rb") as f:
            header = f.readline().decode("latin-1").strip()
            if header not in ("PF", "Pf"):
                raise ValueError(f"header {header!r} is not PF or Pf")
            dims = re.match(r"^\s*(\d+)\s+(\d+)\s*$", f.readline().decode("latin-1"))
            if not dims:
                raise ValueError("malformed size line")
            width, height = int(dims.group(1)), int(dims.group(2))
            scale = float(f.readline().decode("latin-1").strip())
            data = np.fromfile(f, dtype="<f4" if scale < 0 else ">f4")
    except (OSError, ValueError) as exc:
        raise QvggtError(f"{path}: unreadable PFM file ({exc})") from exc
    channels = 3 if header == "PF" else 1
    if data.size != width * height * channels:
        raise QvggtError(f"{path}: PFM holds {data.size} values, expected {width}x{height}x{channels}")
    shape = (height, width, 3) if channels == 3 else (height, width)
    return np.flipud(data.reshape(shape)).astype(np.float32)  # PFM rows run bottom to top


def write_pfm(path: Path, image: np.ndarray) -> None:
    """Write a float32 ``[H, W]`` map as a little-endian ``Pf`` file."""
    image = np.asarray(image, dtype="<f4")
    with open(path, "wb") as f:
        f.write(f"Pf\n{image.shape[1]} {image.shape[0]}\n-1\n".encode("latin-1"))
        f.write(np.flipud(image).tobytes())


def qvec_to_rotmat(q) -> np.ndarray:
    """COLMAP quaternion ``(qw, qx, qy, qz)`` -> rotation matrix (normalised first)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


# COLMAP camera models whose first parameters are f (or fx, fy), cx, cy; ETH3D's undistorted
# models are PINHOLE. Distortion parameters, if any, are ignored (undistorted images expected).
_FOCAL = {"SIMPLE_PINHOLE": 1, "PINHOLE": 2, "SIMPLE_RADIAL": 1, "RADIAL": 1, "OPENCV": 2, "FULL_OPENCV": 2}


def read_colmap_cameras(path: Path) -> Dict[int, Tuple[int, int, np.ndarray]]:
    """``cameras.txt`` -> ``{camera_id: (width, height, K)}`` with K in integer-pixel convention
    (COLMAP's principal point minus 0.5)."""
    cams = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        try:
            cam_id, model, width, height = int(parts[0]), parts[1], int(parts[2]), int(parts[3])
            params = [float(p) for p in parts[4:]]
            nf = _FOCAL[model]
            fx, fy = (params[0], params[0]) if nf == 1 else (params[0], params[1])
            cx, cy = params[nf], params[nf + 1]
        except KeyError:
            raise QvggtError(f"{path}:{lineno}: camera model {parts[1]!r} is not supported "
                             f"(use {', '.join(_FOCAL)})") from None
        except (IndexError, ValueError):
            raise QvggtError(f"{path}:{lineno}: malformed camera line") from None
        cams[cam_id] = (width, height, np.array([[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1]]))
    return cams


def read_colmap_images(path: Path) -> Dict[str, Tuple[int, np.ndarray]]:
    """``images.txt`` -> ``{name: (camera_id, [R | t] camera-from-world 3x4)}`` (every other line
    holds the 2D points, skipped)."""
    images = {}
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    for index in range(0, len(lines), 2):
        parts = lines[index].split()
        if not parts:
            continue
        try:
            q = [float(v) for v in parts[1:5]]
            t = np.array([float(v) for v in parts[5:8]])
            cam_id, name = int(parts[8]), parts[9]
        except (IndexError, ValueError):
            raise QvggtError(f"{path}: malformed image line {lines[index][:80]!r}") from None
        images[name] = (cam_id, np.concatenate([qvec_to_rotmat(q), t[:, None]], axis=1))
    return images


def read_eth3d_depth(path: Path, width: int, height: int) -> np.ndarray:
    """ETH3D ground-truth depth: raw little-endian float32, row-major, ``height x width``;
    invalid pixels are infinite (returned as 0)."""
    data = np.fromfile(path, dtype="<f4")
    if data.size != width * height:
        raise QvggtError(f"{path}: {data.size} depth values, expected {width}x{height} for its image")
    depth = data.reshape(height, width)
    return np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float32)
