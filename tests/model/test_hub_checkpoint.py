"""``--checkpoint owner/name[@revision]`` through huggingface_hub's cache (a fake cache folder,
offline), the offline message, and the refusal of random weights."""
import sys

import numpy as np
import pytest
import torch

from qvggt_deploy.cli.main import main
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.model import build_model, save_checkpoint
from qvggt_deploy.model.checkpoint import load_model, parse_hub_id, resolve_checkpoint

pytest.importorskip("huggingface_hub", reason="the hub path needs huggingface_hub")
hub_constants = pytest.importorskip("huggingface_hub.constants")

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture()
def fake_hub(tmp_path, monkeypatch):
    """A Hugging Face cache holding owner/vggt-micro (main, and tag v1 at another commit), offline."""
    cache = tmp_path / "hf-cache"
    repo = cache / "models--owner--vggt-micro"
    for ref, commit, seed in (("main", COMMIT, 1), ("v1", OTHER, 2)):
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
        save_checkpoint(build_model("micro", seed=seed), repo / "snapshots" / commit / "model.pt")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    return repo


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("spec,commit,seed", [("owner/vggt-micro", COMMIT, 1), ("owner/vggt-micro@v1", OTHER, 2),
                                              (f"owner/vggt-micro@{OTHER}", OTHER, 2)])
def test_hub_id_loads_the_cached_model_pt(fake_hub, spec, commit, seed):
    path = resolve_checkpoint(spec)
    assert path == fake_hub / "snapshots" / commit / "model.pt"
    assert same_weights(load_model("micro", spec), build_model("micro", seed=seed))
    assert not same_weights(load_model("micro", spec), build_model("micro", seed=3 - seed))


def test_hub_checkpoint_is_strict(fake_hub):
    with pytest.raises(QvggtError, match="does not match the tiny model"):
        load_model("tiny", "owner/vggt-micro")


def test_offline_and_not_cached_says_how_to_download(fake_hub):
    with pytest.raises(QvggtError) as exc:
        resolve_checkpoint("facebook/VGGT-1B")
    msg = str(exc.value)
    assert "not in the Hugging Face cache" in msg and "hf download facebook/VGGT-1B model.pt" in msg
    assert "--checkpoint PATH" in msg and "\n" not in msg
    with pytest.raises(QvggtError, match="--revision v9"):
        resolve_checkpoint("owner/vggt-micro@v9")


def test_missing_huggingface_hub_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(QvggtError, match=r"pip install 'qvggt-deploy\[hub\]'"):
        resolve_checkpoint("facebook/VGGT-1B")


def test_files_are_never_taken_for_hub_ids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner").mkdir()
    (tmp_path / "owner" / "weights").write_bytes(b"")
    assert parse_hub_id("owner/weights") is None  # an existing path
    assert parse_hub_id("ckpt/model.pt") is None and parse_hub_id("a/b/c") is None
    assert parse_hub_id("/abs/name") is None and parse_hub_id("model") is None
    assert parse_hub_id("facebook/VGGT-1B") == ("facebook/VGGT-1B", None)
    assert parse_hub_id("facebook/VGGT-1B@main") == ("facebook/VGGT-1B", "main")
    with pytest.raises(QvggtError, match="checkpoint not found: ckpt/model.pt"):
        load_model("micro", "ckpt/model.pt")


def test_infer_with_a_hub_checkpoint(fake_hub, tmp_path):
    import json

    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((60, 80, 3), 128, np.uint8)).save(photos / "a.png")
    assert main(["infer", "--preset", "micro", "--checkpoint", "owner/vggt-micro", "--images", str(photos),
                 "--out", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "cameras.json").read_text())["checkpoint"] == "owner/vggt-micro"


def test_random_weights_are_refused_without_the_flag(tmp_path):
    with pytest.raises(QvggtError, match="preset 'vggt-1b' has no embedded weights: pass --checkpoint facebook/VGGT-1B"
                                         ".*--allow-random-weights"):
        load_model("vggt-1b")
    model = load_model("micro")  # the unit-test preset: random weights are its purpose
    assert not any(p.is_meta for p in model.parameters())
