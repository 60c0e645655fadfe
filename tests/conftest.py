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
