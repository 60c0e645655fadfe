import numpy as np
import pytest

from qvggt_deploy.outputs.glb import OPENCV_TO_GLTF, write_glb

trimesh = pytest.importorskip("trimesh", reason="the GLB writer needs trimesh")


def test_glb_loads_with_points_and_one_frustum_per_camera(tmp_path, recon):
    points = recon.points("depth", 50)
    path = write_glb(tmp_path / "scene.glb", recon, points, frustum_size=0.5)
    scene = trimesh.load(path)
    clouds = [g for g in scene.geometry.values() if isinstance(g, trimesh.PointCloud)]
    assert len(clouds) == 1 and len(clouds[0].vertices) == len(points)
    np.testing.assert_allclose(np.sort(clouds[0].vertices, axis=0),
                               np.sort(points.xyz @ OPENCV_TO_GLTF.T, axis=0), atol=1e-6)
    frustums = sorted(k for k, g in scene.geometry.items() if isinstance(g, trimesh.Trimesh))
    assert frustums == ["camera_000", "camera_001"]
    for i, key in enumerate(frustums):
        verts = scene.geometry[key].vertices
        R, t = recon.extrinsics[i][:, :3], recon.extrinsics[i][:, 3]
        np.testing.assert_allclose(verts[0], OPENCV_TO_GLTF @ (-R.T @ t), atol=1e-5)  # apex = camera centre
        base = verts[1:] @ OPENCV_TO_GLTF.T @ R.T + t  # back to the camera frame
        np.testing.assert_allclose(base[:, 2], 0.5, atol=1e-5)
