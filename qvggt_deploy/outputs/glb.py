"""A glTF binary scene (``.glb``) of one reconstruction, through trimesh: the coloured point cloud
(geometry ``points``) and one frustum mesh per camera (``camera_NNN``), as VGGT's demos show it.

glTF is y-up with cameras looking down -z; our world is the first camera's OpenCV frame (y down,
z forward), so every vertex is written as ``diag(1, -1, -1) @ x``: viewers then open the scene
from behind the first camera, upright.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from qvggt_deploy.fileio import atomic_path
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.outputs.reconstruction import Points, Reconstruction

trimesh = lazy_import("trimesh")

OPENCV_TO_GLTF = np.diag([1.0, -1.0, -1.0])
FRUSTUM_FACES = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 1], [1, 3, 2], [1, 4, 3]])


def frustum_vertices(extrinsic: np.ndarray, intrinsic: np.ndarray, size_hw, depth: float) -> np.ndarray:
    """``[5, 3]`` world points: the camera centre, then the image corners at ``depth`` along the
    optical axis (VGGT's pixel-index convention: the image spans -0.5 .. W - 0.5)."""
    H, W = size_hw
    fx, fy, cx, cy = intrinsic[0, 0], intrinsic[1, 1], intrinsic[0, 2], intrinsic[1, 2]
    corners = np.array([[-0.5, -0.5], [W - 0.5, -0.5], [W - 0.5, H - 0.5], [-0.5, H - 0.5]])
    cam = np.concatenate([np.zeros((1, 3)),
                          np.stack([(corners[:, 0] - cx) / fx * depth, (corners[:, 1] - cy) / fy * depth,
                                    np.full(4, depth)], axis=1)])
    R, t = extrinsic[:3, :3].astype(np.float64), extrinsic[:3, 3].astype(np.float64)
    return (cam - t) @ R  # R^T (x - t), row vectors


def frustum_depth(recon: Reconstruction, points: Points) -> float:
    """A frustum size that suits the scene: 5% of the points' robust extent (1 if degenerate)."""
    if len(points) < 2:
        return 1.0
    lo, hi = np.percentile(points.xyz, [2, 98], axis=0)
    size = 0.05 * float(np.linalg.norm(hi - lo))
    return size if np.isfinite(size) and size > 0 else 1.0


def build_scene(recon: Reconstruction, points: Points, frustum_size: float = None):
    """The ``trimesh.Scene`` written by :func:`write_glb`."""
    from matplotlib import colormaps

    scene = trimesh.Scene()
    rgba = np.concatenate([points.rgb, np.full((len(points), 1), 255, np.uint8)], axis=1)
    scene.add_geometry(trimesh.PointCloud(points.xyz.astype(np.float64) @ OPENCV_TO_GLTF.T, colors=rgba),
                       geom_name="points", node_name="points")
    depth = frustum_size or frustum_depth(recon, points)
    palette = colormaps["tab10"]
    for i in range(len(recon.names)):
        verts = frustum_vertices(recon.extrinsics[i], recon.intrinsics[i], recon.size_hw, depth) @ OPENCV_TO_GLTF.T
        color = (np.array(palette(i % 10)) * 255).round().astype(np.uint8)
        # vertex colours: glTF stores those (face colours would need scipy to convert)
        mesh = trimesh.Trimesh(verts, FRUSTUM_FACES, vertex_colors=np.tile(color, (len(verts), 1)), process=False)
        scene.add_geometry(mesh, geom_name=f"camera_{i:03d}", node_name=f"camera_{i:03d}_{recon.names[i]}")
    return scene


def write_glb(path, recon: Reconstruction, points: Points, frustum_size: float = None) -> Path:
    """Write the scene as binary glTF, atomically. ``frustum_size`` defaults to :func:`frustum_depth`."""
    data = build_scene(recon, points, frustum_size).export(file_type="glb")
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path
