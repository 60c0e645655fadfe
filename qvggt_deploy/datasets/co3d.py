"""CO3Dv2 as downloaded (facebookresearch/co3d), read category by category::

    ROOT/<category>/frame_annotations.jgz       per frame: sequence_name, frame_number,
                                                image {path, size [H, W]}, viewpoint {R, T,
                                                focal_length, principal_point, intrinsics_format}
    ROOT/<category>/sequence_annotations.jgz    per sequence: sequence_name, viewpoint_quality_score
    ROOT/<category>/set_lists/set_lists_fewview_dev.json   {"test": [[sequence, frame_number, path]]}
    ROOT/<image path from the annotations>      e.g. apple/110_13051_23361/images/frame000001.jpg

Test sequences as VGGT's evaluation (via the RelPose++ preprocessing it reads): the ``test`` list
of ``set_lists_fewview_dev.json``, sequences with ``viewpoint_quality_score > 0.5``, at least 50
frames, and no frame whose ground-truth ``T[0] + T[1] + T[2]`` exceeds 1e5. Cameras go from
PyTorch3D (row-vector ``X R + T``, NDC x left, y up) to OpenCV camera-from-world:
``R_cv = diag(-1,-1,1) R^T``, ``t_cv = diag(-1,-1,1) T``. Only one category's annotations are
held in memory at a time.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from qvggt_deploy.datasets.base import DatasetReader
from qvggt_deploy.datasets.formats import read_jgz
from qvggt_deploy.datasets.sample import Sample, pick, require, sample_frames
from qvggt_deploy.errors import QvggtError

# The 41 categories VGGT's CO3Dv2 evaluation reports (its test_co3d.py list).
CATEGORIES = ("apple", "backpack", "banana", "baseballbat", "baseballglove", "bench", "bicycle", "bottle", "bowl",
              "broccoli", "cake", "car", "carrot", "cellphone", "chair", "cup", "donut", "hairdryer", "handbag",
              "hydrant", "keyboard", "laptop", "microwave", "motorcycle", "mouse", "orange", "parkingmeter",
              "pizza", "plant", "stopsign", "teddybear", "toaster", "toilet", "toybus", "toyplane", "toytrain",
              "toytruck", "tv", "umbrella", "vase", "wineglass")
SET_LIST = "set_lists/set_lists_fewview_dev.json"
MIN_QUALITY = 0.5
MIN_FRAMES = 50
MAX_TRANSLATION_SUM = 1e5
_FLIP = np.diag([-1.0, -1.0, 1.0])


def opencv_camera(viewpoint: dict, size_hw) -> tuple:
    """PyTorch3D viewpoint (NDC intrinsics) -> OpenCV ``([R | t] 3x4, K 3x3)`` in pixels."""
    R = np.asarray(viewpoint["R"], dtype=np.float64)
    T = np.asarray(viewpoint["T"], dtype=np.float64)
    E = np.concatenate([_FLIP @ R.T, (_FLIP @ T)[:, None]], axis=1)
    H, W = float(size_hw[0]), float(size_hw[1])
    fmt = viewpoint.get("intrinsics_format", "ndc_norm_image_bounds")
    if fmt == "ndc_isotropic":
        sx = sy = min(H, W) / 2
    elif fmt == "ndc_norm_image_bounds":
        sx, sy = W / 2, H / 2
    else:
        raise QvggtError(f"CO3D intrinsics_format {fmt!r} is not ndc_isotropic or ndc_norm_image_bounds")
    f, p = viewpoint["focal_length"], viewpoint["principal_point"]
    # NDC axes point left and up; pixel centres at +0.5 -> integer-pixel convention (-0.5).
    K = np.array([[f[0] * sx, 0, -p[0] * sx + W / 2 - 0.5], [0, f[1] * sy, -p[1] * sy + H / 2 - 0.5], [0, 0, 1]])
    return E, K


class Co3dReader(DatasetReader):
    """CO3Dv2 camera benchmark (module docstring)."""

    name = "co3d"
    metrics = ("auc@30", "auc@15", "auc@5", "auc@3", "rra@15", "rta@15")

    def __init__(self, root, categories: Optional[Sequence[str]] = None, min_frames: int = MIN_FRAMES):
        super().__init__(root)
        wanted = list(categories) if categories else [c for c in CATEGORIES if (self.root / c).is_dir()]
        if not wanted:
            raise QvggtError(f"--root {self.root}: no CO3Dv2 category folder (apple/, backpack/, ...) inside")
        for category in wanted:
            folder = require(self.root / category, f"the CO3Dv2 category folder for {category}")
            for name, what in (("frame_annotations.jgz", "the frame annotations"),
                               ("sequence_annotations.jgz", "the sequence annotations"),
                               (SET_LIST, "the official few-view dev set list (its 'test' split)")):
                require(folder / name, f"{what} of category {category}")
        self.categories = wanted
        self.min_frames = min_frames
        self._loaded: Optional[str] = None
        self._frames: Dict[str, Dict[int, dict]] = {}
        self._test: Dict[str, Dict[str, List[int]]] = {}

    def _test_split(self, category: str) -> Dict[str, List[int]]:
        if category not in self._test:
            import json

            path = self.root / category / SET_LIST
            try:
                lists = json.loads(path.read_text(encoding="utf-8"))
                entries = lists["test"]
            except (ValueError, KeyError, TypeError) as exc:
                raise QvggtError(f"{path}: not a CO3Dv2 set list with a 'test' split ({exc})") from exc
            quality = {s["sequence_name"]: float(s.get("viewpoint_quality_score") or 0)
                       for s in read_jgz(self.root / category / "sequence_annotations.jgz")}
            split: Dict[str, List[int]] = {}
            for seq, frame_number, _path in entries:
                if quality.get(seq, 0.0) > MIN_QUALITY:
                    split.setdefault(seq, []).append(int(frame_number))
            self._test[category] = split
        return self._test[category]

    def keys(self) -> List[str]:
        return [f"{c}/{s}" for c in self.categories for s in sorted(self._test_split(c))]

    def _annotations(self, category: str) -> Dict[str, Dict[int, dict]]:
        if self._loaded != category:  # one category in memory at a time
            self._frames = {}
            for frame in read_jgz(self.root / category / "frame_annotations.jgz"):
                self._frames.setdefault(frame["sequence_name"], {})[int(frame["frame_number"])] = frame
            self._loaded = category
        return self._frames

    def sample(self, key: str, num_frames: int, seed: int) -> Union[Sample, str]:
        category, seq = key.split("/", 1)
        numbers = sorted(self._test_split(category).get(seq, []))
        if len(numbers) < self.min_frames:
            return f"{len(numbers)} test frames (< {self.min_frames})"
        annotations = self._annotations(category).get(seq, {})
        missing = [n for n in numbers if n not in annotations]
        if missing:
            raise QvggtError(f"{self.root / category / 'frame_annotations.jgz'}: no annotation for frame "
                             f"{missing[0]} of test sequence {seq}")
        frames = [annotations[n] for n in numbers]
        if any(sum(float(t) for t in f["viewpoint"]["T"]) > MAX_TRANSLATION_SUM for f in frames):
            return "a ground-truth translation T[0] + T[1] + T[2] is above 1e5"
        chosen = pick(frames, sample_frames(len(frames), num_frames, seed, key))
        cams = [opencv_camera(f["viewpoint"], f["image"]["size"]) for f in chosen]
        return Sample(self.name, seq, category, [self.root / f["image"]["path"] for f in chosen],
                      np.stack([c[0] for c in cams]), np.stack([c[1] for c in cams]),
                      [str(f["frame_number"]) for f in chosen])
