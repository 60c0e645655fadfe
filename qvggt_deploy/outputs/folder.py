"""The output folder of ``qvggt infer``, the same for every backend.

- ``cameras.json``: per frame the image name, extrinsic camera-from-world ``[3x4]``, intrinsic
  ``[3x3]`` at the network input size (VGGT's convention), the 9-d pose encoding, and its
  placement in the photo (original size, resized size, offset); the backend and model file.
- ``depth/NNN_<stem>.npy`` (float32 ``[H, W]``) and ``.png`` (coloured, padding black);
  ``conf/NNN_<stem>.npy`` and ``.png`` (depth confidence).
- ``points.ply``: binary, coloured, confidence-filtered points of the photo pixels.
- with format ``colmap``: ``sparse/`` cameras.txt, images.txt, points3D.txt (:mod:`.colmap`);
  with ``glb``: ``scene.glb`` (:mod:`.glb`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Sequence

import numpy as np

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.outputs import FORMATS
from qvggt_deploy.outputs.reconstruction import Points, Reconstruction

CAMERAS_JSON = "cameras.json"
COLMAP_DIR = "sparse"
GLB_FILE = "scene.glb"
CONVENTION = ("OpenCV camera axes; extrinsic = camera-from-world [R|t]; world = first camera; normalised "
              "(non-metric) scale; intrinsic at the network input size for integer pixel indices (cx = W/2); "
              "placement: x_net = x_photo * resized/original + offset, pixel centres at +0.5")


def check_formats(formats: Sequence[str], names: Sequence[str]) -> None:
    """Refuse unknown formats and names a format cannot hold, before the model runs."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise QvggtError(f"unknown output format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    if "colmap" in formats:
        from qvggt_deploy.outputs.colmap import check_names

        check_names(names)


def frame_stems(names: Sequence[str]):
    """``NNN_<stem>``: the frame index keeps files apart when two photos share a stem."""
    return [f"{i:03d}_{Path(name).stem}" for i, name in enumerate(names)]


def colorize_confidence(conf: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Confidence ``[H, W]`` -> RGB uint8, robust 2-98 percentile range, high = bright, padding black."""
    from qvggt_deploy.data.writers import colormap

    conf = np.asarray(conf, dtype=np.float64)
    valid = valid & np.isfinite(conf)
    lo, hi = np.percentile(conf[valid], [2, 98]) if valid.any() else (0.0, 1.0)
    rgb = colormap("viridis", np.clip((conf - lo) / max(hi - lo, 1e-12), 0, 1))
    rgb[~valid] = 0
    return (rgb * 255).round().astype(np.uint8)


def write_infer_folder(folder, recon: Reconstruction, points: Points, formats: Sequence[str] = (),
                       meta: Mapping[str, Any] = None) -> Dict[str, Any]:
    """Write everything into ``folder`` (the caller makes it atomic); returns a summary.

    Args:
        folder: an empty folder.
        recon: the predictions.
        points: the points for points.ply, COLMAP and GLB (``recon.points(...)``).
        formats: extra formats from :data:`FORMATS`. Defaults to none.
        meta: extra top-level fields of cameras.json (backend, model, preset, ...).
    """
    from qvggt_deploy.data.writers import colorize_depth, write_npy, write_ply, write_png
    from qvggt_deploy.fileio import write_json

    check_formats(formats, recon.names)
    folder = Path(folder)
    valid = recon.valid()
    frames = []
    for i, (name, stem) in enumerate(zip(recon.names, frame_stems(recon.names))):
        write_npy(folder / "depth" / f"{stem}.npy", recon.depth[i])
        write_png(folder / "depth" / f"{stem}.png", colorize_depth(recon.depth[i], valid[i]))
        write_npy(folder / "conf" / f"{stem}.npy", recon.depth_conf[i])
        write_png(folder / "conf" / f"{stem}.png", colorize_confidence(recon.depth_conf[i], valid[i]))
        place = recon.placements[i]
        frames.append({
            "image": name,
            "extrinsic": recon.extrinsics[i].tolist(),
            "intrinsic": recon.intrinsics[i].tolist(),
            "pose_enc": recon.pose_enc[i].tolist(),
            "placement": {"original_wh": list(place.original_wh), "resized_wh": list(place.resized_wh),
                          "offset_xy": [place.left, place.top]},
        })
    write_ply(folder / "points.ply", points.xyz, points.rgb)
    written = [CAMERAS_JSON, "depth/*.npy|png", "conf/*.npy|png", "points.ply"]
    if "colmap" in formats:
        from qvggt_deploy.outputs.colmap import write_colmap_text

        write_colmap_text(folder / COLMAP_DIR, recon, points)
        written.append(f"{COLMAP_DIR}/{{cameras,images,points3D}}.txt")
    if "glb" in formats:
        from qvggt_deploy.outputs.glb import write_glb

        write_glb(folder / GLB_FILE, recon, points)
        written.append(GLB_FILE)
    H, W = recon.size_hw
    write_json(folder / CAMERAS_JSON, {
        "tool": "qvggt infer",
        **dict(meta or {}),
        "convention": CONVENTION,
        "image_size_hw": [H, W],
        "points": len(points),
        "formats": list(formats),
        "frames": frames,
    })
    return {"frames": len(frames), "points": len(points), "files": written}
