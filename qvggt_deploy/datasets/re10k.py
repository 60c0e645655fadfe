"""RealEstate10K: the released camera files plus frames you extracted from the videos::

    ROOT/test/<sequence>.txt            line 1: the video URL; then one line per frame:
                                        timestamp fx fy cx cy 0 0 r11 r12 r13 t1 r21 ... t3
                                        (intrinsics normalised by the image width / height,
                                        pose = camera-from-world 3x4, OpenCV axes)
    ROOT/frames/test/<sequence>/<timestamp>.png (or .jpg)   the frame at that timestamp

Frames whose image is missing are left out (videos are often partly unavailable); a sequence
with fewer than 2 frames on disk is skipped.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Union

import numpy as np

from qvggt_deploy.datasets.base import DatasetReader
from qvggt_deploy.datasets.sample import Sample, pick, require, sample_frames
from qvggt_deploy.errors import QvggtError

EXTENSIONS = (".png", ".jpg", ".jpeg")


def read_camera_file(path: Path) -> List[tuple]:
    """``[(timestamp, normalised fx fy cx cy, [R | t] 3x4)]`` from one RealEstate10K camera file."""
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for lineno, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        parts = line.split()
        try:
            values = [float(v) for v in parts[1:]]
            if len(values) != 18:
                raise ValueError
            rows.append((parts[0], np.array(values[:4]), np.array(values[6:]).reshape(3, 4)))
        except ValueError:
            raise QvggtError(f"{path}:{lineno}: expected a timestamp and 18 numbers (fx fy cx cy, 2 zeros, "
                             f"a 3x4 pose), got {len(parts)} fields") from None
    return rows


class Re10kReader(DatasetReader):
    """RealEstate10K camera benchmark (module docstring)."""

    name = "re10k"
    metrics = ("auc@30", "auc@15", "auc@5", "auc@3", "rra@15", "rta@15")

    def __init__(self, root, split: str = "test"):
        super().__init__(root)
        self.cameras = require(self.root / split, f"the RealEstate10K camera files of the {split} split "
                                                  f"(<sequence>.txt)")
        self.frames = require(self.root / "frames" / split, f"the extracted frames (frames/{split}/<sequence>/"
                                                            f"<timestamp>.png)")
        self._keys = sorted(p.stem for p in self.cameras.glob("*.txt"))
        if not self._keys:
            raise QvggtError(f"{self.cameras}: no RealEstate10K camera files (<sequence>.txt) inside")

    def keys(self) -> List[str]:
        return [f"{self.name}/{k}" for k in self._keys]

    def _image(self, seq: str, timestamp: str):
        for ext in EXTENSIONS:
            path = self.frames / seq / f"{timestamp}{ext}"
            if path.is_file():
                return path
        return None

    def sample(self, key: str, num_frames: int, seed: int) -> Union[Sample, str]:
        seq = key.split("/", 1)[1]
        rows = [(r, self._image(seq, r[0])) for r in read_camera_file(self.cameras / f"{seq}.txt")]
        rows = [(r, p) for r, p in rows if p is not None]
        if len(rows) < 2:
            return f"{len(rows)} frames on disk under {self.frames / seq}"
        chosen = pick(rows, sample_frames(len(rows), num_frames, seed, key))
        from PIL import Image

        Ks = []
        for (_, (fx, fy, cx, cy), _), path in chosen:
            with Image.open(path) as im:
                W, H = im.size
            Ks.append(np.array([[fx * W, 0, cx * W - 0.5], [0, fy * H, cy * H - 0.5], [0, 0, 1]]))
        return Sample(self.name, seq, self.name, [p for _, p in chosen], np.stack([r[2] for r, _ in chosen]),
                      np.stack(Ks), [r[0] for r, _ in chosen])
