import json

import torch

from qvggt_deploy.data.synthetic import SceneConfig, generate_scene
from qvggt_deploy.train import TrainConfig, train
from qvggt_deploy.train.tracks import ground_truth_tracks, query_tracks, track_loss


def _scene_batch(seed=3, frames=3, size=56):
    scene = generate_scene(seed, SceneConfig(frames=frames, image_size=(size, size)))
    keys = ("world_points", "mask", "depth", "extrinsics", "intrinsics")
    return {k: getattr(scene, k)[None] for k in keys}


def _tracks(batch, count=48, seed=0):
    gt = query_tracks(batch["world_points"], batch["mask"], batch["depth"], batch["extrinsics"],
                      batch["intrinsics"], count, torch.Generator().manual_seed(seed))
    return gt["query_points"], gt


def test_visible_tracks_land_on_the_same_world_point():
    batch = _scene_batch()
    query, gt = _tracks(batch)
    assert torch.equal(gt["tracks"][:, 0], query) and gt["visible"][:, 0].all()
    x, y = query[0, :, 0].long(), query[0, :, 1].long()
    origin = batch["world_points"][0, 0, y, x]
    seen = 0
    for s in range(1, 3):
        vis = gt["visible"][0, s]
        u, v = gt["tracks"][0, s, vis].round().long().unbind(-1)
        landed = batch["world_points"][0, s, v, u]
        # The nearest pixel's world point is within about a pixel footprint of the query's.
        err = (landed - origin[vis]).norm(dim=-1) / origin[vis].norm(dim=-1)
        assert err.median() < 0.02
        seen += int(vis.sum())
    assert seen > 24


def test_points_behind_an_occluder_or_outside_the_image_are_not_visible():
    H = W = 8
    K = torch.tensor([[8.0, 0, 4], [0, 8.0, 4], [0, 0, 1]]).expand(1, 2, 3, 3)
    E = torch.zeros(1, 2, 3, 4)
    E[..., :3, :3] = torch.eye(3)
    depth = torch.full((1, 2, H, W), 2.0)
    depth[0, 1, :, 4:] = 1.0  # frame 1: something nearer covers the right half
    mask = torch.ones(1, 2, H, W, dtype=torch.bool)
    v, u = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    pts = torch.stack([(u - 4) * 2.0 / 8, (v - 4) * 2.0 / 8, torch.full((H, W), 2.0)], -1).float()
    world = pts.expand(1, 2, H, W, 3).clone()
    query = torch.tensor([[[1.0, 1.0], [6.0, 1.0]]])
    gt = ground_truth_tracks(query, world, mask, depth, E, K)
    assert gt["visible"][0, 1].tolist() == [True, False]
    E[0, 1, 0, 3] = -2.0  # frame 1 moved 2 m to the right: both points leave the image
    depth[0, 1] = 2.0
    gt = ground_truth_tracks(query, world, mask, depth, E, K)
    assert gt["visible"][0, 1].tolist() == [False, False]


def test_track_loss_counts_only_visible_points_of_later_frames():
    gt = torch.rand(1, 3, 5, 2) * 50
    visible = torch.ones(1, 3, 5, dtype=torch.bool)
    visible[0, 2, 4] = False
    vis_pred = visible.float().clamp(0.01, 0.99)
    exact = track_loss([gt.clone()], vis_pred, gt, visible, image_size=56)
    pred = gt.clone()
    pred[0, 0] += 10  # frame 0 is the query itself
    pred[0, 2, 4] += 10  # not visible
    assert track_loss([pred], vis_pred, gt, visible, 56)["loss_track"] == exact["loss_track"]
    pred[0, 1, 0, 0] += 14
    worse = track_loss([pred], vis_pred, gt, visible, 56)
    assert worse["loss_track"] > exact["loss_track"] and worse["track_px"] > exact["track_px"]


def _train_straight_and_resumed(cfg, tmp_path):
    """Train ``cfg`` straight and in two parts; asserts both end bit-identical. Returns the straight
    model and its log records."""
    straight = train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b", stop_at=1)
    resumed = train(cfg, tmp_path / "b")
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name
    return straight, [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]


