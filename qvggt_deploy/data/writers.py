"""Writing results users open in other tools: binary PLY point clouds, coloured depth PNGs."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from qvggt_deploy.fileio import atomic_path


def write_ply(path, points: np.ndarray, colors: Optional[np.ndarray] = None) -> Path:
    """Binary little-endian PLY: float32 x, y, z (+ uint8 red, green, blue), atomically."""
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
        if len(colors) != len(points):
            raise ValueError(f"{len(points)} points but {len(colors)} colors")
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.empty(len(points), dtype=fields)
    vertices["x"], vertices["y"], vertices["z"] = points.T
    if colors is not None:
        vertices["red"], vertices["green"], vertices["blue"] = colors.T
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(points)}"]
    header += [f"property {'float' if t == '<f4' else 'uchar'} {n}" for n, t in fields]
    header.append("end_header")
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(("\n".join(header) + "\n").encode("ascii"))
            f.write(vertices.tobytes())
    return path


def read_ply(path) -> np.ndarray:
    """Read a binary PLY written by :func:`write_ply` (structured array of its vertices)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    lines = data[:end].decode("ascii").splitlines()
    count = int(next(line for line in lines if line.startswith("element vertex")).split()[-1])
    fields = [(ln.split()[2], "<f4" if ln.split()[1] == "float" else "u1")
              for ln in lines if ln.startswith("property")]
    return np.frombuffer(data[end:], dtype=fields, count=count)


def colorize_depth(depth: np.ndarray, valid: Optional[np.ndarray] = None, cmap: str = "turbo") -> np.ndarray:
    """Depth ``[H, W]`` -> RGB uint8 ``[H, W, 3]`` (near = warm), robust 2-98 percentile range.
    Without matplotlib (the core install) "turbo" comes from its polynomial fit instead."""
    depth = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(depth) if valid is None else (valid & np.isfinite(depth))
    lo, hi = (np.percentile(depth[valid], [2, 98]) if valid.any() else (0.0, 1.0))
    norm = np.clip((depth - lo) / max(hi - lo, 1e-12), 0, 1)
    rgb = colormap(cmap, 1.0 - norm)
    rgb[~valid] = 0
    return (rgb * 255).round().astype(np.uint8)


# Turbo as a degree-5 polynomial per channel (A. Mikhailov's fit of Google's colormap).
_TURBO = np.array([[0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
                   [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
                   [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973]])


def colormap(name: str, x: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] of ``x`` in [0, 1]: matplotlib's colormap; without matplotlib (the core
    install) turbo's polynomial fit, and grey levels for any other name."""
    try:
        import matplotlib
    except ImportError:
        x = np.asarray(x, dtype=np.float64)
        if name != "turbo":
            return np.repeat(x[..., None], 3, axis=-1)
        powers = np.stack([x ** k for k in range(6)], axis=-1)
        return np.clip(powers @ _TURBO.T, 0.0, 1.0)
    return matplotlib.colormaps[name](x)[..., :3]


def write_png(path, rgb: np.ndarray) -> Path:
    from PIL import Image

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(tmp, format="PNG")
    return path


def write_npy(path, array: np.ndarray) -> Path:
    """``np.save`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)
    return path
