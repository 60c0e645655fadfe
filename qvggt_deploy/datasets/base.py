"""What every benchmark reader provides: sequence keys in a stable order (the unit of resuming and
sharding) and, per key, a :class:`~qvggt_deploy.datasets.sample.Sample` of seeded frames, or the
reason the official protocol skips that sequence."""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple, Union

from qvggt_deploy.datasets.sample import Sample
from qvggt_deploy.errors import QvggtError


class DatasetReader:
    """Subclasses set the class attributes and implement ``keys`` and ``sample``.

    Attributes:
        name: the ``--dataset`` name.
        metrics: the benchmark's headline metric keys (see :mod:`qvggt_deploy.metrics.summary`).
        units: unit of the point metrics ("" for camera-only benchmarks).
        max_dist: distances at or above this are left out of accuracy/completeness (None = all).
    """

    name = ""
    metrics: Tuple[str, ...] = ()
    units = ""
    max_dist = None

    def __init__(self, root):
        self.root = Path(root)
        if not self.root.is_dir():
            raise QvggtError(f"--root {self.root}: folder not found")

    def keys(self) -> List[str]:
        raise NotImplementedError

    def sample(self, key: str, num_frames: int, seed: int) -> Union[Sample, str]:
        raise NotImplementedError
