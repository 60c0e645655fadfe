"""Each reader on fixture folders in its official layout: cameras and depth read back as written,
seeded frame sampling, the protocol's skip rules, and one-sentence errors naming what is missing."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from qvggt_deploy.datasets import open_dataset
from qvggt_deploy.datasets.sample import load_scene, sample_frames
from qvggt_deploy.errors import QvggtError
from tests.datasets.layouts import (random_cameras, write_co3d, write_dtu, write_eth3d,
                                    write_re10k)


def _co3d(root, frames=(60, 55, 30), quality=(1.0, 0.9, 1.0)):
    rng = np.random.default_rng(0)
    seqs = {}
    for i, (n, q) in enumerate(zip(frames, quality)):
        E, K = random_cameras(n, rng, 16, 12)
        seqs[f"{100 + i}_seq"] = {"E": E, "K": K, "size": (16, 12), "quality": q}
    E, K = random_cameras(3, rng, 16, 12)
    seqs["low_quality"] = {"E": E, "K": K, "size": (16, 12), "quality": 0.4}
    seqs["train_only"] = {"E": E, "K": K, "size": (16, 12)}
    write_co3d(root, "apple", seqs, train=["train_only"])
    return seqs


def test_frame_sampling_is_seeded_per_sequence():
    a = sample_frames(60, 10, 0, "apple/1")
    assert len(set(a)) == 10 and a == sample_frames(60, 10, 0, "apple/1")
    assert a != sample_frames(60, 10, 1, "apple/1") and a != sample_frames(60, 10, 0, "apple/2")
    assert sample_frames(4, 10, 0, "x") == [0, 1, 2, 3]


def test_co3d_cameras_split_and_skip_rules(tmp_path):
    seqs = _co3d(tmp_path)
    reader = open_dataset("co3d", tmp_path)
    # quality <= 0.5 and train sequences are not test sequences
    assert reader.keys() == ["apple/100_seq", "apple/101_seq", "apple/102_seq"]
    sample = reader.sample("apple/100_seq", 10, 0)
    idx = [int(f) - 1 for f in sample.frame_ids]
    assert len(idx) == 10 and idx == sample_frames(60, 10, 0, "apple/100_seq")
    np.testing.assert_allclose(sample.extrinsics, seqs["100_seq"]["E"][idx], atol=1e-9)
    np.testing.assert_allclose(sample.intrinsics, seqs["100_seq"]["K"][idx], atol=1e-9)
    assert sample.image_paths[0].is_file() and sample.depth is None
    assert "< 50" in reader.sample("apple/102_seq", 10, 0)


def test_co3d_translation_rule_and_errors(tmp_path):
    rng = np.random.default_rng(3)
    E, K = random_cameras(50, rng, 16, 12)
    E[7, :, 3] = 4e4  # one frame with T[0] + T[1] + T[2] > 1e5 (PyTorch3D T = (-t0, -t1, t2))
    E[7, 2, 3] = 2e5
    write_co3d(tmp_path, "car", {"far": {"E": E, "K": K, "size": (16, 12)}})
    assert "1e5" in open_dataset("co3d", tmp_path).sample("car/far", 10, 0)
    (tmp_path / "car" / "set_lists" / "set_lists_fewview_dev.json").unlink()
    with pytest.raises(QvggtError, match="set_lists_fewview_dev.json is missing"):
        open_dataset("co3d", tmp_path)
    with pytest.raises(QvggtError, match="no CO3Dv2 category folder"):
        open_dataset("co3d", tmp_path / "car")
    with pytest.raises(QvggtError, match="category folder for bowl"):
        open_dataset("co3d", tmp_path, categories=["bowl"])


def test_re10k_cameras_missing_frames_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    E, K = random_cameras(12, rng, 20, 14)
    stamps = write_re10k(tmp_path, "abc", E, K, (20, 14), missing=[3])
    reader = open_dataset("re10k", tmp_path)
    assert reader.keys() == ["re10k/abc"]
    sample = reader.sample("re10k/abc", 10, 0)
    assert stamps[3] not in sample.frame_ids and len(sample.frame_ids) == 10
    idx = [stamps.index(s) for s in sample.frame_ids]
    np.testing.assert_allclose(sample.extrinsics, E[idx], atol=1e-9)
    np.testing.assert_allclose(sample.intrinsics, K[idx], atol=1e-9)
    (tmp_path / "test" / "bad.txt").write_text("url\n123 0.5 0.5\n")
    with pytest.raises(QvggtError, match=r"bad.txt:2: expected a timestamp and 18 numbers"):
        reader.sample("re10k/bad", 10, 0)
    shutil.rmtree(tmp_path / "frames")
    with pytest.raises(QvggtError, match="frames/test is missing: the extracted frames"):
        open_dataset("re10k", tmp_path)


def _scene(frames=3, size=(28, 42), seed=5):
    from qvggt_deploy.data.synthetic import SceneConfig, generate_scene

    return generate_scene(10 ** 9 + seed, SceneConfig(frames=frames, image_size=size))


def _pil(scene):
    from PIL import Image

    rgb = (scene.images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(x) for x in rgb]


def test_dtu_cameras_depth_and_errors(tmp_path):
    scene = _scene()
    K_depth = scene.intrinsics.double().numpy().copy()
    K_depth[:, :2] /= 2  # the layout's K is that of the depth maps, here half the image size
    depth_half = scene.depth.numpy()[:, ::2, ::2]
    write_dtu(tmp_path, 1, scene.extrinsics.double().numpy(), K_depth, depth_half, _pil(scene))
    reader = open_dataset("dtu", tmp_path)
    assert reader.keys() == ["dtu/scan1"]
    sample = reader.sample("dtu/scan1", 10, 0)
    assert sample.frame_ids == ["0", "1", "2"]
    np.testing.assert_allclose(sample.intrinsics, K_depth * np.array([2, 2, 1])[None, :, None], atol=1e-6)
    np.testing.assert_allclose(sample.extrinsics, scene.extrinsics.double().numpy(), atol=1e-6)
    np.testing.assert_array_equal(sample.depth(1), depth_half[1])
    shutil.rmtree(tmp_path / "Depths")
    with pytest.raises(QvggtError, match="Depths is missing: the DTU depth folder"):
        open_dataset("dtu", tmp_path)


def test_eth3d_cameras_depth_masks_and_errors(tmp_path):
    scene = _scene()
    masks = [np.zeros(scene.depth.shape[1:], np.uint8) for _ in range(3)]
    masks[0][:4] = 1
    write_eth3d(tmp_path, "courtyard", scene.extrinsics.double().numpy(), scene.intrinsics.double().numpy(),
                scene.depth.numpy(), _pil(scene), masks)
    reader = open_dataset("eth3d", tmp_path)
    sample = reader.sample("eth3d/courtyard", 10, 0)
    np.testing.assert_allclose(sample.extrinsics, scene.extrinsics.double().numpy(), atol=1e-6)
    np.testing.assert_allclose(sample.intrinsics, scene.intrinsics.double().numpy(), atol=1e-5)
    d0 = sample.depth(0)
    assert (d0[:4] == 0).all()
    np.testing.assert_array_equal(d0[4:], scene.depth.numpy()[0, 4:])
    shutil.rmtree(tmp_path / "courtyard" / "ground_truth_depth")
    with pytest.raises(QvggtError, match="ground_truth_depth/dslr_images is missing"):
        open_dataset("eth3d", tmp_path)
    with pytest.raises(QvggtError, match="unknown dataset 'kitti'"):
        open_dataset("kitti", tmp_path)


def test_load_scene_resamples_depth_consistently_with_intrinsics(tmp_path):
    """Ground truth on the network grid: each valid point projects back onto its own pixel."""
    scene = _scene(frames=2, size=(56, 112))
    write_eth3d(tmp_path, "s", scene.extrinsics.double().numpy(), scene.intrinsics.double().numpy(),
                scene.depth.numpy(), _pil(scene))
    sample = open_dataset("eth3d", tmp_path).sample("eth3d/s", 10, 0)
    net = load_scene(sample, target_size=56, patch=14)
    assert tuple(net.images.shape) == (2, 3, 28, 56) and net.mask.any()
    _check_projection(net)
    for s in range(2):  # depth values are the original map's, sampled at the pixel centre
        v, u = torch.nonzero(net.mask[s], as_tuple=True)
        ref = scene.depth[s].double()[2 * v + 1, 2 * u + 1]
        torch.testing.assert_close(net.depth[s][v, u].double(), ref, rtol=1e-6, atol=1e-6)
    # a fixed-size model: padded into 56x56 (14 rows above, 14 below), padding has no ground truth
    padded = load_scene(sample, target_size=56, patch=14, size_hw=(56, 56))
    assert tuple(padded.images.shape) == (2, 3, 56, 56)
    assert not padded.mask[:, :14].any() and not padded.mask[:, 42:].any()
    torch.testing.assert_close(padded.depth[:, 14:42], net.depth)
    _check_projection(padded)


def _check_projection(net):
    """Each valid ground-truth point projects back onto its own pixel with the network intrinsics."""
    E, K = net.extrinsics.double(), net.intrinsics.double()
    for s in range(net.images.shape[0]):
        v, u = torch.nonzero(net.mask[s], as_tuple=True)
        cam = net.world_points[s][v, u].double() @ E[s, :, :3].T + E[s, :, 3]
        proj = cam @ K[s].T
        uv = proj[:, :2] / proj[:, 2:]
        assert (uv[:, 0] - u).abs().max() < 0.51 and (uv[:, 1] - v).abs().max() < 0.51
