"""benchmarks/camera_breakdown.py solves cameras from the dense heads' outputs."""
import torch

from qvggt_deploy.data.synthetic import SceneConfig, generate_scene
from qvggt_deploy.geometry import extri_intri_to_pose_encoding
from qvggt_deploy.metrics.camera import relative_pose_errors
from tests.benchmarks.scripts import load_benchmark

camera_breakdown = load_benchmark("camera_breakdown")


def _as_prediction(scene, size):
    """The ground truth in the model's output layout, with the scale left free."""
    S = scene.num_frames
    conf = torch.ones(1, S, size, size) + scene.mask[None].float()
    return {"pose_enc": extri_intri_to_pose_encoding(scene.extrinsics, scene.intrinsics, (size, size))[None],
            "depth": 2.0 * scene.depth[None, ..., None], "depth_conf": conf,
            "world_points": 2.0 * scene.world_points[None], "world_points_conf": conf}


def test_cameras_solved_from_exact_depth_and_points_are_the_true_cameras():
    size = 56
    scene = generate_scene(3, SceneConfig(frames=3, image_size=(size, size), open_sky=0.0))
    extr = camera_breakdown.cameras_from_point_head(_as_prediction(scene, size), size)
    rre, rte = relative_pose_errors(extr, scene.extrinsics)
    assert float(rre.max()) < 0.05 and float(rte.max()) < 0.05
    # A point map that does not move between frames gives identity cameras, not the true ones.
    frozen = _as_prediction(scene, size)
    frozen["world_points"] = frozen["world_points"][:, :1].expand_as(frozen["world_points"]).clone()
    frozen["depth"] = frozen["depth"][:, :1].expand_as(frozen["depth"]).clone()
    rre_frozen, _ = relative_pose_errors(camera_breakdown.cameras_from_point_head(frozen, size), scene.extrinsics)
    assert float(rre_frozen.max()) > 1.0
