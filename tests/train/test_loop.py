import json

import pytest
import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.model import build_model, load_checkpoint
from qvggt_deploy.train import TrainConfig, lr_at, train

CFG = TrainConfig(preset="micro", steps=2, warmup=1, log_every=1, ckpt_every=1, snapshot_every=1)


def test_lr_schedule():
    cfg = TrainConfig(steps=100, warmup=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(cfg, 0) == pytest.approx(0.1) and lr_at(cfg, 9) == pytest.approx(1.0)
    assert lr_at(cfg, 10) == pytest.approx(1.0) and lr_at(cfg, 100) == pytest.approx(0.1)


def test_two_steps_then_resume_is_bit_exact(tmp_path):
    straight = train(CFG, tmp_path / "a")
    train(CFG, tmp_path / "b", stop_at=1)
    assert not (tmp_path / "b" / "model.safetensors").exists()
    resumed = train(CFG, tmp_path / "b")
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all("loss_camera" in r for r in log)
    assert (tmp_path / "a" / "snapshots" / "step_0000002.safetensors").exists()
    # The final checkpoint loads strictly into the full preset (track head from its seeded init).
    full = build_model("micro")
    load_checkpoint(tmp_path / "a" / "model.safetensors", full)
    assert torch.equal(full.aggregator.camera_token, straight.aggregator.camera_token)


def test_resume_with_another_config_is_refused(tmp_path):
    train(CFG, tmp_path, stop_at=1)
    with pytest.raises(QvggtError, match="lr"):
        train(CFG.__class__(**{**CFG.__dict__, "lr": 1e-3}), tmp_path)


def test_second_stage_from_weights_with_other_loss_weights(tmp_path):
    first = train(CFG, tmp_path / "a")
    cfg = TrainConfig(**{**CFG.__dict__, "steps": 1, "init_from": str(tmp_path / "a" / "model.safetensors"),
                         "weight_camera": 20.0, "lr": 0.0})
    second = train(cfg, tmp_path / "b")  # lr 0: weights unchanged, so the init must be exact
    for (name, p), q in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(p, q), name


def test_probe_and_dense_frames_resume_bit_exact_and_checkpoint_holds_vggt_only(tmp_path):
    cfg = TrainConfig(preset="micro", steps=2, warmup=1, log_every=1, ckpt_every=1, snapshot_every=10,
                      weight_abs_pose=1.0, dense_frames=1)
    straight = train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b", stop_at=1)
    state = torch.load(tmp_path / "b" / "state.pt", weights_only=False)
    assert set(state["probe"]) == {"norm.weight", "norm.bias", "proj.weight", "proj.bias"}
    resumed = train(cfg, tmp_path / "b")
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert all(r["loss_abs_pose"] > 0 for r in log)
    full = build_model("micro")
    load_checkpoint(tmp_path / "a" / "model.safetensors", full)  # strict: no probe keys leak in


def test_dense_heads_on_a_frame_subset_match_the_full_forward():
    from qvggt_deploy.train.loop import forward_for_training

    model = build_model("micro").train()
    images = torch.rand(2, 3, 3, 56, 56)
    gt = {"depth": torch.rand(2, 3, 56, 56), "mask": torch.ones(2, 3, 56, 56, dtype=torch.bool),
          "world_points": torch.rand(2, 3, 56, 56, 3), "pose_enc": torch.rand(2, 3, 9)}
    full = model(images)
    torch.manual_seed(0)
    pred, sub_gt = forward_for_training(model, images, gt, dense_frames=1)
    torch.manual_seed(0)
    index = torch.randperm(3)[:1].sort().values
    assert pred["depth"].shape[1] == 1 and pred["pose_enc"].shape[1] == 3
    assert torch.allclose(pred["depth"], full["depth"][:, index], atol=1e-5)
    assert torch.allclose(pred["world_points"], full["world_points"][:, index], atol=1e-5)
    assert torch.equal(sub_gt["depth"], gt["depth"][:, index]) and torch.equal(sub_gt["pose_enc"], gt["pose_enc"])
    same, same_gt = forward_for_training(model, images, gt, dense_frames=0)
    assert same_gt is gt and same["depth"].shape[1] == 3


def test_second_stage_starts_from_a_state_with_its_probe(tmp_path):
    from qvggt_deploy.model import get_preset
    from qvggt_deploy.train.loop import _load_init
    from qvggt_deploy.train.pose_probe import AbsolutePoseProbe

    cfg = TrainConfig(preset="micro", steps=1, warmup=1, log_every=1, ckpt_every=1, snapshot_every=10,
                      weight_abs_pose=1.0)
    first = train(cfg, tmp_path / "a")
    state = torch.load(tmp_path / "a" / "state.pt", weights_only=False)
    model = build_model(get_preset("micro").replace(enable_track=False), seed=5)
    probe = AbsolutePoseProbe(2 * model.cfg.embed_dim)
    _load_init(model, str(tmp_path / "a" / "state.pt"), "micro", probe)
    for (name, p), q in zip(first.state_dict().items(), model.state_dict().values()):
        assert torch.equal(p, q), name
    assert torch.equal(probe.proj.weight, state["probe"]["proj.weight"])


def test_pair_camera_terms_are_logged_and_change_the_update(tmp_path):
    weighted = TrainConfig(**{**CFG.__dict__, "weight_translation_direction": 5.0, "weight_relative_rotation": 50.0})
    with_terms = train(weighted, tmp_path / "a")
    without = train(CFG, tmp_path / "b")
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert all(r["loss_t_dir"] > 0 and r["loss_rel_rot"] > 0 for r in log)
    head = "camera_head."
    assert any(not torch.equal(p, q) for (name, p), q in zip(with_terms.state_dict().items(), without.state_dict().values())
               if name.startswith(head))


def test_geodesic_camera_rotation_changes_the_update(tmp_path):
    geodesic = TrainConfig(**{**CFG.__dict__, "camera_rotation_loss": "geodesic", "weight_camera_rotation": 100.0})
    with_geodesic = train(geodesic, tmp_path / "a")
    huber = train(CFG, tmp_path / "b")
    assert json.loads((tmp_path / "a" / "config.json").read_text())["camera_rotation_loss"] == "geodesic"
    assert any(not torch.equal(p, q) for (name, p), q in zip(with_geodesic.state_dict().items(), huber.state_dict().values())
               if name.startswith("camera_head."))


def test_batch_option_replaces_the_curriculum_batch(tmp_path):
    cfg = TrainConfig(**{**CFG.__dict__, "steps": 1, "batch": 3})
    train(cfg, tmp_path)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["batch"] for r in log] == [3]


