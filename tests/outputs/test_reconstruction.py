import numpy as np
import pytest

from qvggt_deploy.errors import QvggtError


def test_points_skip_padding_and_filter_by_confidence(recon):
    valid = recon.valid()
    assert valid[0].all() and valid[1].sum() == 20 * 28  # 30 wide less 2 px cropped on the left; 20 rows
    assert not valid[1, :4].any() and not valid[1, 24:].any()
    every = recon.points("depth", 0)
    assert len(every) == valid.sum()
    half = recon.points("depth", 50)
    assert abs(len(half) - valid.sum() / 2) <= 1
    assert recon.depth_conf[half.frame, half.row, half.col].min() >= np.median(recon.depth_conf[valid])
    head = recon.points("pointmap", 0)
    np.testing.assert_array_equal(head.xyz, recon.world_points[valid])


def test_depth_points_unproject_through_the_cameras(recon):
    pts = recon.points("depth", 0)
    R, t = recon.extrinsics[pts.frame][:, :, :3], recon.extrinsics[pts.frame][:, :, 3]
    cam = np.einsum("nij,nj->ni", R, pts.xyz) + t
    np.testing.assert_allclose(cam[:, 2], recon.depth[pts.frame, pts.row, pts.col], rtol=1e-5)


def test_unknown_point_source_is_refused(recon):
    with pytest.raises(QvggtError, match="point source"):
        recon.points("mesh")
