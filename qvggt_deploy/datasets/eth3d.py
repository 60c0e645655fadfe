"""ETH3D high-resolution multi-view (training scenes, undistorted DSLR images)::

    ROOT/<scene>/dslr_calibration_undistorted/cameras.txt, images.txt   COLMAP text model
    ROOT/<scene>/images/dslr_images_undistorted/DSC_xxxx.JPG            (images.txt NAME under images/)
    ROOT/<scene>/ground_truth_depth/dslr_images/DSC_xxxx.JPG            raw float32 depth, image size,
                                                                        infinite where unknown
    ROOT/<scene>/masks_for_images/dslr_images/DSC_xxxx.png              optional; non-zero = excluded

COLMAP poses are camera-from-world (OpenCV axes), quaternions scalar-first.
"""
from __future__ import annotations

from typing import List, Union

import numpy as np

from qvggt_deploy.datasets.base import DatasetReader
from qvggt_deploy.datasets.formats import read_colmap_cameras, read_colmap_images, read_eth3d_depth
from qvggt_deploy.datasets.sample import Sample, pick, require, sample_frames
from qvggt_deploy.errors import QvggtError

CALIBRATION = "dslr_calibration_undistorted"


class Eth3dReader(DatasetReader):
    """ETH3D point-map benchmark (module docstring)."""

    name = "eth3d"
    metrics = ("accuracy", "completeness", "chamfer", "depthcam_accuracy", "depthcam_completeness",
               "depthcam_chamfer")
    units = "m"

    def __init__(self, root):
        super().__init__(root)
        self.scenes = sorted(p.name for p in self.root.iterdir() if (p / CALIBRATION).is_dir())
        if not self.scenes:
            raise QvggtError(f"--root {self.root}: no ETH3D scene folder (<scene>/{CALIBRATION}/) inside")
        for scene in self.scenes:
            for name in ("cameras.txt", "images.txt"):
                require(self.root / scene / CALIBRATION / name, f"the COLMAP text model of scene {scene}")
            require(self.root / scene / "ground_truth_depth" / "dslr_images",
                    f"the ground-truth depth maps of scene {scene}")

    def keys(self) -> List[str]:
        return [f"{self.name}/{s}" for s in self.scenes]

    def sample(self, key: str, num_frames: int, seed: int) -> Union[Sample, str]:
        scene = key.split("/", 1)[1]
        folder = self.root / scene
        cams = read_colmap_cameras(folder / CALIBRATION / "cameras.txt")
        images = sorted(read_colmap_images(folder / CALIBRATION / "images.txt").items())
        if len(images) < 2:
            return f"{len(images)} images in {folder / CALIBRATION / 'images.txt'}"
        chosen = pick(images, sample_frames(len(images), num_frames, seed, key))
        paths, Es, Ks, sizes, depth_paths, mask_paths = [], [], [], [], [], []
        for name, (cam_id, E) in chosen:
            if cam_id not in cams:
                raise QvggtError(f"{folder / CALIBRATION / 'images.txt'}: image {name} uses camera {cam_id}, "
                                 f"which cameras.txt does not define")
            width, height, K = cams[cam_id]
            base = name.split("/")[-1]
            paths.append(folder / "images" / name)
            depth_paths.append(require(folder / "ground_truth_depth" / "dslr_images" / base,
                                       f"the ground-truth depth of image {name}"))
            mask_paths.append(folder / "masks_for_images" / "dslr_images" / (base.rsplit(".", 1)[0] + ".png"))
            Es.append(E)
            Ks.append(K)
            sizes.append((width, height))

        def depth(i: int) -> np.ndarray:
            d = read_eth3d_depth(depth_paths[i], *sizes[i])
            if mask_paths[i].is_file():
                from PIL import Image

                with Image.open(mask_paths[i]) as m:
                    d = np.where(np.asarray(m) == 0, d, 0).astype(np.float32)
            return d

        return Sample(self.name, scene, self.name, paths, np.stack(Es), np.stack(Ks), [n for n, _ in chosen],
                      depth=depth)
