"""How far a frame pair's translation alone moves the image, by trajectory kind.

A relative translation can only be read from two images through the parallax it causes: the
image motion left once the rotation is taken out. This script measures it on the held-out scenes
of ``qvggt eval --scenes N --frames F --seed S`` (seeds 10^9 + S + i): for every frame pair
``i < j``, frame i's valid pixels are lifted with the true depth and projected into camera j
with the true relative pose and with its rotation alone; the median distance between the two
projections is the pair's parallax in pixels. Pairs with a few pixels of parallax leave the
translation direction to priors; pairs with tens of pixels make it a matching problem.

    python benchmarks/scene_parallax.py --scenes 64 --frames 4 --seed 0 --json docs/training/scene_parallax.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def translation_parallax(depth, mask, intrinsics_src, intrinsics_dst, dst_from_src) -> float:
    """Median image motion (pixels of the destination frame) of the source frame's valid pixels
    caused by the translation of ``dst_from_src`` (``[3,4]`` or ``[4,4]``, camera-from-camera);
    ``depth, mask [H,W]`` and ``intrinsics_src [3,3]`` of the source frame."""
    import torch

    from qvggt_deploy.geometry import depth_to_camera_points

    points = depth_to_camera_points(depth.double(), intrinsics_src.double())[mask]  # [N,3]
    T = dst_from_src.double()
    rotated = points @ T[:3, :3].T
    moved = rotated + T[:3, 3]
    keep = (rotated[:, 2] > 1e-3) & (moved[:, 2] > 1e-3)
    K = intrinsics_dst.double()

    def project(X):
        return torch.stack([K[0, 0] * X[:, 0] / X[:, 2], K[1, 1] * X[:, 1] / X[:, 2]], dim=-1)

    if not bool(keep.any()):
        return float("nan")
    return float((project(moved[keep]) - project(rotated[keep])).norm(dim=-1).median())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=64)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import numpy as np

    from qvggt_deploy.fileio import write_json
    from qvggt_deploy.geometry import closed_form_inverse_se3
    from qvggt_deploy.metrics.camera import pair_indices, relative_poses
    from qvggt_deploy.metrics.evaluate import eval_scenes

    pairs = {}
    for scene in eval_scenes(args.scenes, args.frames, args.seed, (args.size, args.size)):
        # The metrics' pairs i < j and poses E_i inv(E_j), inverted: camera j from camera i.
        j_from_i = closed_form_inverse_se3(relative_poses(scene.extrinsics))
        for pose, i, j in zip(j_from_i, *pair_indices(scene.num_frames)):
            pixels = translation_parallax(scene.depth[i], scene.mask[i], scene.intrinsics[i], scene.intrinsics[j], pose)
            pairs.setdefault(scene.meta["trajectory"], []).append((pixels, float(pose[:3, 3].norm())))
    summary = {}
    for kind, values in sorted(pairs.items()):
        px, base = np.array(values).T
        summary[kind] = {"pairs": len(values), "parallax_px_median": float(np.median(px)),
                         "parallax_px_p10": float(np.percentile(px, 10)),
                         "parallax_px_p90": float(np.percentile(px, 90)),
                         "baseline_m_median": float(np.median(base))}
        print(f"{kind:8s} pairs {len(values):4d}  parallax median {np.median(px):6.1f} px "
              f"(p10 {np.percentile(px, 10):5.1f}, p90 {np.percentile(px, 90):6.1f})  "
              f"baseline median {np.median(base):.2f} m")
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k != "json"}
        write_json(args.json, {"settings": settings, "by_trajectory": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
