"""``qvggt check --images`` on photos without ground truth: exit 0 for exact pairs, 1 for a
planted wrong model and for a failed metric gate; the report shows depth and error maps."""
import json
import shutil
from pathlib import Path

import pytest

from qvggt_deploy.cli.main import main
from qvggt_deploy.model import build_model, save_checkpoint

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "images"
PICKS = ["kitchen/images/00.png", "room/images/no_overlap_1.png"]  # 779x520 and 512x384


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    if not all((SHARED / p).is_file() for p in PICKS):
        pytest.skip(f"the shared photos are not at {SHARED}")
    folder = tmp_path_factory.mktemp("photos")
    for pick in PICKS:
        shutil.copy(SHARED / pick, folder / Path(pick).name)
    return folder


def check(tmp_path, photos, *extra):
    out = tmp_path / "report"
    return main(["check", "--preset", "micro", "--images", str(photos), "--out", str(out), *extra]), out


def test_exact_pairs_pass_and_the_report_shows_the_depth_maps(exports, tmp_path, photos):
    fp32, _, _ = exports("fp32")
    w4, _, recipe = exports("w4a16")
    int8, _, _ = exports("w4a16-int8-ext")
    recipe.save(tmp_path / "recipe")
    code, out = check(tmp_path, photos, "--recipe", str(tmp_path / "recipe"), "--onnx", f"fp32={fp32.path}",
                      "--onnx", f"w4a16={w4.path}", "--onnx", f"int8={int8.path}", "--gate", "abs_rel=10",
                      "--gate", "rre_deg=180")
    assert code == 0
    doc = json.loads((out / "check.json").read_text())
    assert doc["passed"] and doc["gated"] and doc["samples"] == 1 and doc["images"] == ["00.png", "no_overlap_1.png"]
    assert doc["metrics_vs_ground_truth"] == {}
    by_pair = {(c["candidate"], c["reference"]): c for c in doc["comparisons"]}
    exact = by_pair[("ort-fp32", "torch-fp32")]
    assert exact["kind"] == "exact" and exact["passed"] is True
    assert exact["metrics_vs_reference"]["abs_rel"] < 1e-4 and exact["metrics_vs_reference"]["rre_deg"] < 0.01
    gated = by_pair[("ort-int8", "torch-recipe")]
    assert [g["metric"] for g in gated["gates"]] == ["abs_rel", "rre_deg"] and gated["passed"] is True
    md = (out / "check.md").read_text()
    assert "PASSED" in md and "## Depth maps and per-pixel error" in md
    assert len(doc["figures"]) == len(doc["comparisons"])
    for fig in doc["figures"]:
        assert (out / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({fig})" in md


def test_a_planted_wrong_model_fails(exports, tmp_path, photos):
    fp32, _, _ = exports("fp32")
    save_checkpoint(build_model("micro", seed=1), tmp_path / "other.pt")  # not the exported weights
    code, out = check(tmp_path, photos, "--checkpoint", str(tmp_path / "other.pt"), "--onnx", f"fp32={fp32.path}")
    assert code == 1
    doc = json.loads((out / "check.json").read_text())
    assert doc["passed"] is False and doc["comparisons"][0]["passed"] is False
    assert "FAILED" in (out / "check.md").read_text()


def test_a_failed_metric_gate_fails(exports, tmp_path, photos):
    int8, _, recipe = exports("w4a16-int8-ext")
    recipe.save(tmp_path / "recipe")
    code, out = check(tmp_path, photos, "--recipe", str(tmp_path / "recipe"), "--onnx", f"int8={int8.path}",
                      "--gate", "abs_rel=0", "--max-frames", "1")
    assert code == 1
    gate = json.loads((out / "check.json").read_text())["comparisons"][0]["gates"][0]
    assert gate["metric"] == "abs_rel" and gate["value"] > 0 and gate["passed"] is False


def test_bad_gate_is_a_one_line_error(exports, tmp_path, photos, caplog):
    fp32, _, _ = exports("fp32")
    code, _ = check(tmp_path, photos, "--onnx", str(fp32.path), "--gate", "auc=3")
    assert code != 0 and "Traceback" not in caplog.text
