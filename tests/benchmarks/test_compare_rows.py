"""benchmarks/compare_rows.py pairs two runs' rows scene by scene."""
import json

import pytest

from tests.benchmarks.scripts import load_benchmark

compare_rows = load_benchmark("compare_rows")


def _run(path, name, aucs, fp16=None):
    per_scene = [{"seed": 10 + i, "auc@30": a, "abs_rel": 0.2, "chamfer": 0.3} for i, a in enumerate(aucs)]
    row = {"name": name, "avg_bits": 4.5, "calib_seconds": 10.0, "per_scene": per_scene,
           "metrics": {"auc@30": sum(aucs) / len(aucs), "abs_rel": 0.2, "chamfer": 0.3}}
    if fp16 is not None:
        row["fp16_activations"] = {"metrics": {"auc@30": 1.0, "abs_rel": 0.2, "chamfer": 0.3},
                                   "per_scene": [{**r, "auc@30": r["auc@30"] + fp16} for r in per_scene]}
    path.write_text(json.dumps({"rows": [{"name": "fp32"}, row]}))
    return f"{path}:{name}"


def test_pairs_by_seed_and_reports_b_minus_a(tmp_path, capsys):
    a = _run(tmp_path / "a.json", "w4g128/qvggt", [10.0, 20.0, 30.0], fp16=0.0)
    b = _run(tmp_path / "b.json", "w4g128/qvggt", [11.0, 22.0, 33.0], fp16=-1.0)
    out = tmp_path / "cmp.json"
    assert compare_rows.main([a, b, "--json", str(out)]) == 0
    got = json.loads(out.read_text())["b_minus_a"]
    assert got["fp32"]["auc@30"]["mean"] == pytest.approx(2.0) and got["fp32"]["auc@30"]["n"] == 3
    assert got["fp32"]["auc@30"]["se"] == pytest.approx(1 / 3 ** 0.5)
    assert got["fp16"]["auc@30"]["mean"] == pytest.approx(1.0)  # (b - 1) - a
    assert "| fp32 | auc@30 | 20.0000 | 22.0000 | +2 +- 0.58 | 3 |" in capsys.readouterr().out


def test_means_are_over_the_scenes_both_scored(tmp_path):
    a = _run(tmp_path / "a.json", "r", [10.0, 20.0, 30.0, 40.0])
    b = _run(tmp_path / "b.json", "r", [11.0, 21.0])  # the first two seeds only
    got = compare_rows.compare(compare_rows.load_row(a), compare_rows.load_row(b))["b_minus_a"]["fp32"]["auc@30"]
    assert (got["a_mean"], got["b_mean"], got["mean"], got["n"]) == (15.0, 16.0, 1.0, 2)


def test_a_missing_row_is_one_error(tmp_path, capsys):
    a = _run(tmp_path / "a.json", "w4g128/qvggt", [1.0, 2.0])
    assert compare_rows.main([a, f"{tmp_path / 'a.json'}:w4g128/awq"]) == 2
    assert "has no row w4g128/awq" in capsys.readouterr().err


def test_an_eval_report_pairs_with_an_ablation_row(tmp_path):
    a = _run(tmp_path / "a.json", "w4a8g128/awq", [10.0, 20.0, 30.0])
    report = tmp_path / "filter_only.json"
    report.write_text(json.dumps({"mean": {"auc@30": 14.0, "abs_rel": 0.2, "chamfer": 0.3},
                                  "per_scene": [{"seed": 10, "auc@30": 9.0, "abs_rel": 0.2, "chamfer": 0.3},
                                                {"seed": 11, "auc@30": 19.0, "abs_rel": 0.2, "chamfer": 0.3}]}))
    got = compare_rows.compare(compare_rows.load_row(a), compare_rows.load_row(str(report)))
    assert got["b"]["row"] == "filter_only" and got["b_minus_a"]["fp32"]["auc@30"]["mean"] == -1.0
    assert "B: `" in compare_rows.markdown(got)
