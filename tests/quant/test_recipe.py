"""Recipe folder: round trip, and the loader's errors (wrong model, version, missing/corrupt tensors)."""
import json

import pytest
import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.model import build_model
from qvggt_deploy.quant.calibrate import calibrate
from qvggt_deploy.quant.recipe import RECIPE_JSON, WEIGHTS_FILE, apply_recipe, check_compatible, load_recipe
from tests.quant.conftest import fast_options


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    scenes = [torch.rand(1, 2, 3, 56, 56, generator=g) for _ in range(2)]
    model = build_model("micro", seed=0)
    recipe = calibrate(model, scenes, fast_options("qvggt", abits=8))
    path = tmp_path_factory.mktemp("recipe") / "r"
    recipe.save(path)
    return path, recipe, scenes


def copy_recipe(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_round_trip_and_apply(saved):
    path, recipe, scenes = saved
    loaded = load_recipe(path)
    assert loaded.digest == recipe.digest
    assert loaded.token_filter["layers"] and all(loaded.compensation(n) is not None for n in loaded.token_filter["layers"])
    assert all(s.act_scale for s in loaded.layers.values() if s.abits and s.act_granularity == "per_tensor")
    q, s, bits, group = loaded.quantized_weight("aggregator.frame_blocks.0.attn.qkv")
    assert bits == 4 and group == 32 and q.shape == (96, 32)
    model = apply_recipe(build_model("micro", seed=0), loaded)
    with torch.no_grad():
        out = model(scenes[0])
    assert torch.isfinite(out["depth"]).all()


def test_wrong_model_rejected(saved):
    path, _, _ = saved
    recipe = load_recipe(path)
    with pytest.raises(QvggtError, match="other weights"):
        check_compatible(recipe, build_model("micro", seed=1))
    with pytest.raises(QvggtError, match="preset"):
        apply_recipe(build_model("tiny", seed=0), recipe)


def test_wrong_version_rejected(saved, tmp_path):
    path = copy_recipe(saved[0], tmp_path / "r")
    doc = json.loads((path / RECIPE_JSON).read_text())
    doc["version"] = 999
    (path / RECIPE_JSON).write_text(json.dumps(doc))
    with pytest.raises(QvggtError, match="version 999"):
        load_recipe(path)


def test_corrupt_weights_rejected(saved, tmp_path):
    path = copy_recipe(saved[0], tmp_path / "r")
    data = bytearray((path / WEIGHTS_FILE).read_bytes())
    data[-5] ^= 0xFF
    (path / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(QvggtError, match="corrupt"):
        load_recipe(path)


@pytest.mark.parametrize("drop", ["qweight", "scales", "comp", "smooth"])
def test_missing_tensors_rejected(saved, tmp_path, drop):
    from safetensors.torch import load_file, save_file

    from qvggt_deploy.fileio import sha256_file

    path = copy_recipe(saved[0], tmp_path / "r")
    tensors = load_file(str(path / WEIGHTS_FILE))
    key = next(k for k in tensors if (k.endswith(drop) if drop in ("qweight", "scales") else k.startswith(drop)))
    del tensors[key]
    save_file(tensors, str(path / WEIGHTS_FILE))
    doc = json.loads((path / RECIPE_JSON).read_text())
    doc["weights_sha256"] = sha256_file(path / WEIGHTS_FILE)  # consistent digest: the check is the content
    (path / RECIPE_JSON).write_text(json.dumps(doc))
    with pytest.raises(QvggtError, match="missing"):
        load_recipe(path)


def test_mismatched_scales_rejected(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    from qvggt_deploy.fileio import sha256_file

    path = copy_recipe(saved[0], tmp_path / "r")
    tensors = load_file(str(path / WEIGHTS_FILE))
    key = next(k for k in tensors if k.endswith(".scales"))
    tensors[key] = tensors[key][:, :-1].contiguous() if tensors[key].shape[1] > 1 else tensors[key][:-1].contiguous()
    save_file(tensors, str(path / WEIGHTS_FILE))
    doc = json.loads((path / RECIPE_JSON).read_text())
    doc["weights_sha256"] = sha256_file(path / WEIGHTS_FILE)
    (path / RECIPE_JSON).write_text(json.dumps(doc))
    with pytest.raises(QvggtError, match="do not fit"):
        load_recipe(path)


def test_not_a_recipe(tmp_path):
    with pytest.raises(QvggtError, match="not a recipe"):
        load_recipe(tmp_path)
