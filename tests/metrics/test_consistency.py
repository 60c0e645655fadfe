import torch

from qvggt_deploy.geometry import unproject_depth_map_to_point_map
from qvggt_deploy.metrics.consistency import consistency_metrics


def test_consistency_is_zero_for_agreeing_heads_at_any_scale():
    depth = torch.rand(2, 5, 6) + 1
    E = torch.eye(4)[:3].expand(2, 3, 4).clone()
    E[1, 0, 3] = 0.5
    K = torch.tensor([[5.0, 0, 3], [0, 5.0, 2.5], [0, 0, 1]]).expand(2, 3, 3)
    pts = unproject_depth_map_to_point_map(depth, E, K)
    assert consistency_metrics(depth, E, K, pts)["consistency"] < 1e-6
    assert consistency_metrics(depth, E, K, 4 * pts)["consistency"] < 1e-6
    assert consistency_metrics(depth, E, K, pts + 0.3)["consistency"] > 0.05
