from pathlib import Path

import pytest

from qvggt_deploy.cli.main import main
from qvggt_deploy.lazy import is_available

ENGINES = Path(__file__).resolve().parents[2] / "engines"


def test_dry_run_prints_the_plan(capsys):
    assert main(["build-engine", "--profile", str(ENGINES / "orin-nano-8gb.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "max frames: full engine 6, split engines 10" in out
    assert "mode: split (split: true in the profile)" in out


def test_dry_run_split_override(capsys):
    assert main(["build-engine", "--profile", str(ENGINES / "orin-nx-16gb.yaml"), "--dry-run", "--split", "true"]) == 0
    assert "mode: split" in capsys.readouterr().out


@pytest.mark.skipif(is_available("tensorrt"), reason="tensorrt is installed")
def test_without_tensorrt_exit_1(tmp_path, capsys):
    code = main(["build-engine", "--onnx", str(tmp_path / "m.onnx"), "--profile",
                 str(ENGINES / "desktop-24gb.yaml"), "--out", str(tmp_path / "e.engine")])
    assert code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[ERROR]")]
    assert errors[0].startswith("[ERROR] tensorrt is not installed:")
    assert not (tmp_path / "e.engine").exists()


def test_bad_profile_exit_1(tmp_path, capsys):
    bad = tmp_path / "p.yaml"
    bad.write_text("name: x\nframes: {min: 2, opt: 1, max: 4}\n")
    assert main(["build-engine", "--profile", str(bad), "--dry-run"]) == 1
    assert "missing section 'device'" in capsys.readouterr().err


def test_an_onnx_runtime_graph_is_refused(capsys):
    from tests.micro_exports import get_export

    ort_graph = get_export("fp32")[0].path
    code = main(["build-engine", "--profile", str(ENGINES / "desktop-24gb.yaml"), "--onnx", str(ort_graph), "--dry-run"])
    assert code == 1
    assert "exported for ONNX Runtime (qvggt.target=ort)" in capsys.readouterr().err
