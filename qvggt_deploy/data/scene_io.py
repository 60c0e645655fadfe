"""Scene folders on disk: generated scenes, or your own images with ground truth.

Layout (``docs/scenes.md`` has the details)::

    SCENE/
      images/000.png, 001.png, ...   S RGB images, all H x W (8-bit; any PIL-readable format)
      scene.npz                      depth [S,H,W] f32, mask [S,H,W] bool, intrinsics [S,3,3],
                                     extrinsics [S,3,4] (camera-from-world, OpenCV), world_points
                                     [S,H,W,3] (optional: computed from depth + cameras)
      scene.json                     metadata: format, format_version, seed, generator, ...

The writer is atomic (the folder appears complete or not at all). The reader checks every key
and shape and names the file at fault.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Union

import numpy as np
import torch

from qvggt_deploy.data.images import IMAGE_EXTENSIONS, open_rgb
from qvggt_deploy.data.synthetic import Scene
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.fileio import atomic_dir
from qvggt_deploy.geometry import unproject_depth_map_to_point_map

PathLike = Union[str, os.PathLike]
FORMAT = "qvggt-scene"
FORMAT_VERSION = 1


def write_scene(scene: Scene, folder: PathLike) -> Path:
    """Write ``scene`` to ``folder`` (replaced atomically if it exists). Images become 8-bit PNGs."""
    from PIL import Image

    folder = Path(folder)
    with atomic_dir(folder, ours="scene.json") as tmp:  # replaces an earlier scene, nothing else
        (tmp / "images").mkdir()
        rgb = (scene.images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for i, frame in enumerate(rgb):
            Image.fromarray(frame).save(tmp / "images" / f"{i:03d}.png")
        np.savez_compressed(tmp / "scene.npz", depth=scene.depth.numpy().astype(np.float32),
                            mask=scene.mask.numpy().astype(bool),
                            intrinsics=scene.intrinsics.numpy().astype(np.float32),
                            extrinsics=scene.extrinsics.numpy().astype(np.float32),
                            world_points=scene.world_points.numpy().astype(np.float32))
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "num_frames": scene.num_frames,
                "image_size": list(scene.images.shape[-2:]), **scene.meta}
        (tmp / "scene.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return folder


def _check_shape(path: Path, name: str, arr: np.ndarray, shape) -> None:
    if tuple(arr.shape) != tuple(shape):
        raise QvggtError(f"{path}: '{name}' has shape {list(arr.shape)}, expected {list(shape)}")


def read_scene(folder: PathLike) -> Scene:
    """Read a scene folder written by :func:`write_scene` or by hand (see module docstring)."""
    folder = Path(folder)
    npz_path, json_path, img_dir = folder / "scene.npz", folder / "scene.json", folder / "images"
    if not npz_path.is_file():
        raise QvggtError(f"{folder}: not a scene folder (no scene.npz)")
    meta = {}
    if json_path.is_file():
        try:
            meta = json.loads(json_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise QvggtError(f"{json_path}: invalid JSON ({exc})") from exc
        if meta.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
            raise QvggtError(f"{json_path}: format_version {meta['format_version']} is newer than this "
                             f"reader ({FORMAT_VERSION})")
    try:
        with np.load(npz_path) as z:
            data = {k: z[k] for k in z.files}
    except Exception as exc:
        raise QvggtError(f"{npz_path}: cannot be read as .npz ({exc})") from exc
    for key in ("depth", "intrinsics", "extrinsics"):
        if key not in data:
            raise QvggtError(f"{npz_path}: missing '{key}' (has: {', '.join(sorted(data)) or 'nothing'})")
    depth = data["depth"]
    if depth.ndim == 4 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 3:
        raise QvggtError(f"{npz_path}: 'depth' must be [S,H,W], got shape {list(depth.shape)}")
    S, H, W = depth.shape
    _check_shape(npz_path, "intrinsics", data["intrinsics"], (S, 3, 3))
    extr = data["extrinsics"]
    if extr.shape == (S, 4, 4):
        extr = extr[:, :3]
    _check_shape(npz_path, "extrinsics", extr, (S, 3, 4))
    mask = data.get("mask", depth > 0)
    _check_shape(npz_path, "mask", mask, (S, H, W))
    mask = mask.astype(bool) & (depth > 0) & np.isfinite(depth)

    if not img_dir.is_dir():
        raise QvggtError(f"{folder}: no images/ folder")
    files = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if len(files) != S:
        raise QvggtError(f"{img_dir}: {len(files)} images but scene.npz has {S} frames")
    images = []
    for f in files:
        im = open_rgb(f)
        if im.size != (W, H):
            raise QvggtError(f"{f}: image is {im.size[0]}x{im.size[1]} (WxH), depth maps are {W}x{H}")
        images.append(torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1))
    depth_t = torch.from_numpy(np.where(mask, depth, 0).astype(np.float32))
    K = torch.from_numpy(data["intrinsics"].astype(np.float32))
    E = torch.from_numpy(extr.astype(np.float32))
    mask_t = torch.from_numpy(mask)
    if "world_points" in data:
        _check_shape(npz_path, "world_points", data["world_points"], (S, H, W, 3))
        pts = torch.from_numpy(data["world_points"].astype(np.float32))
    else:
        pts = unproject_depth_map_to_point_map(depth_t, E, K).float()
    pts = pts * mask_t[..., None]
    meta = dict(meta, source=str(folder))
    return Scene(images=torch.stack(images), depth=depth_t, mask=mask_t, intrinsics=K, extrinsics=E,
                 world_points=pts, meta=meta)


def list_scene_dirs(root: PathLike) -> List[Path]:
    """``root`` itself if it is a scene folder, else its scene subfolders (sorted); none is an error."""
    root = Path(root)
    if not root.is_dir():
        raise QvggtError(f"scene folder not found: {root}")
    if (root / "scene.npz").is_file():
        return [root]
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and (p / "scene.npz").is_file())
    if not dirs:
        raise QvggtError(f"{root}: no scene folders (folders with a scene.npz) inside")
    return dirs
