"""Per-unit sensitivity: every unit measured, ranking, JSON + PNG; `qvggt sensitivity`."""
import json

from qvggt_deploy.cli.main import main
from qvggt_deploy.quant.sensitivity import measure_sensitivity, save_sensitivity
from qvggt_deploy.quant.targets import quant_units


def test_measure_and_save(micro, scenes, tmp_path):
    result = measure_sensitivity(micro, scenes, ("fp16", "w8a16", "w4a16", "w4a8"), group=32)
    names = [u.name for u in quant_units(micro)]
    assert result["units"] == names and sorted(result["ranking"]) == sorted(names)
    assert abs(result["baseline"]) < 1e-9
    for u in names:
        assert set(result["task"][u]) == {"fp16", "w8a16", "w4a16", "w4a8"}
        assert "camera" in result["heads"][u]["w4a16"]
    # 4-bit hurts more than 8-bit summed over the model
    assert sum(result["task"][u]["w4a16"] for u in names) > sum(result["task"][u]["w8a16"] for u in names)
    save_sensitivity(result, tmp_path / "s.json", tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("QVGGT_NO_PROGRESS", "1")
    assert main(["sensitivity", "--preset", "micro", "--synthetic", "1", "--frames", "2", "--group", "32",
                 "--json", str(tmp_path / "s.json"), "--threads", "1"]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["ranking"]
