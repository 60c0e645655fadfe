"""Track head: checkpoint layout, shapes, and the numerics that are easy to get wrong."""
from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from qvggt_deploy.model import build_model, get_preset
from qvggt_deploy.model.heads.dpt_head import sincos_1d
from qvggt_deploy.model.heads.track_modules.correlation import feature_pyramid, sample_correlation
from qvggt_deploy.model.heads.track_modules.embeddings import flow_embedding, point_position_embedding
from qvggt_deploy.model.heads.track_modules.sampling import bilinear_sample, sample_points
from qvggt_deploy.model.heads.track_modules.tracker import BaseTrackerPredictor

MANIFEST = "vggt1b_state_dict.json"


def _manifest_path():
    """``$QVGGT_SHARED/reference/...``, else the first ``shared/reference/...`` above this file
    (the checkout's sibling ``shared/``, wherever the worktree lives)."""
    env = os.environ.get("QVGGT_SHARED")
    roots = [Path(env)] if env else [p / "shared" for p in Path(__file__).resolve().parents]
    for root in roots:
        path = root / "reference" / MANIFEST
        if path.is_file():
            return path
    return None


def test_vggt1b_state_dict_matches_official_manifest():
    path = _manifest_path()
    if path is None:
        pytest.skip(f"{MANIFEST} not found (set QVGGT_SHARED to the folder holding reference/)")
    expected = json.loads(path.read_text())["tensors"]
    model = build_model("vggt-1b", device="meta")
    got = {name: [list(t.shape), str(t.dtype).replace("torch.", "")] for name, t in model.state_dict().items()}
    assert len(expected) == 1797
    assert list(got) == list(expected)  # same names, same order
    mismatched = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    assert not mismatched


@functools.lru_cache(maxsize=None)
def _track_only_model(preset):
    """The preset with only the track head (the other heads are tested elsewhere; skipping them
    keeps the tiny forward cheap)."""
    cfg = get_preset(preset).replace(enable_camera=False, enable_depth=False, enable_point=False)
    return cfg, build_model(cfg)


@pytest.mark.parametrize("preset,height,width", [("micro", 56, 42), ("tiny", 112, 140)])
@pytest.mark.parametrize("batched_queries", [False, True])
def test_track_outputs_shapes(preset, height, width, batched_queries):
    _, model = _track_only_model(preset)
    B, S, N = 2, 2, 5
    torch.manual_seed(0)
    images = torch.rand(B, S, 3, height, width)
    query = torch.rand(B, N, 2) * torch.tensor([width - 1.0, height - 1.0])
    with torch.no_grad():
        out = model(images, query if batched_queries else query[0])
    assert out["track"].shape == (B, S, N, 2)
    assert out["vis"].shape == (B, S, N) and out["conf"].shape == (B, S, N)
    assert ((out["vis"] > 0) & (out["vis"] < 1)).all() and ((out["conf"] > 0) & (out["conf"] < 1)).all()
    if not batched_queries:
        torch.testing.assert_close(out["track"][:, 0], query[0].expand(B, N, 2))


def test_track_head_returns_every_iteration_and_rejects_bad_queries():
    cfg = get_preset("micro")
    model = build_model(cfg)
    images = torch.rand(2, 2, 3, cfg.img_size, cfg.img_size)
    with torch.no_grad():
        tokens, start = model.aggregator(images)
        tracks, vis, conf = model.track_head(tokens, images, start, torch.rand(2, 3, 2) * 50)
    assert len(tracks) == cfg.tracker_iterations
    assert all(t.shape == (2, 2, 3, 2) for t in tracks)
    for bad in (torch.zeros(2, 3, 3), torch.zeros(3, 4, 2), torch.zeros(1, 2, 3, 2)):
        with pytest.raises(ValueError, match="query_points"):
            model.track_head(tokens, images, start, bad)


def test_bilinear_sample_pixel_centres_by_hand():
    # v[y, x] = 10 y + x is linear, so bilinear reads are exact: value at (x, y) = 10 y + x.
    v = (10 * torch.arange(3.0)[:, None] + torch.arange(4.0)[None]).reshape(1, 1, 3, 4)
    pts = torch.tensor([[[0.0, 0.0], [3.0, 2.0], [1.5, 0.5], [2.25, 1.0], [-2.0, 1.0], [7.0, 9.0]]])
    got = bilinear_sample(v, pts[:, None], "border")[0, 0, 0]
    torch.testing.assert_close(got, torch.tensor([0.0, 23.0, 6.5, 12.25, 10.0, 23.0]))
    # Zero padding: half a pixel left of column 0 mixes 50/50 with the zero outside.
    got = bilinear_sample(v, torch.tensor([[[[-0.5, 1.0], [4.0, 0.0]]]]), "zeros")[0, 0, 0]
    torch.testing.assert_close(got, torch.tensor([5.0, 0.0]))
    # A non-linear 2x2 case: [[0, 1], [2, 4]] at (0.25, 0.5) -> rows 0.25, 2.5 -> 1.375.
    m = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).reshape(1, 1, 2, 2)
    torch.testing.assert_close(sample_points(m, torch.tensor([[[0.25, 0.5]]])), torch.tensor([[[1.375]]]))


