"""The ablation's rows and settings, paired statistics, acceptance and report; `qvggt ablate` on micro."""
import json
import math

import pytest

from qvggt_deploy.cli.main import main
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.quant.ablation import FP32, ROWS, SETTINGS, expected_cost, row_options, select
from qvggt_deploy.quant.ablation_report import acceptance, analyse, format_markdown, paired, write_chart
from qvggt_deploy.quant.calibrate import CalibOptions
from qvggt_deploy.quant.task_search import TaskSearchOptions

N = 6


def planted_row(name, auc, abs_rel=0.3, chamfer=0.4, bits=4.2, fp16=None):
    """A row result with per-scene numbers ``auc[i]`` etc. (scalars: every scene alike)."""
    def per(v, i):
        return v[i] if isinstance(v, (list, tuple)) else v

    setting, _, key = name.rpartition("/")
    per_scene = [{"seed": 10 ** 9 + i, "auc@30": per(auc, i), "abs_rel": per(abs_rel, i),
                  "chamfer": per(chamfer, i)} for i in range(N)]
    mean = {k: sum(r[k] for r in per_scene) / N for k in ("auc@30", "abs_rel", "chamfer")}
    row = {"name": name, "setting": setting or None, "row": key, "adds": key, "avg_bits": bits,
           "options": None if name == FP32 else {"group": 128}, "metrics": mean, "per_scene": per_scene,
           "calib_seconds": 1.0, "eval_seconds": 2.0}
    if fp16 is not None:
        row["fp16_activations"] = {"metrics": mean, "per_scene": [{**r, "auc@30": r["auc@30"] + fp16}
                                                                  for r in per_scene]}
    return row


def planted_result(w4_bits=4.5, w3_gain=3.0, w3_noise=0.5, mp_bits=3.55):
    """FP32 at AUC 20 with scene spread; W4 QVGGT 0.5 below it; W3 QVGGT ``w3_gain`` above AWQ+mp."""
    base = [10.0, 30.0, 15.0, 25.0, 18.0, 22.0]
    noise = [w3_noise * x for x in (1, -1, 1, -1, 0.5, -0.5)]
    rows = [planted_row(FP32, base, bits=32.0),
            planted_row("w4g128/awq", [b - 1.0 for b in base], 0.303, 0.404, bits=4.13, fp16=-0.2),
            planted_row("w4g128/awq+mp", [b - 0.8 for b in base], 0.303, 0.404, bits=w4_bits),
            planted_row("w4g128/qvggt", [b - 0.5 for b in base], 0.303, 0.404, bits=w4_bits),
            planted_row("w3g128/awq", [b - 5.0 for b in base], 0.31, 0.41, bits=3.13),
            planted_row("w3g128/awq+mp", [b - 4.0 for b in base], 0.31, 0.41, bits=mp_bits),
            planted_row("w3g128/awq+mp+filter", [b - 4.0 + 0.5 for b in base], 0.31, 0.41, bits=mp_bits),
            planted_row("w3g128/awq+mp+comp", [b - 4.0 + 1.0 for b in base], 0.31, 0.41, bits=mp_bits),
            planted_row("w3g128/qvggt", [b - 4.0 + w3_gain + n for b, n in zip(base, noise)], 0.31, 0.41,
                        bits=3.55)]
    return {"rows": rows, "plans": {}}


def test_paired_mean_and_standard_error_on_planted_scenes():
    rows = [{"seed": s, "m": v} for s, v in zip(range(5), (1.0, 2.0, 3.0, 4.0, float("nan")))]
    refs = [{"seed": s, "m": 0.0} for s in reversed(range(5))]  # matched by seed, not by order
    st = paired(rows, refs, "m")
    assert st["n"] == 4 and st["mean"] == pytest.approx(2.5)
    # sd of (1, 2, 3, 4) = sqrt(5/3); SE = sd / sqrt(4)
    assert st["se"] == pytest.approx(math.sqrt(5 / 3) / 2)
    assert st["lo"] == pytest.approx(2.5 - 2 * st["se"]) and st["hi"] == pytest.approx(2.5 + 2 * st["se"])
    # a constant offset has no spread: the pairing removes the scene-to-scene variance
    flat = paired([{"seed": i, "m": 10.0 * i + 1.0} for i in range(4)], [{"seed": i, "m": 10.0 * i} for i in range(4)], "m")
    assert flat["mean"] == pytest.approx(1.0) and flat["se"] == pytest.approx(0.0)
    assert paired(rows[:1], refs, "m") is None