def test_training_with_tracks_resumes_bit_exact_and_trains_the_track_head(tmp_path):
    cfg = TrainConfig(preset="micro", steps=2, warmup=1, log_every=1, ckpt_every=1, snapshot_every=10,
                      weight_track=1.0, track_points=8)
    straight, log = _train_straight_and_resumed(cfg, tmp_path)
    assert all("track_px" in r and "track_vis_bce" in r for r in log)
    untrained = train(TrainConfig(**{**cfg.__dict__, "lr": 0.0, "steps": 1}), tmp_path / "c")
    assert not torch.equal(straight.track_head.tracker.vis_predictor[0].weight,
                           untrained.track_head.tracker.vis_predictor[0].weight)


def test_patch_matches_of_identical_views_are_the_same_patch():
    from qvggt_deploy.train.attention_match import patch_matches

    scene = generate_scene(5, SceneConfig(frames=2, image_size=(56, 56))).subset([0, 0])
    (pairs,) = patch_matches(scene, 14)
    assert len(pairs) > 0 and torch.equal(pairs[:, 0], pairs[:, 1])


def test_uniform_attention_scores_chance():
    from qvggt_deploy.model import build_model
    from qvggt_deploy.train.attention_match import attention_match_ratio

    model = build_model("micro", seed=0).eval()
    for block in model.aggregator.global_blocks:  # zero queries and keys: every logit is 0
        torch.nn.init.zeros_(block.attn.qkv.weight)
        torch.nn.init.zeros_(block.attn.qkv.bias)
    scenes = [generate_scene(s, SceneConfig(frames=3, image_size=(56, 56))) for s in (1, 2)]
    out = attention_match_ratio(model, scenes)
    assert abs(out["attn_match_best"] - 1.0) < 1e-4


def test_attention_match_loss_trains_resumably_and_is_logged(tmp_path):
    cfg = TrainConfig(preset="micro", steps=2, warmup=1, log_every=1, ckpt_every=1, snapshot_every=10,
                      weight_attn_match=1.0, attn_match_per_frame=8)
    _, log = _train_straight_and_resumed(cfg, tmp_path)
    assert all(r["loss_attn_match"] > 0 for r in log)


def test_attention_match_loss_is_low_when_head_zero_attends_to_the_match():
    from types import SimpleNamespace

    from qvggt_deploy.train.attention_match import attention_match_loss, patch_matches

    scene = generate_scene(5, SceneConfig(frames=2, image_size=(56, 56))).subset([0, 0])
    batch = {k: getattr(scene, k)[None] for k in ("depth", "mask", "world_points", "extrinsics", "intrinsics")}
    (pairs,) = patch_matches(SimpleNamespace(**{k: v[0] for k, v in batch.items()}), 14)
    # One-hot tokens per patch position, and a flag on frame 1 that cancels its keys: the query of
    # a frame-1 patch then meets its highest logit at the same patch of frame 0.
    from qvggt_deploy.model.layers.attention import Attention

    dim, start, n = 17, 1, 1 + 16
    attn = Attention(dim, num_heads=1)
    with torch.no_grad():
        attn.qkv.weight.zero_()
        attn.qkv.bias.zero_()
        attn.qkv.weight[:16, :16] = 30 * torch.eye(16)
        attn.qkv.weight[dim:dim + 16, :16] = torch.eye(16)
        attn.qkv.weight[dim:dim + 16, 16] = -1.0
    x = torch.zeros(1, 2 * n, dim)
    for frame in range(2):
        x[0, frame * n + start:(frame + 1) * n, :16] = torch.eye(16)
    x[0, n:, 16] = 1.0
    low = attention_match_loss([(attn, x, None)], batch, 14, start, 100, torch.Generator().manual_seed(0))
    flat = attention_match_loss([(Attention(dim, 1), x, None)], batch, 14, start, 100,
                                torch.Generator().manual_seed(0))
    assert len(pairs) > 0 and low < 0.7 < flat