def test_correlation_pyramid_by_hand():
    # C = 4 equal channels v[y, x] = 4 y + x and an all-ones feature: corr = 4 v / sqrt(4) = 2 v.
    v = (4 * torch.arange(4.0)[:, None] + torch.arange(4.0)[None])
    fmaps = v.expand(4, 4, 4).reshape(1, 1, 4, 4, 4)
    pyramid = feature_pyramid(fmaps, levels=2)
    assert [tuple(p.shape[-2:]) for p in pyramid] == [(4, 4), (2, 2)]
    torch.testing.assert_close(pyramid[1][0, 0, 0], torch.tensor([[2.5, 4.5], [10.5, 12.5]]))
    corr = sample_correlation(pyramid, torch.ones(1, 1, 1, 4), torch.tensor([[[[1.0, 2.0]]]]), radius=1)
    assert corr.shape == (1, 1, 1, 18)
    # Level 0 at (x=1, y=2): entry i*3+j reads 2 v[y + j - 1, x + i - 1] (the slow index moves x).
    level0 = [8.0, 16.0, 24.0, 10.0, 18.0, 26.0, 12.0, 20.0, 28.0]
    # Level 1: corr [[5, 9], [21, 25]] read around (0.5, 1) with zero padding outside.
    level1 = [2.5, 10.5, 0.0, 7.0, 23.0, 0.0, 4.5, 12.5, 0.0]
    torch.testing.assert_close(corr[0, 0, 0], torch.tensor(level0 + level1))


def test_flow_embedding_by_hand():
    # channels 4: frequencies 0 and 2 * 1000 / 4 = 500, sin/cos interleaved, x block then y block.
    got = flow_embedding(torch.tensor([[1.0, 0.5]]), 4)[0]
    want = [0.0, 1.0, math.sin(500.0), math.cos(500.0), 0.0, 1.0, math.sin(250.0), math.cos(250.0)]
    torch.testing.assert_close(got, torch.tensor(want))


def test_point_position_embedding_by_hand():
    # dim 8: per axis [sin(p w0), sin(p w1), cos(p w0), cos(p w1)] with w = (1, 10000^-1/2 = 0.01).
    def axis(p):
        return [math.sin(p), math.sin(0.01 * p), math.cos(p), math.cos(0.01 * p)]

    got = point_position_embedding(torch.tensor([[1.0, 2.0], [0.5, 2.0], [-1.0, 9.0]]), 8, height=3, width=4)
    half = [(a + b) / 2 for a, b in zip(axis(0.0), axis(1.0))]
    want = [axis(1.0) + axis(2.0), half + axis(2.0), axis(0.0) + axis(2.0)]  # last: clamped to the border
    torch.testing.assert_close(got, torch.tensor(want))


def test_point_position_embedding_equals_sampled_table():
    # The official way: build the [D, H, W] table (x half, y half) and grid-sample it.
    dim, H, W = 28, 5, 7
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32),
                            indexing="ij")
    table = torch.cat([sincos_1d(dim // 2, xs.reshape(-1), 10000.0), sincos_1d(dim // 2, ys.reshape(-1), 10000.0)],
                      dim=-1).reshape(H, W, dim).permute(2, 0, 1)[None]
    torch.manual_seed(0)
    pts = torch.rand(1, 20, 2) * torch.tensor([W + 3.0, H + 3.0]) - 1.5
    grid = pts[:, :, None] * torch.tensor([2 / (W - 1), 2 / (H - 1)]) - 1
    want = F.grid_sample(table, grid, align_corners=True, padding_mode="border")[..., 0].transpose(1, 2)
    torch.testing.assert_close(point_position_embedding(pts, dim, H, W), want, atol=1e-6, rtol=1e-5)


def test_frame0_track_is_the_query_every_iteration():
    torch.manual_seed(0)
    tracker = BaseTrackerPredictor(latent_dim=8, hidden_size=16, depth=1, num_heads=2, corr_levels=2,
                                   corr_radius=1, num_virtual_tracks=4)
    torch.nn.init.normal_(tracker.updateformer.flow_head.weight, std=0.5)  # tracks must really move
    query = torch.rand(2, 6, 2) * 30
    with torch.no_grad():
        tracks, _, _ = tracker(query, torch.randn(2, 3, 8, 16, 16), iterations=3)
    for t in tracks:
        assert torch.equal(t[:, 0], query)
        assert (t[:, 1:] - query[:, None]).abs().max() > 1e-3


def test_official_init_and_rejected_shapes():
    tracker = build_model("micro").track_head.tracker
    assert tracker.updateformer.flow_head.weight.std() < 0.01
    assert not tracker.updateformer.time_blocks[0].attn.in_proj_bias.any()
    with pytest.raises(ValueError, match="fmaps"):
        tracker(torch.zeros(1, 2, 2), torch.zeros(1, 2, 5, 8, 8))
    with pytest.raises(ValueError, match="query_points"):
        tracker(torch.zeros(2, 2, 2), torch.zeros(1, 2, 8, 8, 8))
    with pytest.raises(ValueError, match="latent_dim"):
        BaseTrackerPredictor(latent_dim=6)


def test_gradients_flow_without_nan_micro():
    cfg = get_preset("micro")
    model = build_model(cfg)
    torch.manual_seed(0)
    images = torch.rand(1, 3, 3, cfg.img_size, cfg.img_size)
    out = model(images, torch.rand(4, 2) * (cfg.img_size - 1))
    assert all(torch.isfinite(out[k]).all() for k in ("track", "vis", "conf"))
    (out["track"].square().mean() + out["vis"].mean() + out["conf"].mean()).backward()
    params = dict(model.track_head.named_parameters())
    missing = [n for n, p in params.items() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in params.values())
    for name in ("tracker.query_ref_token", "tracker.updateformer.virual_tracks",
                 "tracker.corr_mlp.fc1.weight", "feature_extractor.scratch.output_conv1.weight"):
        assert params[name].grad.abs().sum() > 0, name
    assert model.aggregator.patch_embed.pos_embed.grad is not None
