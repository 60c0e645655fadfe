"""`qvggt calibrate` end to end on micro: resume after an interrupt, mixed precision, eval --recipe."""
import json

import pytest

from qvggt_deploy.cli.main import main
from qvggt_deploy.quant.recipe import load_recipe

FAST = ["--preset", "micro", "--synthetic", "2", "--frames", "2", "--group", "32", "--grid", "3",
        "--clips", "1.0,0.9", "--top-m", "1", "--task-scenes", "1", "--max-rows", "512", "--threads", "1"]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("QVGGT_NO_PROGRESS", "1")


def test_resume_after_interrupt_gives_the_same_recipe(tmp_path, monkeypatch):
    import qvggt_deploy.quant.calibrate as cal

    assert main(["calibrate", *FAST, "--method", "qvggt", "--out", str(tmp_path / "ref")]) == 0
    real, calls = cal.calibrate_unit, []

    def interrupted(*args, **kwargs):
        calls.append(args[2].name)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(cal, "calibrate_unit", interrupted)
    out = tmp_path / "r"
    assert main(["calibrate", *FAST, "--method", "qvggt", "--out", str(out)]) == 130
    assert not out.exists() and len(list((tmp_path / "r.work").glob("*.safetensors"))) == 4
    monkeypatch.setattr(cal, "calibrate_unit", real)
    assert main(["calibrate", *FAST, "--method", "qvggt", "--out", str(out)]) == 0
    assert not (tmp_path / "r.work").exists()
    assert load_recipe(out).digest == load_recipe(tmp_path / "ref").digest
    assert main(["eval", "--preset", "micro", "--recipe", str(out), "--scenes", "1", "--frames", "2",
                 "--threads", "1", "--json", str(tmp_path / "m.json")]) == 0
    assert "auc@30" in json.loads((tmp_path / "m.json").read_text())["mean"]


def test_mixed_precision_budget(tmp_path):
    out = tmp_path / "mp"
    assert main(["calibrate", *FAST, "--method", "rtn", "--avg-bits", "8", "--out", str(out)]) == 0
    recipe = load_recipe(out)
    run = recipe.run  # timings beside the recipe, outside its digest
    assert run["calibration_seconds"] > 0 and run["phase_seconds"]["sensitivity"] > 0
    assert sum(run["phase_seconds"].values()) <= run["calibration_seconds"] + 0.1
    assert "calibration_seconds" not in json.dumps(recipe.extra)
    plan = recipe.extra["plan"]
    assert plan["bytes"] <= plan["budget_bytes"] and plan["avg_bits"] <= 8.0
    assert set(plan["units"].values()) <= {"fp16", "w8a16", "w4a16"}
    assert recipe.extra["weight_bytes"] == plan["bytes"]


def test_bad_options_exit_1(tmp_path):
    assert main(["calibrate", *FAST, "--method", "rtn", "--avg-bits", "0.5", "--out", str(tmp_path / "x")]) == 1
    assert main(["calibrate", *FAST, "--clips", "1.5", "--out", str(tmp_path / "y")]) == 1


def test_no_rtn_finalist_reaches_the_search_options():
    import argparse

    from qvggt_deploy.cli.calib_args import add_calib_data_args, add_method_args, options_from_args

    parser = argparse.ArgumentParser()
    add_method_args(parser)
    add_calib_data_args(parser)
    given = options_from_args(parser.parse_args(["--method", "qvggt", "--no-rtn-finalist"]))
    assert given.search.rtn_finalist is False and given.to_json()["search"]["rtn_finalist"] is False
    assert options_from_args(parser.parse_args(["--method", "qvggt"])).search.rtn_finalist is True
