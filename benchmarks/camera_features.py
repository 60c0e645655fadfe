"""What a tiny model's camera tokens know, with the aggregator frozen (default: the embedded model).

Three steps, each resumable or cheap once the first has run:

- ``cache``: render scenes and store the aggregator's last-layer camera tokens ``[S, 2C]`` with
  the ground truth (normalised pose encoding, camera-from-room extrinsics), in shards of 25 scenes.
  Training scenes use the training seed function (run seed 77) and 5-20 degree rotations as the
  ``geometry-native`` curriculum; held-out scenes use seeds ``10^9 + 300000 + i`` (never used in
  training or in ``qvggt eval``) and the default 3-15 degrees.
- ``probe``: ridge regression from a frame's token to its room rotation and camera centre;
  composing two frames' rotations gives a relative rotation. If this beats the camera head, the
  features hold the rotation and the head does not compose it; the centre error against the
  distance between cameras says whether translation directions can be composed at all.
- ``refit``: train the camera head alone on the cached tokens (the rest of the model frozen) and
  report held-out pair errors: can a better head alone fix the camera? ``--direction-weight`` and
  ``--rotation-weight`` add the pairwise camera terms of ``qvggt train``; ``--save`` writes the
  model with the refitted head (a starting point for ``qvggt train --init-from``).
  ``--trunk-depth N`` refits a deeper trunk (the trained blocks first, new ones at their
  LayerScale initialisation, so the start is the trained head): is the head too small to compose?

    python benchmarks/camera_features.py cache --dir runs/camfeat --train 1300 --heldout 64
    python benchmarks/camera_features.py probe --dir runs/camfeat --json docs/training/camera_features.json
    python benchmarks/camera_features.py refit --dir runs/camfeat --json docs/training/camera_features.json
    python benchmarks/camera_features.py refit --dir runs/camfeat --direction-weight 1 \
        --save runs/refit_d1.safetensors --json docs/training/camera_features.json --key refit_direction
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from qvggt_deploy.data.synthetic import SceneConfig, generate_scene
from qvggt_deploy.geometry import pose_encoding_to_extri_intri
from qvggt_deploy.metrics.camera import auc, pair_indices, relative_pose_errors, rotation_angle_error
from qvggt_deploy.model.checkpoint import load_model, save_checkpoint
from qvggt_deploy.model.heads.camera_head import CameraHead
from qvggt_deploy.train.data import scene_seed
from qvggt_deploy.train.losses import (ROTATION_LOSSES, camera_loss, normalize_ground_truth,
                                       relative_rotation_loss, translation_direction_loss)

SHARD = 25
TRAIN_RUN_SEED = 77
HELDOUT_BASE = 10**9 + 300000
FRAMES, SIZE = 4, 224


def _scene(kind: str, index: int):
    if kind == "train":
        cfg = SceneConfig(frames=FRAMES, image_size=(SIZE, SIZE), rotation=(5.0, 20.0))
        scene = generate_scene(scene_seed(TRAIN_RUN_SEED, index, 0), cfg)
        return scene.subset(np.random.default_rng(index).permutation(FRAMES))
    return generate_scene(HELDOUT_BASE + index, SceneConfig(frames=FRAMES, image_size=(SIZE, SIZE)))


def cache(folder: Path, kind: str, count: int, model) -> None:
    out = folder / kind
    out.mkdir(parents=True, exist_ok=True)
    for start in range(0, count, SHARD):
        path = out / f"shard_{start:06d}.pt"
        if path.exists():
            continue
        t0, rows = time.time(), {"tokens": [], "pose_enc": [], "scene_extrinsics": []}
        for i in range(start, min(start + SHARD, count)):
            scene = _scene(kind, i)
            gt = {k: getattr(scene, k)[None] for k in ("depth", "mask", "world_points", "extrinsics", "intrinsics")}
            with torch.inference_mode():
                tokens, _ = model.aggregator(scene.images[None])
            rows["tokens"].append(tokens[-1][0, :, 0].clone())
            rows["pose_enc"].append(normalize_ground_truth(gt)["pose_enc"][0])
            rows["scene_extrinsics"].append(scene.scene_extrinsics)
        tmp = path.with_suffix(".tmp")
        torch.save({k: torch.stack(v) for k, v in rows.items()}, tmp)
        tmp.rename(path)
        print(f"{kind} {start}: {time.time() - t0:.0f} s", flush=True)


def load_split(folder: Path, kind: str):
    shards = [torch.load(f) for f in sorted((folder / kind).glob("shard_*.pt"))]
    if not shards:
        raise SystemExit(f"no {kind} shards under {folder}; run the cache step first")
    return {k: torch.cat([s[k] for s in shards]) for k in shards[0]}


def _centres(extr: torch.Tensor) -> torch.Tensor:
    R, t = extr[..., :3, :3], extr[..., :3, 3:]
    return -(R.transpose(-1, -2) @ t)[..., 0]


def _nearest_rotation(m: torch.Tensor) -> torch.Tensor:
    U, _, Vt = torch.linalg.svd(m.reshape(-1, 3, 3))
    D = torch.ones(len(U), 3, dtype=m.dtype)
    D[:, 2] = torch.sign(torch.det(U @ Vt))
    return U @ torch.diag_embed(D) @ Vt


def probe(train, held, lam: float = 0.1) -> dict:
    """Ridge read-out of room rotation (9 entries, projected to SO(3)) and camera centre."""
    def design(d):
        x = d["tokens"].reshape(-1, d["tokens"].shape[-1]).double()
        return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)

    def target(d):
        e = d["scene_extrinsics"].double()
        return torch.cat([e[..., :3, :3].reshape(-1, 9), _centres(e).reshape(-1, 3)], 1)

    X, Y = design(train), target(train)
    W = torch.linalg.solve(X.T @ X + lam * torch.eye(X.shape[1], dtype=X.dtype), X.T @ Y)
    P, Yh = design(held) @ W, target(held)
    n = len(held["tokens"])
    Rp = _nearest_rotation(P[:, :9]).reshape(n, FRAMES, 3, 3).float()
    Rg = Yh[:, :9].reshape(n, FRAMES, 3, 3).float()
    i, j = pair_indices(FRAMES)
    rel = rotation_angle_error((Rp[:, j] @ Rp[:, i].transpose(-1, -2)).reshape(-1, 3, 3),
                               (Rg[:, j] @ Rg[:, i].transpose(-1, -2)).reshape(-1, 3, 3))
    absolute = rotation_angle_error(Rp.reshape(-1, 3, 3), Rg.reshape(-1, 3, 3))
    centre_err = (P[:, 9:] - Yh[:, 9:]).norm(dim=1)
    mean_centre = Y[:, 9:].mean(0)
    centres = Yh[:, 9:].reshape(n, FRAMES, 3)
    return {
        "train_frames": len(X), "ridge_lambda": lam,
        "abs_rotation_median_deg": float(absolute.median()),
        "composed_relative_rotation_median_deg": float(rel.median()),
        "composed_relative_rotation_mean_deg": float(rel.mean()),
        "centre_error_median_m": float(centre_err.median()),
        "mean_centre_baseline_error_median_m": float((Yh[:, 9:] - mean_centre).norm(dim=1).median()),
        "camera_to_first_distance_median_m": float((centres[:, 1:] - centres[:, :1]).norm(dim=-1).median()),
    }


def pair_errors(head, held) -> dict:
    head.eval()
    rre, rte = [], []
    with torch.no_grad():
        pred = head([held["tokens"][:, :, None]])[-1]
    extr_p, _ = pose_encoding_to_extri_intri(pred, (SIZE, SIZE))
    extr_g, _ = pose_encoding_to_extri_intri(held["pose_enc"], (SIZE, SIZE))
    for b in range(len(pred)):
        r, t = relative_pose_errors(extr_p[b], extr_g[b])
        rre.append(r)
        rte.append(t)
    R, T = torch.cat(rre), torch.cat(rte)
    return {"rre_mean_deg": float(R.mean()), "rre_median_deg": float(R.median()),
            "rte_mean_deg": float(T.mean()), "rte_median_deg": float(T.median()), "auc30": 100 * auc(R, T)}


def refit(train, held, start_head, steps: int, batch: int, lr: float, seed: int = 0,
          direction_weight: float = 0.0, rotation_weight: float = 0.0, rotation_loss: str = "huber",
          rotation_loss_weight: float = 1.0):
    """Continue training a copy of ``start_head`` alone (same loss as ``qvggt train``, plus
    ``direction_weight`` times the pairwise translation-direction loss and ``rotation_weight``
    times the pairwise relative-rotation loss; ``rotation_loss`` and ``rotation_loss_weight`` as
    ``camera_loss``'s ``rotation`` and ``weight_rotation``). Returns the result dict and the head."""
    torch.manual_seed(seed)
    head = copy.deepcopy(start_head).train()
    decay = [p for p in head.parameters() if p.ndim >= 2]
    other = [p for p in head.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(seed + 1)
    curve, t0 = [], time.time()
    for step in range(1, steps + 1):
        scale = min(1.0, step / 100) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for group in opt.param_groups:
            group["lr"] = lr * scale
        idx = torch.randint(0, len(train["tokens"]), (batch,), generator=gen)
        pred = head([train["tokens"][idx][:, :, None]])
        loss = camera_loss(pred, train["pose_enc"][idx], rotation=rotation_loss,
                           weight_rotation=rotation_loss_weight)["loss_camera"]
        if direction_weight:
            loss = loss + direction_weight * translation_direction_loss(pred[-1], train["pose_enc"][idx])
        if rotation_weight:
            loss = loss + rotation_weight * relative_rotation_loss(pred[-1], train["pose_enc"][idx])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        if step % max(1, steps // 4) == 0:
            curve.append({"step": step, "loss": float(loss.detach()), **pair_errors(head, held)})
            head.train()
            print(json.dumps(curve[-1]), flush=True)
    # The same errors on training scenes tell under-fitting (both high) from over-fitting.
    fitted = pair_errors(head, {k: v[:len(held["tokens"])] for k, v in train.items()})
    result = {"steps": steps, "batch": batch, "lr": lr, "direction_weight": direction_weight,
              "rotation_weight": rotation_weight, "rotation_loss": rotation_loss,
              "rotation_loss_weight": rotation_loss_weight, "trunk_depth": len(start_head.trunk),
              "train_scenes": len(train["tokens"]),
              "seconds": round(time.time() - t0), "curve": curve, "train_scenes_errors": fitted}
    return result, head.eval()


def deepened(head: CameraHead, trunk_depth: int, cfg) -> CameraHead:
    """``head`` with ``trunk_depth`` trunk blocks: its own first, then new near-identity ones."""
    have = len(head.trunk)
    if trunk_depth < have:
        raise SystemExit(f"--trunk-depth {trunk_depth} is below the head's {have} blocks")
    dim = head.token_norm.normalized_shape[0]
    torch.manual_seed(0)  # the new blocks' initialisation, reproducible
    deeper = CameraHead(dim, trunk_depth, cfg.camera_num_heads, cfg.mlp_ratio, cfg.aa_init_values,
                        cfg.camera_iterations)
    missing, unexpected = deeper.load_state_dict(head.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("trunk.") and int(k.split(".")[1]) >= have for k in missing)
    return deeper


def _update_json(path: Path, key: str, value) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("step", choices=("cache", "probe", "refit"))
    p.add_argument("--dir", type=Path, required=True, help="folder of the token shards")
    p.add_argument("--train", type=int, default=1300, help="training scenes to cache")
    p.add_argument("--heldout", type=int, default=64, help="held-out scenes to cache")
    p.add_argument("--json", type=Path, help="result file (updated in place, one key per step)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--direction-weight", type=float, default=0.0,
                   help="refit: weight of the pairwise translation-direction loss (default 0: off)")
    p.add_argument("--rotation-weight", type=float, default=0.0,
                   help="refit: weight of the pairwise relative-rotation loss (default 0: off)")
    p.add_argument("--rotation-loss", choices=ROTATION_LOSSES, default="huber",
                   help="refit: how the camera loss scores each frame's quaternion (default: huber, as VGGT)")
    p.add_argument("--rotation-loss-weight", type=float, default=1.0,
                   help="refit: weight of that quaternion term inside the camera loss (default 1)")
    p.add_argument("--save", type=Path, default=None,
                   help="refit: write the model (--checkpoint's or the embedded one) with the refitted camera "
                        "head here (.safetensors)")
    p.add_argument("--key", default=None, help="key of the result in --json (default: the step's name)")
    p.add_argument("--checkpoint", default=None,
                   help="tiny weights whose tokens are cached and whose head is refitted (default: the embedded model)")
    p.add_argument("--trunk-depth", type=int, default=None,
                   help="refit: blocks in the camera trunk (default: the model's own; more are added "
                        "near identity; not with --save, whose checkpoint must match the preset)")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    if a.trunk_depth is not None and a.save:
        p.error("--trunk-depth changes the architecture; its head cannot be saved into a tiny checkpoint")
    torch.set_num_threads(a.threads)
    model = load_model("tiny", a.checkpoint).eval()
    if a.step == "cache":
        cache(a.dir, "heldout", a.heldout, model)
        cache(a.dir, "train", a.train, model)
        return
    train, held = load_split(a.dir, "train"), load_split(a.dir, "heldout")
    if a.step == "probe":
        result = {**probe(train, held), "camera_head": pair_errors(copy.deepcopy(model.camera_head), held)}
    else:
        start = model.camera_head
        if a.trunk_depth is not None:
            start = deepened(start, a.trunk_depth, model.cfg)
        result, head = refit(train, held, start, a.steps, a.batch, a.lr,
                             direction_weight=a.direction_weight, rotation_weight=a.rotation_weight,
                             rotation_loss=a.rotation_loss, rotation_loss_weight=a.rotation_loss_weight)
        if a.save:
            model.camera_head.load_state_dict(head.state_dict())
            save_checkpoint(model, a.save, metadata={"preset": "tiny", "refit": json.dumps(
                {k: v for k, v in result.items() if k != "curve"})})
    print(json.dumps(result, indent=2))
    if a.json:
        _update_json(a.json, a.key or a.step, {"heldout_scenes": len(held["tokens"]), **result})


if __name__ == "__main__":
    main()
