"""Shared fixtures: small models, the project's shared reference folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``../shared`` next to the checkout (override with QVGGT_SHARED)."""
    env = os.environ.get("QVGGT_SHARED")
    if env:
        return Path(env)
    for base in (REPO, *REPO.parents):
        candidate = base.parent / "shared"
        if (candidate / "reference").is_dir():
            return candidate
    return REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if not (path / "reference").is_dir():
        pytest.skip(f"shared reference folder not found at {path} (set QVGGT_SHARED)")
    return path


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


def micro_config(**changes):
    from qvggt_deploy.model.presets import get_preset

    return get_preset("micro").replace(**changes)


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> Path:
    """Real photos of mixed sizes and formats: ``shared/images/room/images`` when present,
    otherwise generated ones (JPG and PNG, 512x384 .. 1280x960) so the tests still run."""
    real = shared_dir() / "images" / "room" / "images"
    if real.is_dir():
        return real
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i, (size, ext) in enumerate([((512, 384), "png"), ((1280, 960), "jpg"), ((779, 520), "jpg"),
                                     ((640, 480), "png")]):
        arr = (rng.random((size[1] // 8, size[0] // 8, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).resize(size, Image.Resampling.BICUBIC).save(folder / f"{i:02d}.{ext}")
    return folder
