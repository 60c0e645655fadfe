"""The training loop: AdamW, warmup + cosine LR, gradient clipping, atomic checkpoints, resume.

Why resume is bit-exact: the state file holds model, optimizer, step and torch RNG state, the
LR and the curriculum are pure functions of (step, steps), and every batch is a pure function of
(seed, step), so ``train(steps=N)`` equals ``train(steps=N, stop_at=k)`` followed by a resumed
``train(steps=N)``. Resuming with another ``steps`` is allowed (to extend a run) but reshapes
the LR schedule and curriculum from there on; a warning says so.

Output folder layout:
- ``state.pt``: resumable state (model + absolute-pose probe + optimizer + step + RNG), rewritten
  every ``ckpt_every``.
- ``model.safetensors``: the final weights for the full preset (loads strictly into
  ``build_model(preset)``; heads not trained here keep their seeded init, see :func:`full_state_dict`).
- ``snapshots/step_XXXXXXX.safetensors``: weights every ``snapshot_every`` steps (learning curves).
- ``log.jsonl``: one JSON object per logged step (losses, LR, seconds, frames, image size), and
  the held-out camera go/no-go records (``{"step", "go_no_go"}``) when ``probe_every`` is set.
- ``config.json``: the :class:`TrainConfig` of the run.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.fileio import atomic_path, write_json
from qvggt_deploy.log import get_logger, progress
from qvggt_deploy.model import build_model, get_preset, load_checkpoint, save_checkpoint
from qvggt_deploy.train.attention_match import GlobalAttentionInputs, attention_match_loss
from qvggt_deploy.train.data import get_curriculum, iterate_batches
from qvggt_deploy.train.losses import (normalize_ground_truth, relative_rotation_loss, translation_direction_loss,
                                       vggt_loss)
from qvggt_deploy.train.pose_probe import AbsolutePoseProbe, CameraTokenTap, absolute_pose_loss, camera_go_no_go
from qvggt_deploy.train.tracks import query_tracks, track_loss

logger = get_logger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (saved as ``config.json``).

    ``weight_track`` > 0 trains the track head on ground-truth tracks of ``track_points`` query
    pixels per sample (:mod:`qvggt_deploy.train.tracks`); at 0 the model is built without it
    and a checkpoint for the full preset gets its track head from a seeded random init.
    ``weight_attn_match`` > 0 pulls head 0 of every global block towards the true frame-0 patch
    for ``attn_match_per_frame`` matched patches per later frame
    (:func:`~qvggt_deploy.train.attention_match.attention_match_loss`).
    ``init_from`` starts from existing weights (a second stage: fresh optimizer and schedule);
    ``weight_*`` scale the three losses (VGGT: camera 5, depth 1, points 1); ``weight_abs_pose``
    > 0 adds the training-only absolute-pose probe (:mod:`qvggt_deploy.train.pose_probe`);
    ``weight_translation_direction`` and ``weight_relative_rotation`` > 0 add the pairwise camera
    terms (:func:`~qvggt_deploy.train.losses.translation_direction_loss`,
    :func:`~qvggt_deploy.train.losses.relative_rotation_loss`) on the last camera iteration.
    ``camera_rotation_loss`` ("huber", VGGT's, or "geodesic") and ``weight_camera_rotation`` say
    how the camera loss scores each frame's quaternion (:func:`~qvggt_deploy.train.losses.camera_loss`).
    ``probe_every`` > 0 logs the held-out camera go/no-go figures every that many steps.
    ``dense_frames`` > 0 runs the depth and point heads (three quarters of a step's time) on that
    many randomly chosen frames per step instead of all; the camera sees every frame.
    ``batch`` > 0 replaces the curriculum's scenes per step (a larger batch for the same schedule).
    """

    preset: str = "tiny"
    steps: int = 1000
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup: int = 200
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    curriculum: str = "default"
    batch: int = 0
    weight_track: float = 0.0
    track_points: int = 64
    weight_attn_match: float = 0.0
    attn_match_per_frame: int = 32
    weight_camera: float = 5.0
    weight_depth: float = 1.0
    weight_point: float = 1.0
    weight_abs_pose: float = 0.0
    weight_translation_direction: float = 0.0
    weight_relative_rotation: float = 0.0
    camera_rotation_loss: str = "huber"
    weight_camera_rotation: float = 1.0
    init_from: Optional[str] = None
    probe_every: int = 0
    dense_frames: int = 0
    log_every: int = 10
    ckpt_every: int = 200
    snapshot_every: int = 1000


