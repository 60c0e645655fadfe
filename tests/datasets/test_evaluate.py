"""``qvggt eval --dataset``: every benchmark end to end on fixture folders (micro model), the
CO3Dv2 per-category pooling, resuming, settings checks and ``--compare``."""
from __future__ import annotations

import json

import numpy as np
import pytest

from qvggt_deploy.cli.main import main
from tests.datasets.layouts import random_cameras, write_co3d, write_dtu, write_eth3d, write_re10k
from tests.datasets.test_readers import _pil, _scene
from tests.train.conftest import one_thread  # noqa: F401  (autouse: single-threaded)

MICRO = ["--preset", "micro", "--max-points", "500"]


@pytest.fixture(scope="module")
def co3d_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("co3d")
    rng = np.random.default_rng(0)
    for category, names in (("apple", ["a1", "a2"]), ("bench", ["b1"])):
        seqs = {}
        for name in names:
            E, K = random_cameras(50, rng, 28, 21)
            seqs[name] = {"E": E, "K": K, "size": (28, 21)}
        write_co3d(root, category, seqs)
    return root


def _run(tmp, root, dataset, *extra):
    out = tmp / f"run_{dataset}"
    assert main(["eval", "--dataset", dataset, "--root", str(root), "--out", str(out), "--num-frames", "4",
                 *MICRO, *extra]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_co3d_pools_pairs_per_category_and_resumes(tmp_path, co3d_root, capsys):
    out, res = _run(tmp_path, co3d_root, "co3d")
    assert set(res["per_category"]) == {"apple", "bench"} and res["num_sequences"] == 3
    # per-category AUC pools the 6 pairs of each sequence; the mean is over categories
    from qvggt_deploy.metrics.camera import auc

    rows = [json.loads(line) for line in (out / "rows" / "rank0.jsonl").read_text().splitlines()]
    apple = [r for r in rows if r["category"] == "apple"]
    assert all(len(r["rre"]) == 6 for r in rows)
    expected = 100 * auc([e for r in apple for e in r["rre"]], [e for r in apple for e in r["rte"]], 30)
    assert res["per_category"]["apple"]["auc@30"] == pytest.approx(expected)
    mean = (res["per_category"]["apple"]["auc@30"] + res["per_category"]["bench"]["auc@30"]) / 2
    assert res["mean"]["auc@30"] == pytest.approx(mean)
    table = (out / "results.md").read_text()
    assert "| apple | 2 |" in table and "**mean**" in table and "AUC@30" in capsys.readouterr().out
    # resume: a finished run is not recomputed; a lost row is
    lines = (out / "rows" / "rank0.jsonl").read_text().splitlines()
    (out / "rows" / "rank0.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:20])
    assert main(["eval", "--dataset", "co3d", "--root", str(co3d_root), "--out", str(out), "--num-frames", "4",
                 *MICRO]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["mean"] == res["mean"]
    assert len((out / "rows" / "rank0.jsonl").read_text().splitlines()) == 4  # 2 kept + cut line + 1 redone
    # other settings in the same folder are refused, naming the setting
    assert main(["eval", "--dataset", "co3d", "--root", str(co3d_root), "--out", str(out), "--num-frames", "5",
                 *MICRO]) == 1
    assert "num_frames" in capsys.readouterr().err


def test_dtu_and_eth3d_depth_benchmarks(tmp_path):
    scene = _scene(frames=3, size=(42, 56))
    E, K = scene.extrinsics.double().numpy(), scene.intrinsics.double().numpy()
    # same scene, same units in both layouts (a generated room is metres: every distance is below
    # DTU's 20 "mm" cut-off, so DTU and ETH3D must agree exactly)
    write_dtu(tmp_path / "dtu", 1, E, K, scene.depth.numpy(), _pil(scene))
    write_eth3d(tmp_path / "eth3d", "courtyard", E, K, scene.depth.numpy(), _pil(scene))
    _, dtu = _run(tmp_path, tmp_path / "dtu", "dtu")
    _, eth = _run(tmp_path, tmp_path / "eth3d", "eth3d")
    assert dtu["units"] == "mm" and dtu["metrics"] == ["depthcam_accuracy", "depthcam_completeness",
                                                        "depthcam_chamfer"]
    for key in ("accuracy", "completeness", "chamfer"):
        assert np.isfinite(dtu["mean"]["depthcam_" + key]) and np.isfinite(eth["mean"][key])
    for key in ("depthcam_accuracy", "depthcam_chamfer", "chamfer", "auc@30"):
        assert dtu["mean"][key] == pytest.approx(eth["mean"][key], rel=1e-6)


def test_re10k_and_errors(tmp_path, capsys):
    rng = np.random.default_rng(2)
    E, K = random_cameras(8, rng, 28, 21)
    write_re10k(tmp_path / "re", "s1", E, K, (28, 21))
    _, res = _run(tmp_path, tmp_path / "re", "re10k")
    assert res["num_sequences"] == 1 and 0 <= res["mean"]["auc@30"] <= 100
    assert main(["eval", "--dataset", "re10k", "--root", str(tmp_path / "re"), *MICRO]) == 1
    assert "--out" in capsys.readouterr().err
    assert main(["eval", "--dataset", "dtu", "--root", str(tmp_path / "re"), "--out", str(tmp_path / "x"),
                 *MICRO]) == 1
    assert "Cameras is missing" in capsys.readouterr().err
    assert main(["eval", "--dataset", "re10k", "--root", str(tmp_path / "re"), "--out", str(tmp_path / "y"),
                 "--backend", "ort", *MICRO]) == 1
    assert "--model" in capsys.readouterr().err
    assert main(["eval", *MICRO, "--out", str(tmp_path / "z"), "--scenes", "1"]) == 1
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_compare_runs_paired_table_and_chart(tmp_path, co3d_root, capsys):
    a, _ = _run(tmp_path, co3d_root, "co3d")
    b = tmp_path / "b"
    assert main(["eval", "--dataset", "co3d", "--root", str(co3d_root), "--out", str(b), "--num-frames", "4",
                 *MICRO, "--dtype", "bf16"]) == 0
    out = tmp_path / "cmp"
    assert main(["eval", "--compare", str(a), str(b), "--out", str(out)]) == 0
    comp = json.loads((out / "compare.json").read_text())
    assert [m["method"] for m in comp["methods"]] == ["FP32", "BF16"] and comp["sequences"] == 3
    ra = json.loads((a / "results.json").read_text())["per_sequence"]
    rb = json.loads((b / "results.json").read_text())["per_sequence"]
    d = np.array([y["metrics"]["rre_deg"] - x["metrics"]["rre_deg"] for x, y in zip(ra, rb)])
    assert np.abs(d).max() > 0  # bf16 autocast moves the (random-weight) cameras a little
    assert comp["methods"][1]["paired"]["rre_deg"]["diff"] == pytest.approx(d.mean())
    assert comp["methods"][1]["paired"]["rre_deg"]["se"] == pytest.approx(d.std(ddof=1) / np.sqrt(3))
    assert comp["methods"][0]["paired"]["rre_deg"]["diff"] == 0
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert "| BF16 |" in (out / "compare.md").read_text()
    c = tmp_path / "c"  # other frames: refused
    assert main(["eval", "--dataset", "co3d", "--root", str(co3d_root), "--out", str(c), "--num-frames", "4",
                 "--seed", "1", *MICRO]) == 0
    capsys.readouterr()
    assert main(["eval", "--compare", str(a), str(c)]) == 1
    assert "seed" in capsys.readouterr().err


@pytest.mark.slow  # the ONNX export alone takes ~10 s on 2 cores
def test_ort_backend_with_a_fixed_size_model(tmp_path):
    """An exported 56x56 model on 56x42 images: they are padded into its input (padding has no
    ground truth), and the run is labelled with the model file."""
    from tests.micro_exports import get_export

    result, _, _ = get_export("fp32")
    scene = _scene(frames=3, size=(42, 56))
    write_eth3d(tmp_path / "eth3d", "s", scene.extrinsics.double().numpy(), scene.intrinsics.double().numpy(),
                scene.depth.numpy(), _pil(scene))
    _, res = _run(tmp_path, tmp_path / "eth3d", "eth3d", "--backend", "ort", "--model", str(result.path))
    assert res["settings"]["method"] == result.path.name and res["settings"]["backend"] == "ort"
    assert all(np.isfinite(res["mean"][k]) for k in res["metrics"])


def test_method_label_names_the_recipe_method_and_bit_widths(tmp_path):
    from qvggt_deploy.datasets.run import method_label
    from tests.micro_exports import micro_model, w4a16_recipe

    recipe = w4a16_recipe(micro_model())
    recipe.save(tmp_path / "rtn")
    assert method_label(tmp_path / "rtn") == f"{recipe.method['name']} W4A16"
    assert method_label(None, "m.onnx") == "m.onnx" and method_label() == "FP32"
