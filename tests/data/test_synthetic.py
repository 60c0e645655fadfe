import numpy as np
import pytest
import torch

from qvggt_deploy.data.synthetic import SceneConfig, generate_scene
from qvggt_deploy.data.trajectory import look_at
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.geometry import unproject_depth_map_to_point_map

SMALL = SceneConfig(frames=3, image_size=(40, 48))


@pytest.fixture(scope="module")
def scene():
    return generate_scene(7, SMALL)


def test_same_seed_same_scene_other_seed_other_scene(scene):
    again = generate_scene(7, SMALL)
    for key in ("images", "depth", "mask", "intrinsics", "extrinsics", "world_points"):
        assert torch.equal(getattr(scene, key), getattr(again, key)), key
    assert not torch.equal(scene.images, generate_scene(8, SMALL).images)


def test_shapes_ranges_and_conventions(scene):
    S, H, W = 3, 40, 48
    assert scene.images.shape == (S, 3, H, W) and scene.images.dtype == torch.float32
    assert 0 <= scene.images.min() and scene.images.max() <= 1
    assert scene.depth.shape == scene.mask.shape == (S, H, W) and scene.mask.dtype == torch.bool
    assert scene.world_points.shape == (S, H, W, 3)
    assert torch.allclose(scene.extrinsics[0], torch.eye(4)[:3], atol=1e-6)  # first camera = world
    K = scene.intrinsics[0]
    assert K[0, 2] == W / 2 and K[1, 2] == H / 2 and K[0, 0] == K[1, 1]
    R = scene.extrinsics[:, :, :3]
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(S, 3, 3), atol=1e-5)
    assert (scene.depth[scene.mask] > 0).all() and (scene.depth[~scene.mask] == 0).all()
    assert scene.meta["seed"] == 7 and scene.meta["generator_version"]


def test_unprojected_depth_reproduces_world_points(scene):
    pts = unproject_depth_map_to_point_map(scene.depth, scene.extrinsics, scene.intrinsics)
    err = (pts - scene.world_points).norm(dim=-1)[scene.mask]
    assert scene.mask.float().mean() > 0.5
    assert err.max() < 1e-4 * scene.depth.max()


def test_views_agree_by_reprojection(scene):
    """Frame 1's points projected into frame 0 land where frame 0 sees the same depth (unless occluded)."""
    X = scene.world_points[1][scene.mask[1]]  # frame 0 = world
    K = scene.intrinsics[0]
    z = X[:, 2]
    u = (K[0, 0] * X[:, 0] / z + K[0, 2]).round().long()
    v = (K[1, 1] * X[:, 1] / z + K[1, 2]).round().long()
    H, W = scene.depth.shape[1:]
    inside = (z > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    d0 = scene.depth[0, v[inside], u[inside]]
    agree = ((d0 - z[inside]).abs() < 0.05 * z[inside]).float().mean()
    assert inside.float().mean() > 0.3 and agree > 0.6


def test_subset_reanchors_on_the_new_first_frame(scene):
    sub = scene.subset([2, 0])
    assert torch.allclose(sub.extrinsics[0], torch.eye(4)[:3], atol=1e-5)
    pts = unproject_depth_map_to_point_map(sub.depth, sub.extrinsics, sub.intrinsics)
    assert ((pts - sub.world_points).norm(dim=-1)[sub.mask]).max() < 1e-3


@pytest.mark.parametrize("trajectory", ["orbit", "forward", "random"])
def test_trajectories_and_baseline_control(trajectory):
    cfg = SceneConfig(frames=3, image_size=(16, 16), trajectory=trajectory, baseline=(0.5, 0.5))
    scene = generate_scene(3, cfg)
    assert scene.meta["trajectory"] == trajectory
    E = torch.cat([scene.extrinsics.double(), torch.tensor([[[0, 0, 0, 1.0]]]).expand(3, 1, 4)], 1)
    centers = torch.linalg.inv(E)[:, :3, 3]
    steps = (centers[1:] - centers[:-1]).norm(dim=-1)
    if trajectory == "random":  # eyes within the baseline of one viewpoint
        assert ((centers - centers.mean(0)).norm(dim=-1) < 1.01).all()
    else:
        assert torch.allclose(steps, torch.full_like(steps, 0.5), rtol=0.2)


def test_open_sky_scenes_have_invalid_pixels():
    scene = generate_scene(1, SceneConfig(frames=2, image_size=(24, 24), open_sky=1.0))
    assert scene.meta["open_sky"] and not scene.mask.all() and scene.mask.any()


def test_look_at_is_opencv():
    E = look_at(np.zeros(3), np.array([0.0, 0.0, 5.0]))
    # Looking along +z with y up: camera x points to -x (right), camera y down.
    assert np.allclose(E[:3, :3] @ np.array([0, 0, 1.0]), [0, 0, 1])
    assert np.allclose(E[:3, :3] @ np.array([0, 1.0, 0]), [0, -1, 0])


def test_bad_config_is_a_clear_error():
    with pytest.raises(QvggtError, match="trajectory"):
        SceneConfig(trajectory="spiral")
    with pytest.raises(QvggtError, match="frames"):
        SceneConfig(frames=0)


def test_orientation_cue_colours_room_by_position_and_keeps_geometry():
    from qvggt_deploy.data.render import sky_colour, world_tint

    cfg = SceneConfig(frames=2, image_size=(42, 42))
    cued, plain = generate_scene(11, cfg), generate_scene(11, SceneConfig(frames=2, image_size=(42, 42),
                                                                         orientation_cue=False))
    assert torch.equal(cued.depth, plain.depth) and torch.equal(cued.extrinsics, plain.extrinsics)
    assert not torch.equal(cued.images, plain.images)
    # Opposite azimuths get different colours; the same azimuth at the same height and radius the same.
    east, west = world_tint(torch.tensor([[2.0, 1.0, 0.0], [-2.0, 1.0, 0.0]]))
    assert (east - west).abs().max() > 0.3
    assert torch.allclose(world_tint(torch.tensor([[0.0, 1.0, 2.0]])), world_tint(torch.tensor([[0.0, 1.0, 2.0]])))
    north, south = sky_colour(torch.tensor([[0.0, 0.1, 1.0], [0.0, 0.1, -1.0]]))
    assert (north - south).abs().max() > 0.3
    assert cued.meta["config"]["orientation_cue"] is True


def test_rendering_on_the_cpu_by_name_is_the_default_render():
    cfg = SceneConfig(frames=2, image_size=(28, 28))
    a, b = generate_scene(11, cfg), generate_scene(11, cfg, device="cpu")
    for key in ("images", "depth", "mask", "world_points", "extrinsics", "intrinsics", "scene_extrinsics"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