def _load_init(model: torch.nn.Module, path: str, preset: str, probe: Optional[torch.nn.Module] = None) -> None:
    """Start from ``path``: weights of the trained heads, or of the full preset (its track head,
    not trained here, is then dropped), or another run's ``state.pt`` (its model and, when both
    runs have one, its absolute-pose probe). A track head that the source lacks keeps its seeded
    init. Errors name the file."""
    if Path(path).name == "state.pt":
        state = torch.load(path, map_location="cpu", weights_only=False)
        _load_except_track_head(model, state["model"], path)
        if probe is not None and "probe" in state:
            probe.load_state_dict(state["probe"])
        logger.info("initialised from %s (step %d of that run)", path, int(state["step"]))
        return
    try:
        load_checkpoint(path, model)
    except QvggtError:
        full = build_model(get_preset(preset))
        load_checkpoint(path, full)
        own = model.state_dict()
        model.load_state_dict({k: v for k, v in full.state_dict().items() if k in own})
    logger.info("initialised from %s", path)


def _load_except_track_head(model: torch.nn.Module, weights: Dict[str, torch.Tensor], path: str) -> None:
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.startswith("track_head.")]
    if missing or unexpected:
        raise QvggtError(f"{path}: weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")


def forward_for_training(model: torch.nn.Module, images: torch.Tensor, gt: Dict[str, torch.Tensor],
                         dense_frames: int, query_points: Optional[torch.Tensor] = None):
    """The model's forward for a training step, with the dense heads on ``dense_frames`` random
    frames (all when 0 or >= S). Returns predictions and the ground truth cut to the same frames
    for the dense keys (the camera and the track head keep all frames). Frames are drawn from
    torch's global RNG, which the resumable state holds."""
    S = images.shape[1]
    if dense_frames <= 0 or dense_frames >= S:
        return model(images, query_points=query_points), gt
    index = torch.randperm(S)[:dense_frames].sort().values.to(images.device)
    sub_gt = dict(gt)
    for key in ("depth", "mask", "world_points"):
        sub_gt[key] = gt[key][:, index]
    return model(images, query_points=query_points, dense_frames=index), sub_gt


def _track_targets(cfg: "TrainConfig", step: int, batch: Dict[str, torch.Tensor],
                   device: torch.device) -> Dict[str, torch.Tensor]:
    """Query pixels (a pure function of seed and step, so resume stays exact) and their tracks,
    found on the CPU batch and moved to ``device``."""
    generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    tracks = query_tracks(batch["world_points"], batch["mask"], batch["depth"], batch["extrinsics"],
                          batch["intrinsics"], cfg.track_points, generator)
    return {k: v.to(device) for k, v in tracks.items()}


