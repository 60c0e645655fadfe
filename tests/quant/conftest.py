"""Fixtures of the quantization tests: one CPU thread (the machines are shared and small models
run faster single-threaded), a micro model and a few tiny calibration scenes."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def micro():
    from qvggt_deploy.model import build_model

    return build_model("micro", seed=0)


@pytest.fixture
def scenes():
    g = torch.Generator().manual_seed(0)
    return [torch.rand(1, 2, 3, 56, 56, generator=g) for _ in range(2)]


def fast_options(method: str, **changes):
    """Calibration options with the smallest grids (the code paths, not the quality)."""
    from qvggt_deploy.quant.calibrate import CalibOptions
    from qvggt_deploy.quant.task_search import TaskSearchOptions

    changes.setdefault("search", TaskSearchOptions(grid=3, clips=(1.0, 0.9), top_m=1, scenes=1))
    return CalibOptions.for_method(method, group=32, max_rows=512, **changes)
