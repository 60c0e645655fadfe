import json

from qvggt_deploy.cli.main import main
from tests.train.conftest import one_thread  # noqa: F401  (autouse: single-threaded)


def test_eval_micro_two_scenes_writes_json(tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["eval", "--preset", "micro", "--scenes", "2", "--frames", "2", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["num_scenes"] == 2 and len(res["per_scene"]) == 2
    for key in ("auc@30", "rra@15", "abs_rel", "delta_1.25", "chamfer", "depthcam_chamfer", "consistency"):
        assert key in res["mean"], key
    assert res["baselines"]["trivial"]["mean"]["auc@30"] == 0
    assert res["settings"]["seed"] == 0 and res["per_scene"][0]["seed"] == 10 ** 9
    assert "auc@30" in capsys.readouterr().out


def test_eval_saved_scenes_and_errors(tmp_path):
    scenes = tmp_path / "scenes"
    assert main(["scenes", "--out", str(scenes), "--num", "1", "--frames", "2", "--image-size", "28", "42"]) == 0
    out = tmp_path / "m.json"
    assert main(["eval", "--preset", "micro", "--scene-dir", str(scenes), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["num_scenes"] == 1
    assert main(["eval", "--preset", "micro", "--scene-dir", str(tmp_path / "nothing")]) == 1
    (tmp_path / "empty").mkdir()
    assert main(["eval", "--preset", "micro", "--scene-dir", str(tmp_path / "empty")]) == 1
