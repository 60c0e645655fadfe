"""DTU in the MVS layout of MVSNet's training data (used by MVSNet-style loaders)::

    ROOT/Cameras/<view:08d>_cam.txt     (or ROOT/Cameras/train/)  "extrinsic" + 4x4 camera-from-
                                        world (mm), "intrinsic" + 3x3, then depth_min interval
    ROOT/Rectified/scan<N>_train/rect_<view+1:03d>_<light>_r5000.png   images (light 3 by default)
    ROOT/Depths/scan<N>_train/depth_map_<view:04d>.pfm                  ground-truth depth (mm)

The intrinsics of ``Cameras/`` are those of the depth maps (MVSNet's release: 160x128 depth
maps for 640x512 images); they are scaled to the image by ``image_width / depth_width``.
Scans: the 22 of the usual DTU evaluation list found under ``Rectified/``; views: 49 per scan.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from qvggt_deploy.datasets.base import DatasetReader
from qvggt_deploy.datasets.formats import read_pfm
from qvggt_deploy.datasets.sample import Sample, pick, require, sample_frames
from qvggt_deploy.errors import QvggtError

TEST_SCANS = (1, 4, 9, 10, 11, 12, 13, 15, 23, 24, 29, 32, 33, 34, 48, 49, 62, 75, 77, 110, 114, 118)
VIEWS = 49


def read_cam_file(path: Path):
    """MVSNet cam.txt -> (extrinsic 3x4 camera-from-world, intrinsic 3x3)."""
    words = path.read_text(encoding="utf-8").split()
    try:
        e = words.index("extrinsic")
        i = words.index("intrinsic")
        E = np.array([float(w) for w in words[e + 1:e + 17]]).reshape(4, 4)
        K = np.array([float(w) for w in words[i + 1:i + 10]]).reshape(3, 3)
    except ValueError:
        raise QvggtError(f"{path}: not an MVSNet camera file ('extrinsic' 4x4 then 'intrinsic' 3x3)") from None
    return E[:3], K


class DtuReader(DatasetReader):
    """DTU multi-view depth / point cloud benchmark (module docstring)."""

    name = "dtu"
    # VGGT's DTU numbers come from the depth head unprojected with the predicted cameras
    metrics = ("depthcam_accuracy", "depthcam_completeness", "depthcam_chamfer")
    units = "mm"
    max_dist = 20.0  # mm, as the DTU evaluation's outlier cut-off

    def __init__(self, root, scans: Optional[Sequence[int]] = None, light: int = 3):
        super().__init__(root)
        cams = require(self.root / "Cameras", "the DTU camera folder (Cameras/<view:08d>_cam.txt)")
        self.cameras = cams / "train" if (cams / "train").is_dir() else cams
        self.rectified = require(self.root / "Rectified", "the DTU image folder (Rectified/scan<N>_train/)")
        self.depths = require(self.root / "Depths", "the DTU depth folder (Depths/scan<N>_train/)")
        wanted = list(scans) if scans else [s for s in TEST_SCANS if (self.rectified / f"scan{s}_train").is_dir()]
        if not wanted:
            raise QvggtError(f"{self.rectified}: none of the DTU evaluation scans (scan1_train, scan4_train, ...) "
                             f"is inside")
        for s in wanted:
            require(self.rectified / f"scan{s}_train", f"the images of DTU scan {s}")
            require(self.depths / f"scan{s}_train", f"the depth maps of DTU scan {s}")
        self.scans, self.light = wanted, light

    def keys(self) -> List[str]:
        return [f"{self.name}/scan{s}" for s in self.scans]

    def _views(self, scan: str) -> List[int]:
        return [v for v in range(VIEWS)
                if (self.rectified / f"{scan}_train" / f"rect_{v + 1:03d}_{self.light}_r5000.png").is_file()]

    def sample(self, key: str, num_frames: int, seed: int) -> Union[Sample, str]:
        scan = key.split("/", 1)[1]
        views = self._views(scan)
        if len(views) < 2:
            return f"{len(views)} images with light {self.light} under {self.rectified / (scan + '_train')}"
        chosen = pick(views, sample_frames(len(views), num_frames, seed, key))
        images = [self.rectified / f"{scan}_train" / f"rect_{v + 1:03d}_{self.light}_r5000.png" for v in chosen]
        depth_paths = [require(self.depths / f"{scan}_train" / f"depth_map_{v:04d}.pfm", f"the depth map of view {v}")
                       for v in chosen]
        Es, Ks = [], []
        from PIL import Image

        for v, image, depth_path in zip(chosen, images, depth_paths):
            E, K = read_cam_file(require(self.cameras / f"{v:08d}_cam.txt", f"the camera file of view {v}"))
            with Image.open(image) as im:
                width = im.size[0]
            depth_w = _pfm_width(depth_path)
            K = K.copy()
            K[:2] *= width / depth_w
            Es.append(E)
            Ks.append(K)

        def depth(i: int, paths=depth_paths) -> np.ndarray:
            return read_pfm(paths[i])

        return Sample(self.name, scan, self.name, images, np.stack(Es), np.stack(Ks), [str(v) for v in chosen],
                      depth=depth)


def _pfm_width(path: Path) -> int:
    with open(path, "rb") as f:
        f.readline()
        try:
            return int(f.readline().split()[0])
        except (ValueError, IndexError):
            raise QvggtError(f"{path}: unreadable PFM header") from None
