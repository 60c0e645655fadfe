"""The two evaluation paths cannot drift apart: generated scenes exported into the ETH3D layout
and scored by ``qvggt eval --dataset eth3d`` give the numbers of the built-in ``qvggt eval
--scene-dir`` on the same scenes (same frames, same model, same metric functions)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from qvggt_deploy.cli.main import main
from tests.datasets.layouts import export_scene_eth3d
from tests.train.conftest import one_thread  # noqa: F401  (autouse: single-threaded)


def test_eth3d_export_of_generated_scenes_agrees_with_builtin_eval(tmp_path):
    scenes = tmp_path / "scenes"
    assert main(["scenes", "--out", str(scenes), "--num", "2", "--frames", "3", "--image-size", "56", "56"]) == 0
    root = tmp_path / "eth3d"
    names = [export_scene_eth3d(d, root) for d in sorted(p for p in scenes.iterdir() if p.is_dir())]
    common = ["--preset", "micro", "--max-points", "800"]
    assert main(["eval", *common, "--scene-dir", str(scenes), "--json", str(tmp_path / "builtin.json")]) == 0
    assert main(["eval", *common, "--dataset", "eth3d", "--root", str(root), "--out", str(tmp_path / "run")]) == 0
    builtin = {Path(r["scene"]).name: r for r in json.loads((tmp_path / "builtin.json").read_text())["per_scene"]}
    dataset = {r["key"].split("/", 1)[1]: r["metrics"]
               for r in json.loads((tmp_path / "run" / "results.json").read_text())["per_sequence"]}
    assert sorted(builtin) == sorted(dataset) == sorted(names)
    for name in names:
        keys = [k for k in builtin[name] if k in dataset[name]]
        assert {"auc@30", "rre_deg", "rte_deg", "abs_rel", "accuracy", "completeness", "chamfer",
                "depthcam_chamfer", "consistency"} <= set(keys)
        for key in keys:
            a, b = float(builtin[name][key]), float(dataset[name][key])
            assert math.isnan(a) == math.isnan(b), (name, key)
            if not math.isnan(a):
                assert b == pytest.approx(a, rel=1e-4, abs=1e-6), (name, key)
