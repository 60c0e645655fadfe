import pytest
import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.model import build_model, load_checkpoint, save_checkpoint

from tests.conftest import micro_config


def _model(seed=0, **changes):
    return build_model(micro_config(enable_track=False, **changes), seed=seed)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pth"])
def test_round_trip_strict_identical_outputs(tmp_path, suffix):
    src = _model(seed=1)
    path = save_checkpoint(src, tmp_path / f"m{suffix}")
    for device in ("meta", "cpu"):
        dst = build_model(src.cfg, seed=2, device=device)
        load_checkpoint(path, dst)
        x = torch.rand(2, 3, 56, 56)
        with torch.no_grad():
            a, b = src(x), dst(x)
        for key in ("pose_enc", "depth", "world_points", "world_points_conf"):
            assert torch.equal(a[key], b[key])


def test_meta_load_assigns_without_copy(tmp_path):
    src = _model()
    path = save_checkpoint(src, tmp_path / "m.pt")
    dst = build_model(src.cfg, device="meta")
    load_checkpoint(path, dst)
    assert not any(p.is_meta for p in dst.parameters())


def _assert_untouched(model, before):
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_missing_and_unexpected_keys_named_with_counts(tmp_path):
    src = _model()
    state = src.state_dict()
    del state["aggregator.camera_token"]
    state["extra.weight"] = torch.zeros(1)
    path = save_checkpoint(state, tmp_path / "bad.safetensors")
    dst = _model(seed=3)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(QvggtError, match=r"1 missing keys: aggregator.camera_token.*1 unexpected keys: extra.weight"):
        load_checkpoint(path, dst)
    _assert_untouched(dst, before)


def test_shape_and_dtype_mismatch(tmp_path):
    other = build_model(micro_config(enable_track=False, embed_dim=64), seed=0)
    path = save_checkpoint(other, tmp_path / "other.safetensors")
    dst = _model()
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(QvggtError, match="shape mismatch"):
        load_checkpoint(path, dst)
    _assert_untouched(dst, before)
    half = {k: v.half() for k, v in _model().state_dict().items()}
    with pytest.raises(QvggtError, match="dtype mismatch"):
        load_checkpoint(save_checkpoint(half, tmp_path / "half.pt"), dst)
    _assert_untouched(dst, before)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_truncated_file(tmp_path, suffix):
    path = save_checkpoint(_model(), tmp_path / f"m{suffix}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    dst = _model(seed=5)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(QvggtError, match="truncated|corrupt"):
        load_checkpoint(path, dst)
    _assert_untouched(dst, before)


def test_not_a_checkpoint(tmp_path):
    for name, data in (("img.pt", b"\xff\xd8\xff\xe0 JFIF not a zip"), ("notes.safetensors", b"hello world"),
                       ("empty.pth", b""), ("blob.bin", b"\x00" * 64)):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(QvggtError, match=str(path.name)):
            load_checkpoint(path, _model())
    torch.save({"model": {"w": [1, 2, 3]}}, tmp_path / "objects.pt")
    with pytest.raises(QvggtError, match="objects.pt"):
        load_checkpoint(tmp_path / "objects.pt", _model())
    with pytest.raises(QvggtError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors", _model())


def test_wrapped_state_dict_accepted(tmp_path):
    src = _model(seed=4)
    torch.save({"model": src.state_dict(), "step": 3}, tmp_path / "train.pt")
    dst = load_checkpoint(tmp_path / "train.pt", _model(seed=9))
    assert torch.equal(dst.aggregator.camera_token, src.aggregator.camera_token)


@pytest.mark.slow
def test_vggt1b_strict_round_trip_identical_outputs(tmp_path):
    """The full VGGT-1B state dict saved from build_model loads strictly into a fresh model
    (built on the meta device: one copy of the weights) with identical outputs. ~10 GB RAM."""
    src = build_model("vggt-1b", seed=0)
    path = save_checkpoint(src, tmp_path / "vggt1b.safetensors")
    dst = build_model("vggt-1b", device="meta")
    load_checkpoint(path, dst)
    x = torch.rand(2, 3, 28, 42)
    with torch.no_grad():
        a, b = src(x), dst(x)
    for key in ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf"):
        assert torch.equal(a[key], b[key]), key
