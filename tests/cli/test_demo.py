import pytest

from qvggt_deploy.cli.demo import Pipeline, run_cli
from qvggt_deploy.errors import QvggtError


def test_stages_fail_clearly_and_dependents_are_skipped():
    p = Pipeline()
    p.run("a", lambda s: None)

    def broken(stage):
        raise QvggtError("component X is missing")

    p.run("b", broken, needs=["a"])
    p.run("c", lambda s: None, needs=["b"])
    p.run("d", lambda s: 1 / 0)
    assert [(s.name, s.status) for s in p.stages.values()] == [("a", "ok"), ("b", "failed"), ("c", "skipped"), ("d", "failed")]
    assert p.stages["b"].detail == "component X is missing" and p.stages["c"].detail == "needs b"
    assert "ZeroDivisionError" in p.stages["d"].detail


def test_run_cli_raises_on_failure(tmp_path):
    with pytest.raises(QvggtError, match="ONNX file not found"):
        run_cli(["lint", str(tmp_path / "missing.onnx")])


@pytest.mark.slow(reason="the whole pipeline: calibrations, five exports, check and bench (30 s on 2 idle cores, minutes on a loaded machine)")
def test_quick_demo_end_to_end(tmp_path):
    from qvggt_deploy.cli.main import main

    assert main(["demo", "--out", str(tmp_path / "demo"), "--quick"]) == 0
    text = (tmp_path / "demo" / "README.md").read_text()
    assert "| check | ok |" in text and "| bench | ok |" in text


def test_stage_outputs_of_an_earlier_run_are_removed(tmp_path):
    from qvggt_deploy.cli.demo import _fresh

    (tmp_path / "check").mkdir()
    (tmp_path / "check" / "check.json").write_text('{"passed": true}')
    (tmp_path / "lint.json").write_text("{}")
    _fresh(tmp_path / "check")
    _fresh(tmp_path / "lint.json")
    _fresh(tmp_path / "never-made")
    assert not (tmp_path / "check").exists() and not (tmp_path / "lint.json").exists()
