"""benchmarks/calibration_seeds.py: B - A per calibration seed and over seeds."""
import json

import pytest

from tests.benchmarks.scripts import load_benchmark

calibration_seeds = load_benchmark("calibration_seeds")


def _eval(path, aucs):
    """A `qvggt eval --json` report with these per-scene AUCs (scene seeds 100, 101, ...)."""
    per_scene = [{"seed": 100 + i, "auc@30": v} for i, v in enumerate(aucs)]
    path.write_text(json.dumps({"mean": {"auc@30": sum(aucs) / len(aucs)}, "per_scene": per_scene}))
    return str(path)


def test_difference_over_seeds_and_the_spread_of_each_method(tmp_path, capsys):
    scenes = [10.0, 20.0, 30.0, 40.0]
    a = [_eval(tmp_path / f"a{s}.json", [v + off for v in scenes]) for s, off in enumerate((0.0, -2.0, 1.0))]
    # B: 1 below A at seed 0, 3 below at seed 1, equal at seed 2
    b_offsets = [(-1.0, -1.0, -1.0, -1.0), (-3.0, -3.0, -3.0, -3.0), (0.0, 0.0, 0.0, 0.0)]
    b = [_eval(tmp_path / f"b{s}.json", [v + off + d for v, d in zip(scenes, ds)])
         for s, (off, ds) in enumerate(zip((0.0, -2.0, 1.0), b_offsets))]
    out = tmp_path / "seeds.json"
    assert calibration_seeds.main(["--a", *a, "--b", *b, "--labels", "AWQ,QVGGT", "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert [s["b_minus_a"]["mean"] for s in got["per_seed"]] == pytest.approx([-1.0, -3.0, 0.0])
    over = got["b_minus_a_over_seeds"]
    assert over["mean"] == pytest.approx(-4 / 3) and over["n"] == 3
    assert over["se"] == pytest.approx((((1 / 3) ** 2 + (5 / 3) ** 2 + (4 / 3) ** 2) / 2 / 3) ** 0.5)
    assert got["spread"]["a"]["range"] == pytest.approx(3.0) and got["spread"]["b"]["range"] == pytest.approx(6.0)
    assert "| 1 | 23.00 | 20.00 | -3.00 +- 0.00 |" in capsys.readouterr().out


def test_unpaired_run_lists_are_an_error(tmp_path, capsys):
    a = _eval(tmp_path / "a.json", [1.0, 2.0])
    assert calibration_seeds.main(["--a", a, a, "--b", a]) == 2
    assert "same number of runs" in capsys.readouterr().err
