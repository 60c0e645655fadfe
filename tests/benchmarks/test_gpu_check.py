"""benchmarks/gpu_check.py without a GPU: it must refuse to report, and its end-to-end plumbing
(model preparation, conversion, comparison) must run on CPU with the tiny preset."""
import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal")
def test_refuses_without_cuda_and_writes_nothing(gpu_check, tmp_path, capsys):
    assert gpu_check.main([str(tmp_path / "report.json")]) == 2
    assert not (tmp_path / "report.json").exists()
    assert "nothing measured" in capsys.readouterr().err


@pytest.mark.slow
def test_e2e_plumbing_on_cpu(gpu_check):
    rows = gpu_check.run_e2e("cpu", preset="tiny", frames=(1,), group=64, modes=("fp32", "w4a16"), reps=1, size=112)
    fp32, w4 = rows
    assert fp32["mode"] == "fp32" and w4["mode"] == "w4a16" and w4["frames"] == 1
    assert w4["converted_linears"] > 0 and w4["weight_bytes"] < fp32["weight_bytes"]
    # the 9-wide pose layers cannot use the kernel and are reported, not hidden
    assert w4["unconverted_linears"] == ["camera_head.embed_pose", "camera_head.pose_branch.fc2"]
    assert set(w4["rel_l2_vs_fp32"]) == {"pose_enc", "depth", "world_points"}
