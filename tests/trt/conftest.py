"""Shared helpers for the TensorRT-side tests (profiles as dicts, tiny ONNX graphs)."""
from __future__ import annotations

import copy

import pytest

BASE_PROFILE = {
    "name": "test-device",
    "device": {"description": "a test device", "memory_gib": 8.0, "unified_memory": True,
               "os_reserved_gib": 1.0, "cuda_context_gib": 0.5, "compute_capability": [8, 7]},
    "model": {"preset": "micro", "height": 56, "width": 56, "weights": "fp16", "attention": "fused"},
    "frames": {"min": 1, "opt": 2, "max": 4},
    "builder": {"workspace_mib": 256, "tactic_shared_memory_kib": 48, "optimization_level": 2,
                "max_aux_streams": 0, "timing_cache": "test.timing", "version_compatible": False},
    "split": "auto",
}


@pytest.fixture
def profile_doc():
    return copy.deepcopy(BASE_PROFILE)
