"""benchmarks/scene_parallax.py measures the image motion a pair's translation alone causes."""
import math

import torch

from tests.benchmarks.scripts import load_benchmark

scene_parallax = load_benchmark("scene_parallax")


def _parallax(dst_from_src, depth=4.0, size=32, focal=20.0):
    """Parallax of a fronto-parallel plane at ``depth`` seen by two cameras with the same intrinsics."""
    K = torch.tensor([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])
    depth_map, mask = torch.full((size, size), depth), torch.ones(size, size, dtype=torch.bool)
    return scene_parallax.translation_parallax(depth_map, mask, K, K, dst_from_src)


def test_a_pure_rotation_causes_no_parallax():
    c, s = math.cos(0.3), math.sin(0.3)
    turned = torch.tensor([[c, 0.0, s, 0.0], [0.0, 1.0, 0.0, 0.0], [-s, 0.0, c, 0.0]])
    assert _parallax(turned) < 1e-9


def test_a_sideways_step_moves_the_image_by_focal_times_baseline_over_depth():
    step = torch.eye(4)[:3].clone()
    step[0, 3] = -0.5  # the second camera 0.5 m to the right of the first
    parallax = _parallax(step, depth=4.0, focal=20.0)
    assert abs(parallax - 20.0 * 0.5 / 4.0) < 1e-6
    # A step along the optical axis moves the image less than the same step sideways.
    forward = torch.eye(4)[:3].clone()
    forward[2, 3] = -0.5
    assert _parallax(forward, depth=4.0, focal=20.0) < parallax
