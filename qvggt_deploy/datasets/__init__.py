"""Streaming readers of the public benchmarks VGGT is evaluated on (CO3Dv2, RealEstate10K, DTU,
ETH3D), their common :class:`~qvggt_deploy.datasets.sample.Sample`, and the benchmark evaluation
(:mod:`qvggt_deploy.datasets.evaluate`)."""
from __future__ import annotations

from typing import Dict

from qvggt_deploy.errors import QvggtError

READERS: Dict[str, str] = {
    "co3d": "qvggt_deploy.datasets.co3d:Co3dReader",
    "re10k": "qvggt_deploy.datasets.re10k:Re10kReader",
    "dtu": "qvggt_deploy.datasets.dtu:DtuReader",
    "eth3d": "qvggt_deploy.datasets.eth3d:Eth3dReader",
}


def open_dataset(name: str, root, **options):
    """The reader of benchmark ``name`` over ``root`` (the layout is checked here)."""
    import importlib

    if name not in READERS:
        raise QvggtError(f"unknown dataset {name!r}; choose one of {', '.join(READERS)}")
    module, cls = READERS[name].split(":")
    return getattr(importlib.import_module(module), cls)(root, **options)


__all__ = ["READERS", "open_dataset"]
