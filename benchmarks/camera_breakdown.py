"""Pair-level camera errors on held-out scenes, by trajectory kind, beside the camera priors.

``qvggt eval`` reports means over pairs; the geometry-model targets also need medians over pairs
and where the errors come from (orbit, forward or random-view scenes). Same scenes as
``qvggt eval --scenes N --frames F --seed S`` (seeds 10^9 + S + i). Each AUC is also given with
only the rotation error (as if translation were exact) and only the translation error, to show
which of the two limits it.

    python benchmarks/camera_breakdown.py --checkpoint qvggt_deploy/assets/vggt_tiny.safetensors \
        --point-head-cameras --json docs/training/camera_breakdown.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cameras_from_point_head(pred, size):
    """Extrinsics ``[S,3,4]`` (first frame = identity) solved from the dense heads alone: frame s's
    depth, unprojected with the predicted intrinsics, aligned by a similarity to its point map
    (first-frame coordinates) over its more confident half of pixels."""
    import torch

    from qvggt_deploy.geometry import closed_form_inverse_se3, depth_to_camera_points, pose_encoding_to_extri_intri
    from qvggt_deploy.metrics.points import umeyama

    _, intr = pose_encoding_to_extri_intri(pred["pose_enc"], (size, size))
    cam = depth_to_camera_points(pred["depth"][0], intr[0])  # [S,H,W,3]
    conf = (pred["depth_conf"][0] * pred["world_points_conf"][0]).flatten(1)  # [S,H*W]
    E = torch.eye(4, dtype=torch.float64).repeat(cam.shape[0], 1, 1)
    for s in range(cam.shape[0]):
        keep = conf[s] >= conf[s].median()
        c, R, t = umeyama(cam[s].reshape(-1, 3)[keep], pred["world_points"][0, s].reshape(-1, 3)[keep])
        # X_world = c R X_cam + t  ->  camera-from-world in world units: [R^T | -R^T t]
        E[s, :3, :3] = R.T
        E[s, :3, 3] = -R.T @ t
    E = E @ closed_form_inverse_se3(E[0])
    return E[:, :3, :].float()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="weights (default: the embedded tiny model)")
    parser.add_argument("--scenes", type=int, default=64)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    parser.add_argument("--point-head-cameras", action="store_true",
                        help="also score cameras solved from the depth and point heads (each frame's "
                             "depth unprojected, aligned by Umeyama to its point map)")
    args = parser.parse_args()

    import numpy as np
    import torch

    from qvggt_deploy.geometry import pose_encoding_to_extri_intri
    from qvggt_deploy.metrics.baselines import camera_prior_extrinsics
    from qvggt_deploy.metrics.camera import auc, relative_pose_errors
    from qvggt_deploy.metrics.evaluate import eval_scenes
    from qvggt_deploy.model.checkpoint import load_model

    torch.set_num_threads(args.threads)
    model = load_model("tiny", args.checkpoint, device="cpu").eval()
    size = model.cfg.img_size
    errors = {}  # source -> trajectory -> (rre list, rte list)
    for scene in eval_scenes(args.scenes, args.frames, args.seed, (size, size)):
        with torch.no_grad():
            pred = model(scene.images)
        pose_enc = pred["pose_enc"]
        extr, _ = pose_encoding_to_extri_intri(pose_enc, (size, size))
        sources = {"model": extr[0]}
        if args.point_head_cameras:
            sources["point-head solve"] = cameras_from_point_head(pred, size)
        sources.update({f"prior:{p}": camera_prior_extrinsics(p, scene) for p in ("identity", "forward", "mean_trajectory")})
        for source, e in sources.items():
            rre, rte = relative_pose_errors(e, scene.extrinsics)
            for key in (scene.meta["trajectory"], "all"):
                slot = errors.setdefault(source, {}).setdefault(key, ([], []))
                slot[0].extend(rre.tolist())
                slot[1].extend(rte.tolist())
    report = {}
    for source, by_traj in errors.items():
        report[source] = {}
        for traj, (rre, rte) in sorted(by_traj.items()):
            rre, rte = np.array(rre), np.array(rte)
            report[source][traj] = {"pairs": int(rre.size), "rre_mean": float(rre.mean()),
                                    "rre_median": float(np.median(rre)), "rte_mean": float(rte.mean()),
                                    "rte_median": float(np.median(rte)), "auc@30": 100 * auc(rre, rte),
                                    # Which error limits the AUC: the same pairs with the other
                                    # error set to zero (a perfect translation / a perfect rotation).
                                    "auc@30_rre_only": 100 * auc(rre, np.zeros_like(rte)),
                                    "auc@30_rte_only": 100 * auc(np.zeros_like(rre), rte)}
    for source, by_traj in report.items():
        for traj, m in by_traj.items():
            print(f"{source:<22}{traj:<8} pairs {m['pairs']:>4}  RRE mean {m['rre_mean']:6.2f} median "
                  f"{m['rre_median']:6.2f}  RTE mean {m['rte_mean']:6.2f} median {m['rte_median']:6.2f}  "
                  f"AUC@30 {m['auc@30']:6.2f} (RRE only {m['auc@30_rre_only']:6.2f}, RTE only {m['auc@30_rte_only']:6.2f})")
    if args.json:
        settings = {"checkpoint": args.checkpoint or "embedded", "scenes": args.scenes, "frames": args.frames,
                    "seed": args.seed}
        Path(args.json).write_text(json.dumps({"settings": settings, "errors": report}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
