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


def test_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QVGGT_NO_PROGRESS", "1")
    argv = ["sensitivity", "--preset", "micro", "--synthetic", "1", "--frames", "2", "--group", "32", "--threads", "1"]
    out = tmp_path / "sens"
    assert main([*argv, "--out", str(out)]) == 0
    table = json.loads((out / "sensitivity.json").read_text())
    assert table["ranking"] and (out / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    assert main([*argv, "--out", str(out)]) == 0  # an earlier sensitivity folder is replaced
    assert json.loads((out / "sensitivity.json").read_text())["task"] == table["task"]
    # a folder of someone else's files is refused before any work
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    capsys.readouterr()
    assert main([*argv, "--out", str(mine)]) == 1
    assert "not a sensitivity folder" in capsys.readouterr().err and (mine / "notes.txt").read_text() == "keep"
    # the old spelling still works for one release, with a warning
    assert main([*argv, "--json", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["task"] == table["task"]
    assert "--json/--png is deprecated" in capsys.readouterr().err