def test_equal_bits_references_and_flags():
    result = analyse(planted_result())
    rows = {r["name"]: r for r in result["rows"]}
    assert rows["w3g128/qvggt"]["paired"]["vs_awq"]["ref"] == "w3g128/awq+mp"  # mixed: AWQ + mixed
    assert rows["w3g128/awq+mp"]["paired"]["vs_awq"] is None  # the reference itself
    assert rows["w3g128/awq+mp"]["marginal"]["prev"] == "w3g128/awq"
    assert not rows["w3g128/awq+mp"]["marginal"]["equal_bits"]  # mixed precision spends bits: flagged
    assert rows["w3g128/qvggt"]["paired"]["vs_awq"]["equal_bits"]
    assert rows["w4g128/qvggt"]["paired"]["vs_fp32"]["metrics"]["auc@30"]["mean"] == pytest.approx(-0.5)
    unequal = analyse(planted_result(mp_bits=3.6))  # awq+mp at 3.6, qvggt at 3.55 bits
    q = next(r for r in unequal["rows"] if r["name"] == "w3g128/qvggt")
    assert not q["paired"]["vs_awq"]["equal_bits"]
    assert "(bits differ!)" in format_markdown(unequal, {})


def test_marginal_effect_is_row_minus_previous_row():
    rows = {r["name"]: r for r in analyse(planted_result(w3_noise=0.0))["rows"]}
    m = rows["w3g128/awq+mp+comp"]["marginal"]
    assert m["prev"] == "w3g128/awq+mp+filter" and m["equal_bits"]
    assert m["metrics"]["auc@30"]["mean"] == pytest.approx(0.5) and m["metrics"]["auc@30"]["se"] == pytest.approx(0)
    q = rows["w3g128/qvggt"]["marginal"]
    assert q["prev"] == "w3g128/awq+mp+comp" and q["metrics"]["auc@30"]["mean"] == pytest.approx(3.0 - 1.0)
    assert q["metrics"]["abs_rel"]["mean"] == pytest.approx(0.0)


def test_acceptance_on_planted_rows():
    ok = acceptance(analyse(planted_result()))
    assert [c["passed"] for c in ok] == [True, True]
    w4 = ok[0]["rows"][0]
    assert w4["d_auc@30"] == pytest.approx(-0.5) and w4["abs_rel_rel"] == pytest.approx(0.01)
    assert w4["chamfer_rel"] == pytest.approx(0.01)
    assert not acceptance(analyse(planted_result(w4_bits=4.7)))[0]["passed"]  # over 4.6 bits
    # gain 1.0 with per-scene noise 2.0: SE ~0.7, so not ahead by 2 SE
    noisy = acceptance(analyse(planted_result(w3_gain=1.0, w3_noise=2.0)))[1]
    assert noisy["passed"] is False and noisy["rows"][0]["d_auc@30"] == pytest.approx(1.0)
    assert noisy["rows"][0]["d_auc@30"] < 2 * noisy["rows"][0]["d_auc@30_se"]
    assert acceptance(analyse(planted_result(mp_bits=3.6)))[1]["passed"] is False  # ahead, but at unequal bits
    partial = {"rows": [r for r in planted_result()["rows"] if not r["name"].startswith("w3")]}
    assert acceptance(analyse(partial))[1]["passed"] is None


