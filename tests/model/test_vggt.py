import pytest
import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.model import PRESETS, build_model, get_preset

from tests.conftest import micro_config


@pytest.fixture(scope="module")
def micro():
    return build_model(micro_config(enable_track=False), seed=0)


def test_output_keys_and_shapes(micro):
    x = torch.rand(3, 3, 56, 42)
    with torch.no_grad():
        out = micro(x)
        out5 = micro(x[None])
    assert out["pose_enc"].shape == (1, 3, 9)
    assert len(out["pose_enc_list"]) == micro.cfg.camera_iterations
    assert out["depth"].shape == (1, 3, 56, 42, 1)
    assert out["depth_conf"].shape == (1, 3, 56, 42)
    assert out["world_points"].shape == (1, 3, 56, 42, 3)
    assert out["world_points_conf"].shape == (1, 3, 56, 42)
    assert torch.equal(out["images"], x[None])
    assert torch.equal(out["depth"], out5["depth"])
    assert (out["depth"] > 0).all() and (out["depth_conf"] >= 1).all()
    assert (out["pose_enc"][..., 7:] >= 0).all()  # FoV through ReLU


def test_training_mode_has_no_images_key(micro):
    micro.train()
    try:
        out = micro(torch.rand(2, 3, 56, 56))
    finally:
        micro.eval()
    assert "images" not in out


def test_bad_inputs(micro):
    with pytest.raises(ValueError, match="multiple of the patch size"):
        micro(torch.rand(2, 3, 50, 56))
    with pytest.raises(ValueError, match=r"\[S, 3, H, W\]"):
        micro(torch.rand(2, 4, 56, 56))


def test_dpt_frame_chunking_is_exact(micro):
    x = torch.rand(1, 3, 3, 56, 56)
    with torch.no_grad():
        tokens, start = micro.aggregator(x)
        a = micro.depth_head(tokens, x, start, frames_chunk_size=2)
        b = micro.depth_head(tokens, x, start, frames_chunk_size=None)
    assert torch.allclose(a[0], b[0], atol=1e-6) and torch.allclose(a[1], b[1], atol=1e-5)


def test_autocast_keeps_residual_stream_and_heads_fp32(micro):
    x = torch.rand(2, 3, 56, 56)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        tokens, _ = micro.aggregator(x[None])
        out = micro(x)
    assert all(t.dtype == torch.float32 for t in tokens)
    assert out["depth"].dtype == torch.float32 and out["pose_enc"].dtype == torch.float32


def test_disabled_heads_have_no_keys():
    model = build_model(micro_config(enable_track=False, enable_point=False), seed=0)
    assert model.point_head is None
    assert not any(k.startswith("point_head") for k in model.state_dict())
    assert "world_points" not in model(torch.rand(2, 3, 56, 56))


def test_presets_and_determinism():
    assert {"vggt-1b", "tiny", "micro"} <= set(PRESETS)
    with pytest.raises(QvggtError, match="unknown preset"):
        get_preset("vggt-2b")
    a = build_model(micro_config(enable_track=False), seed=7).state_dict()
    b = build_model(micro_config(enable_track=False), seed=7).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_vggt1b_parameter_count_on_meta():
    model = build_model("vggt-1b", device="meta")
    assert sum(p.numel() for p in model.parameters()) == 1_256_537_516
    assert not list(model.buffers()) or all(not b.is_meta for b in model.buffers())