def training_device(name: str) -> torch.device:
    """``name`` as a torch device, refused in one sentence when it is not there."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise QvggtError(f"unknown device {name!r}; use cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise QvggtError(f"device {name!r} asked for, but this torch sees no CUDA GPU")
    if device.type not in ("cpu", "cuda"):
        raise QvggtError(f"training runs on cpu or cuda, not {name!r}")
    return device


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warmup to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at the last step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def _param_groups(model: torch.nn.Module, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "token" in name or "pos_embed" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _save_state(path: Path, model, optimizer, step: int, cfg: TrainConfig, probe=None) -> None:
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "config": asdict(cfg), "torch_rng": torch.get_rng_state()}
    if probe is not None:
        state["probe"] = probe.state_dict()
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _read_log(path: Path, upto: int):
    if not path.exists():
        return []
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= upto:
                kept.append(line)
        except (ValueError, KeyError, TypeError):  # a line torn by a kill mid-write: resume without it
            continue
    return kept


def logged_seconds_per_step(log_path, timed_from: int) -> float:
    """Mean step time over the logged steps after ``timed_from`` (the first steps pay for start-up:
    worker processes, caches)."""
    timed = []
    for line in Path(log_path).read_text().splitlines():
        record = json.loads(line)
        if "elapsed_s" in record:
            timed.append((record["step"], record["elapsed_s"]))
    after = [(s, t) for s, t in timed if s >= timed_from]
    if len(after) < 2:
        raise QvggtError(f"{log_path}: fewer than two logged steps from step {timed_from} on; nothing to time")
    (s0, t0), (s1, t1) = after[0], after[-1]
    return (t1 - t0) / (s1 - s0)


def full_state_dict(model: torch.nn.Module, preset: str, seed: int) -> Dict[str, torch.Tensor]:
    """Trained weights completed to the full preset: parameters the trained model lacks (the
    track head when trained with ``enable_track=False``) come from ``build_model(preset, seed)``."""
    full = build_model(get_preset(preset), seed=seed)
    missing, unexpected = full.load_state_dict(model.state_dict(), strict=False)
    if unexpected:
        raise QvggtError(f"trained weights have keys the {preset} preset lacks: {unexpected[:5]}")
    if missing:
        logger.info("%d tensors not trained (seeded init kept): %s ...", len(missing), missing[0])
    return full.state_dict()


def train(cfg: TrainConfig, out_dir, resume: bool = True, stop_at: Optional[int] = None,
          on_log: Optional[Callable[[Dict[str, float]], None]] = None, device: str = "cpu",
          workers: int = 0, render_device: Optional[str] = None) -> torch.nn.Module:
    """Train (or resume) a model into ``out_dir``; returns the trained model (train mode off).

    Args:
        cfg: the run's configuration.
        out_dir: output folder (see module docstring).
        resume: continue from ``out_dir/state.pt`` when it exists. A state written with another
            config is refused (the error names the differing fields).
        stop_at: stop (with a resumable state) once this step is done, e.g. to split a run into
            time-boxed sessions; the final weights are written only when ``cfg.steps`` is reached.
        on_log: called with each logged record (for custom monitoring).
        device: where the model trains ("cpu", "cuda", "cuda:1"); scenes are rendered on the CPU
            unless ``render_device`` says otherwise.
            Resuming on another device is allowed (the numbers then differ in the last bits).
        workers: processes rendering the next batches while a step runs (0: in the loop). The
            batches are the same either way.
        render_device: render the scenes on this device in the loop instead ("cuda": no workers).
    """
    device = training_device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_cfg = get_preset(cfg.preset).replace(enable_track=cfg.weight_track > 0)
    torch.manual_seed(cfg.seed)
    model = build_model(model_cfg, seed=cfg.seed)
    probe = AbsolutePoseProbe(2 * model_cfg.embed_dim) if cfg.weight_abs_pose > 0 else None
    if cfg.init_from:
        _load_init(model, cfg.init_from, cfg.preset, probe)
    model.to(device)
    if probe is not None:
        probe.to(device)
    groups = _param_groups(model, cfg.weight_decay)
    if probe is not None:
        groups[1]["params"] = groups[1]["params"] + list(probe.parameters())
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))
    curriculum = get_curriculum(cfg.curriculum)
    state_path, log_path = out / "state.pt", out / "log.jsonl"
    start = 0
    if resume and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        saved = state["config"]
        defaults = asdict(TrainConfig())  # fields added later compare against their defaults
        diff = {k: (saved.get(k, defaults[k]), v) for k, v in asdict(cfg).items()
                if k not in ("steps", "log_every", "ckpt_every", "snapshot_every", "probe_every")
                and saved.get(k, defaults[k]) != v}
        if diff:
            raise QvggtError(f"{state_path}: written by a run with another config (saved, now): {diff}; "
                             f"use another --out or --no-resume")
        if saved.get("steps", cfg.steps) != cfg.steps:
            logger.warning("resuming a %d-step run as a %d-step run: the LR schedule and curriculum change from "
                           "here on (not bit-identical to either run)", saved["steps"], cfg.steps)
        model.load_state_dict(state["model"])
        if probe is not None:
            probe.load_state_dict(state["probe"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        start = int(state["step"])
        logger.info("resumed %s at step %d", state_path, start)
    kept = _read_log(log_path, start)
    with atomic_path(log_path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))
    write_json(out / "config.json", asdict(cfg))

    model.train()
    tap = CameraTokenTap(model) if probe is not None else None
    global_inputs = GlobalAttentionInputs(model.aggregator) if cfg.weight_attn_match > 0 else None
    t_start = time.perf_counter()
    end = cfg.steps if stop_at is None else min(cfg.steps, stop_at)
    batches = iterate_batches(cfg.seed, curriculum, cfg.steps, model_cfg.img_size, start, end, cfg.batch, workers,
                              pin_memory=device.type == "cuda", render_device=render_device)
    bar = progress(zip(range(start, end), batches), desc="train", total=end - start)
    with open(log_path, "a") as log_file:
        for step, batch in bar:
            on_device = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            # Correspondence targets are found on the CPU (no copy where the scenes were rendered).
            host = {k: v.cpu() for k, v in batch.items()} if cfg.weight_track > 0 or global_inputs is not None else None
            gt = normalize_ground_truth(on_device)
            lr = lr_at(cfg, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            tracks = _track_targets(cfg, step, host, device) if cfg.weight_track > 0 else None
            if global_inputs is not None:
                global_inputs.inputs.clear()
            pred, gt = forward_for_training(model, on_device["images"], gt, cfg.dense_frames,
                                            None if tracks is None else tracks["query_points"])
            losses = vggt_loss(pred, gt, cfg.weight_camera, cfg.weight_depth, cfg.weight_point,
                               cfg.camera_rotation_loss, cfg.weight_camera_rotation)
            if cfg.weight_translation_direction > 0:
                direction = translation_direction_loss(pred["pose_enc_list"][-1], gt["pose_enc"])
                losses["loss"] = losses["loss"] + cfg.weight_translation_direction * direction
                losses["loss_t_dir"] = direction.detach()
            if cfg.weight_relative_rotation > 0:
                rotation = relative_rotation_loss(pred["pose_enc_list"][-1], gt["pose_enc"])
                losses["loss"] = losses["loss"] + cfg.weight_relative_rotation * rotation
                losses["loss_rel_rot"] = rotation.detach()
            if tracks is not None:
                track = track_loss(pred["track_list"], pred["vis"], tracks["tracks"], tracks["visible"],
                                   batch["images"].shape[-1])
                losses["loss"] = losses["loss"] + cfg.weight_track * track.pop("loss_track")
                losses.update(track)
            if global_inputs is not None:
                generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step + 1)
                match = attention_match_loss(global_inputs.inputs, host, model_cfg.patch_size,
                                             model_cfg.patch_start_idx, cfg.attn_match_per_frame, generator)
                global_inputs.inputs.clear()
                losses["loss"] = losses["loss"] + cfg.weight_attn_match * match
                losses["loss_attn_match"] = match.detach()
            if probe is not None:
                abs_pose = absolute_pose_loss(probe(tap.tokens), on_device["scene_extrinsics"])
                losses["loss"] = losses["loss"] + cfg.weight_abs_pose * abs_pose["loss_abs_pose"]
                losses.update(loss_abs_pose=abs_pose["loss_abs_pose"].detach(), abs_rot_l1=abs_pose["abs_rot_l1"])
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            if not torch.isfinite(losses["loss"]):
                raise QvggtError(f"training diverged at step {step}: loss {losses['loss'].item()}")
            optimizer.step()
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                record = {"step": done, "lr": lr, "grad_norm": float(grad_norm),
                          **{k: round(float(v.detach()), 6) for k, v in losses.items()},
                          "frames": int(batch["images"].shape[1]), "batch": int(batch["images"].shape[0]),
                          "image_size": int(batch["images"].shape[-1]),
                          "elapsed_s": round(time.perf_counter() - t_start, 1)}
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{record['loss']:.3f}")
                if on_log:
                    on_log(record)
                logger.debug("step %d loss %.4f", done, record["loss"])
            if cfg.probe_every and (done % cfg.probe_every == 0 or done == end):
                record = {"step": done, "go_no_go": {k: round(v, 3) for k, v in camera_go_no_go(model).items()}}
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                logger.info("step %d held-out camera: %s", done, record["go_no_go"])
            if done % cfg.snapshot_every == 0:
                save_checkpoint(model, out / "snapshots" / f"step_{done:07d}.safetensors",
                                metadata={"step": done, "preset": cfg.preset})
            if done % cfg.ckpt_every == 0 or done == end:
                _save_state(state_path, model, optimizer, done, cfg, probe)
    if tap is not None:
        tap.remove()
    if global_inputs is not None:
        global_inputs.remove()
    model.eval()
    if end < cfg.steps:
        logger.info("stopped at step %d of %d; rerun to resume", end, cfg.steps)
        return model
    save_checkpoint(full_state_dict(model, cfg.preset, cfg.seed), out / "model.safetensors",
                    metadata={"preset": cfg.preset, "steps": cfg.steps, "seed": cfg.seed,
                              "weight_track": cfg.weight_track, "curriculum": cfg.curriculum})
    logger.info("trained %s for %d steps -> %s", cfg.preset, cfg.steps, out / "model.safetensors")
    return model
