"""Read a training state's absolute-pose probe against its camera head on held-out scenes.

Tells whether the camera head or the per-frame reading of the room pose limits relative
rotation: the probe's absolute rotation error, the relative error obtained by composing two probe
poses (frame i against frame 0), and the camera head's relative error, on the go/no-go scenes
(seeds 10^9 + 200000 + i) at a chosen size.

    python benchmarks/probe_readout.py runs/geo2/state.pt --size 224
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("state", help="a training run's state.pt (trained with --weight-abs-pose)")
    parser.add_argument("--size", type=int, default=224, help="image size (multiple of 14)")
    parser.add_argument("--scenes", type=int, default=16)
    args = parser.parse_args()

    import torch

    from qvggt_deploy.geometry import pose_encoding_to_extri_intri
    from qvggt_deploy.metrics.camera import rotation_angle_error
    from qvggt_deploy.model import build_model, get_preset
    from qvggt_deploy.train.pose_probe import AbsolutePoseProbe, CameraTokenTap, _heldout_scenes

    state = torch.load(args.state, map_location="cpu", weights_only=False)
    if "probe" not in state:
        raise SystemExit(f"{args.state} holds no probe (train with --weight-abs-pose)")
    trained_track = state["config"].get("weight_track", 0) > 0
    model = build_model(get_preset(state["config"]["preset"]).replace(enable_track=trained_track))
    model.load_state_dict(state["model"])
    model.eval()
    probe = AbsolutePoseProbe(2 * model.cfg.embed_dim)
    probe.load_state_dict(state["probe"])
    tap = CameraTokenTap(model)
    absolute, composed, head = [], [], []
    with torch.no_grad():
        for scene in _heldout_scenes(args.scenes, 4, args.size):
            out = model(scene.images[None])
            R = probe(tap.tokens)[0, :, :9].reshape(-1, 3, 3)
            U, _, Vh = torch.linalg.svd(R)
            R = U @ Vh
            R_true = scene.scene_extrinsics[:, :3, :3]
            absolute.append(rotation_angle_error(R, R_true))
            composed.append(rotation_angle_error((R @ R[0].T)[1:], (R_true @ R_true[0].T)[1:]))
            extr, _ = pose_encoding_to_extri_intri(out["pose_enc"], (args.size, args.size))
            head.append(rotation_angle_error(extr[0, 1:, :, :3], scene.extrinsics[1:, :, :3]))
    print(f"step {state['step']}, {args.scenes} scenes at {args.size} px (degrees)")
    for name, errs in (("probe, absolute rotation", absolute), ("probe composed, frame i vs 0", composed),
                       ("camera head, frame i vs 0", head)):
        e = torch.cat(errs)
        print(f"{name:<30} mean {float(e.mean()):6.2f}  median {float(e.median()):6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
