"""Demo figures: depth maps and a point-cloud preview of float vs quantized predictions."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

import numpy as np

from qvggt_deploy.fileio import write_figure


def _plt():
    import matplotlib.pyplot as plt  # the backend is the caller's (the CLI picks Agg)

    return plt


def depth_figure(images: np.ndarray, gt_depth: np.ndarray, predictions: Dict[str, Dict[str, np.ndarray]],
                 path, frames: Sequence[int] = (0, 1)) -> Path:
    """Rows = frames; columns = image, ground-truth depth, then each prediction's depth (one colour
    scale per row, from the ground truth's valid range)."""
    plt = _plt()
    frames = [f for f in frames if f < images.shape[0]]
    cols = 2 + len(predictions)
    fig, axes = plt.subplots(len(frames), cols, figsize=(2.6 * cols, 2.6 * len(frames)), squeeze=False)
    for r, f in enumerate(frames):
        valid = gt_depth[f][gt_depth[f] > 0]
        lo, hi = (np.percentile(valid, 2), np.percentile(valid, 98)) if valid.size else (0, 1)
        axes[r][0].imshow(np.clip(images[f].transpose(1, 2, 0), 0, 1))
        axes[r][1].imshow(np.where(gt_depth[f] > 0, gt_depth[f], np.nan), cmap="turbo", vmin=lo, vmax=hi)
        for c, (name, pred) in enumerate(predictions.items(), start=2):
            d = pred["depth"].reshape(pred["depth"].shape[1:4])[f]
            gt_valid = gt_depth[f] > 0
            scale = np.median(gt_depth[f][gt_valid]) / np.median(d[gt_valid]) if gt_valid.any() else 1.0
            axes[r][c].imshow(d * scale, cmap="turbo", vmin=lo, vmax=hi)
        titles = ["image", "ground truth"] + [f"{n} (median-scaled)" for n in predictions]
        for c, t in enumerate(titles):
            axes[r][c].set_title(f"frame {f}: {t}" if c == 0 else t, fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return write_figure(fig, path, dpi=100)


def point_cloud_figure(images: np.ndarray, predictions: Dict[str, Dict[str, np.ndarray]], path,
                       max_points: int = 6000, seed: int = 0) -> Path:
    """Top (x-z) and side (z-y) views of each prediction's point map, coloured by the images,
    confidence-filtered (top 50%)."""
    plt = _plt()
    fig, axes = plt.subplots(2, len(predictions), figsize=(3.4 * len(predictions), 6.2), squeeze=False)
    rng = np.random.default_rng(seed)
    colors_all = images.transpose(0, 2, 3, 1).reshape(-1, 3)
    for c, (name, pred) in enumerate(predictions.items()):
        pts = pred["world_points"].reshape(-1, 3)
        conf = pred["world_points_conf"].reshape(-1)
        keep = np.flatnonzero(conf >= np.median(conf))
        if keep.size > max_points:
            keep = rng.choice(keep, max_points, replace=False)
        p, col = pts[keep], np.clip(colors_all[keep], 0, 1)
        axes[0][c].scatter(p[:, 0], p[:, 2], s=1, c=col)
        axes[0][c].set_title(f"{name}: top view (x, z)", fontsize=8)
        axes[1][c].scatter(p[:, 2], -p[:, 1], s=1, c=col)
        axes[1][c].set_title(f"{name}: side view (z, -y)", fontsize=8)
        for r in (0, 1):
            axes[r][c].set_aspect("equal", adjustable="datalim")
            axes[r][c].tick_params(labelsize=6)
    fig.tight_layout()
    return write_figure(fig, path, dpi=100)