def test_rendering_workers_leave_the_run_bit_identical(tmp_path):
    inline = train(CFG, tmp_path / "a")
    ahead = train(CFG, tmp_path / "b", workers=1)
    for (name, p), q in zip(inline.state_dict().items(), ahead.state_dict().values()):
        assert torch.equal(p, q), name


@pytest.mark.parametrize("device, message", [("tpu", "unknown device|cpu or cuda"), ("meta", "cpu or cuda")])
def test_a_device_training_cannot_use_is_refused_in_one_sentence(tmp_path, device, message):
    with pytest.raises(QvggtError, match=message):
        train(CFG, tmp_path, device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_refused(tmp_path):
    with pytest.raises(QvggtError, match="no CUDA GPU"):
        train(CFG, tmp_path, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_train.py runs it there)")
def test_cuda_training_follows_the_cpu_run(tmp_path):
    cfg = TrainConfig(**{**CFG.__dict__, "weight_abs_pose": 1.0, "dense_frames": 1, "probe_every": 2})
    on_cpu = train(cfg, tmp_path / "cpu")
    on_gpu = train(cfg, tmp_path / "gpu", device="cuda")
    assert all(p.device.type == "cuda" for p in on_gpu.parameters())
    # The first step's loss is the same model on the same batch; Adam moves every weight by about
    # the LR whatever its gradient, so the losses say more than the weights do.
    logs = {}
    for name in ("cpu", "gpu"):
        records = map(json.loads, (tmp_path / name / "log.jsonl").read_text().splitlines())
        logs[name] = [r for r in records if "loss" in r]
    for a, b in zip(logs["cpu"], logs["gpu"]):
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-3), a["step"]
    for (name, p), q in zip(on_cpu.state_dict().items(), on_gpu.state_dict().values()):
        torch.testing.assert_close(q.cpu(), p, rtol=0, atol=4 * cfg.lr, msg=name)
    gpu_log = (tmp_path / "gpu" / "log.jsonl").read_text()
    assert "go_no_go" in gpu_log


def test_step_time_is_read_from_the_log_after_the_warm_steps(tmp_path):
    from qvggt_deploy.train.loop import logged_seconds_per_step

    log = tmp_path / "log.jsonl"
    rows = [{"step": s, "elapsed_s": 30.0 + 0.5 * s if s > 10 else 3.0 * s} for s in (10, 20, 30, 40)]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows + [{"step": 40, "go_no_go": {}}]))
    assert logged_seconds_per_step(log, 20) == pytest.approx(0.5)
    with pytest.raises(QvggtError, match="fewer than two"):
        logged_seconds_per_step(log, 40)
