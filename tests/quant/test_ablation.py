"""Ablation rows, acceptance checks and tables; `qvggt ablate` on micro."""
import json

from qvggt_deploy.cli.main import main
from qvggt_deploy.quant.ablation import ROWS, checks, format_markdown, row_options
from qvggt_deploy.quant.calibrate import CalibOptions
from qvggt_deploy.quant.task_search import TaskSearchOptions


def fake_result():
    def row(name, auc, rel, ch, table="main"):
        return {"name": name, "adds": name, "table": table, "linear_mb": 1.0, "avg_bits": 4.5, "model_mb": 2.0,
                "calib_seconds": 1.0, "metrics": {"auc@30": auc, "abs_rel": rel, "delta_1.25": 50.0,
                                                  "chamfer": ch, "consistency": 0.1}}
    return {"rows": [row("fp32", 80.0, 0.100, 0.200), row("rtn", 75.0, 0.110, 0.230),
                     row("qvggt", 79.5, 0.1025, 0.205)], "plan": None}


def test_checks_and_markdown():
    result = fake_result()
    result["checks"] = checks(result)
    assert all(result["checks"].values())
    result["rows"][2]["metrics"]["chamfer"] = 0.2200  # +10%: fails the 5% bound, still better than RTN
    c = checks(result)
    assert not c["chamfer within 5% (relative) of FP32"] and c["points better than RTN (chamfer)"]
    md = format_markdown(result, {"preset": "tiny", "group": 32})
    assert "| qvggt |" in md and "79.50 (-0.50)" in md and "(+10.0%)" in md


def test_row_options_apply_switches():
    base = CalibOptions.for_method("qvggt", group=32, search=TaskSearchOptions(grid=5))
    rows = {r.name: r for r in ROWS}
    assert row_options(rows["fp32"], base) is None
    o = row_options(rows["awq+mp+filter"], base)
    assert o.method == "awq" and o.token_filter and o.comp_directions == 0 and o.group == 32 and o.search.grid == 5
    assert row_options(rows["qvggt-top8"], base).search.top_m == 8
    assert row_options(rows["rtn-w8a8"], base).precision == "w8a8"


def test_cli_on_micro(tmp_path, monkeypatch):
    monkeypatch.setenv("QVGGT_NO_PROGRESS", "1")
    out = tmp_path / "abl"
    assert main(["ablate", "--preset", "micro", "--synthetic", "1", "--frames", "2", "--eval-scenes", "1",
                 "--eval-frames", "2", "--group", "32", "--rows", "fp32,rtn", "--out", str(out),
                 "--threads", "1"]) == 0
    result = json.loads((out / "ablation.json").read_text())
    assert [r["name"] for r in result["rows"]] == ["fp32", "rtn"]
    assert result["rows"][1]["avg_bits"] < result["rows"][0]["avg_bits"]
    assert "| rtn |" in (out / "ablation.md").read_text()


def test_cli_refuses_switches_it_sets_per_row(tmp_path, caplog):
    for extra in (["--method", "rtn"], ["--no-token-filter"], ["--abits", "8"], ["--wbits", "8"]):
        caplog.clear()
        assert main(["ablate", "--preset", "micro", *extra, "--out", str(tmp_path / "abl")]) == 1
        assert "qvggt ablate sets" in caplog.text and extra[0] in caplog.text
    assert not list(tmp_path.iterdir())