def test_json_schema_of_rows_and_settings(tmp_path):
    result = analyse(planted_result())
    result["acceptance"] = acceptance(result)
    result["settings"] = {"eval_scenes": N, "calib_scenes": 2}
    doc = json.loads(json.dumps(result))
    for r in doc["rows"]:
        assert {"name", "avg_bits", "metrics"} <= set(r)
        if r["name"] != FP32:
            assert set(r["paired"]) == {"vs_fp32", "vs_awq"}
            for k in ("auc@30", "abs_rel", "chamfer"):
                assert set(r["paired"]["vs_fp32"]["metrics"][k]) >= {"mean", "se", "n"}
    act = next(r for r in doc["rows"] if r["name"] == "w4g128/awq")["fp16_activations"]
    assert act["vs_fp32_activations"]["auc@30"]["mean"] == pytest.approx(-0.2)
    assert doc["settings"]["eval_scenes"] == N
    md = format_markdown(doc, doc["settings"])
    assert "| qvggt |" in md and "-0.50 +- 0.00" in md and "[x]" in md and "fp16 act" in md
    assert write_chart(doc, tmp_path / "a.png").endswith("a.png") and (tmp_path / "a.png").stat().st_size > 0


def test_select_rows_and_options():
    entries = select()
    assert entries[0].name == FP32 and len(entries) == 1 + len(SETTINGS) * len(ROWS)
    assert [e.name for e in select(["w3"], ["awq", "fp32"])] == [FP32, "w3g128/awq"]
    assert [e.name for e in select(["all"], ["w4a8g32/qvggt"], group=32)] == ["w4a8g32/qvggt"]
    with pytest.raises(QvggtError, match="no such setting"):
        select(["w5"])
    with pytest.raises(QvggtError, match="no such row"):
        select(rows=["awq+tf"])
    base = CalibOptions.for_method("qvggt", group=32, search=TaskSearchOptions(grid=5))
    by = {e.name: e for e in select(group=64)}
    assert row_options(by[FP32], base) is None
    o = row_options(by["w3g64/awq+mp+filter"], base)
    assert (o.method, o.precision, o.group, o.token_filter, o.comp_directions, o.search.grid) == \
        ("awq", "w3a16", 64, True, 0, 5)
    assert row_options(by["w4a8g64/qvggt-nomp"], base).precision == "w4a8"
    cost = expected_cost(select(), 256, 1.0, {"rtn": 1, "awq": 10, "qvggt": 100}, 50)
    assert cost["evaluations"] == 1 + 2 * 2 * len(ROWS) + len(ROWS)  # weight-only rows twice
    assert cost["calib_seconds"] == 3 * (1 + 4 * 10 + 2 * 100) and cost["sensitivity_seconds"] == 150


def test_cli_on_micro(tmp_path, monkeypatch):
    monkeypatch.setenv("QVGGT_NO_PROGRESS", "1")
    out = tmp_path / "abl"
    args = ["ablate", "--preset", "micro", "--synthetic", "1", "--frames", "2", "--eval-scenes", "2",
            "--eval-frames", "2", "--group", "32", "--settings", "w4", "--rows", "fp32,rtn,awq", "--grid", "3",
            "--out", str(out), "--threads", "1"]
    assert main(args) == 0
    result = json.loads((out / "ablation.json").read_text())
    assert [r["name"] for r in result["rows"]] == [FP32, "w4g32/rtn", "w4g32/awq"]
    rtn = result["rows"][1]
    assert rtn["avg_bits"] < 5 and rtn["paired"]["vs_awq"]["ref"] == "w4g32/awq"
    assert rtn["fp16_activations"]["vs_fp32_activations"]["auc@30"]["n"] == 2
    assert result["settings"]["eval_scenes"] == 2 and result["settings"]["cpu"]["cpus"]
    assert result["acceptance"][0]["passed"] is None  # no QVGGT row
    assert "| rtn |" in (out / "ablation.md").read_text()
    assert main(args) == 0  # cached rows: the same numbers
    again = json.loads((out / "ablation.json").read_text())
    assert again["rows"][1]["metrics"] == rtn["metrics"]


def test_cli_refuses_switches_it_sets_per_row(tmp_path, capsys):
    for extra in (["--method", "rtn"], ["--no-token-filter"], ["--abits", "8"], ["--wbits", "8"]):
        assert main(["ablate", "--preset", "micro", *extra, "--out", str(tmp_path / "abl")]) == 1
        err = capsys.readouterr().err
        assert "qvggt ablate sets" in err and extra[0] in err
    for extra, what in ((["--settings", "w5"], "no such setting"), (["--rows", "awq+tf"], "no such row")):
        assert main(["ablate", "--preset", "micro", *extra, "--out", str(tmp_path / "abl")]) == 1
        assert what in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
