import json

import numpy as np
import pytest
import torch

from qvggt_deploy.data.scene_io import list_scene_dirs, read_scene, write_scene
from qvggt_deploy.data.synthetic import SceneConfig, generate_scene
from qvggt_deploy.errors import QvggtError


@pytest.fixture(scope="module")
def scene():
    return generate_scene(11, SceneConfig(frames=2, image_size=(28, 42)))


def test_round_trip(tmp_path, scene):
    folder = write_scene(scene, tmp_path / "s")
    assert sorted(p.name for p in (folder / "images").iterdir()) == ["000.png", "001.png"]
    meta = json.loads((folder / "scene.json").read_text())
    assert meta["seed"] == 11 and meta["format"] == "qvggt-scene"
    back = read_scene(folder)
    for key in ("depth", "mask", "intrinsics", "extrinsics", "world_points"):
        assert torch.equal(getattr(back, key), getattr(scene, key)), key
    assert (back.images - scene.images).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit PNG
    assert list_scene_dirs(folder) == [folder] and list_scene_dirs(tmp_path) == [folder]


def test_bring_your_own_scene_without_world_points(tmp_path, scene):
    folder = write_scene(scene, tmp_path / "s")
    with np.load(folder / "scene.npz") as z:
        data = {k: z[k] for k in z.files if k not in ("world_points", "mask")}
    np.savez(folder / "scene.npz", **data)
    back = read_scene(folder)
    assert torch.allclose(back.world_points, scene.world_points, atol=1e-4)
    assert torch.equal(back.mask, scene.mask)


def test_clear_errors(tmp_path, scene):
    with pytest.raises(QvggtError, match="no scene.npz"):
        read_scene(tmp_path)
    with pytest.raises(QvggtError, match="no scene folders"):
        list_scene_dirs(tmp_path)
    folder = write_scene(scene, tmp_path / "s")
    (folder / "images" / "001.png").unlink()
    with pytest.raises(QvggtError, match="1 images but scene.npz has 2 frames"):
        read_scene(folder)
    np.savez(folder / "scene.npz", depth=np.zeros((2, 28, 42)), intrinsics=np.zeros((2, 3, 3)),
             extrinsics=np.zeros((3, 3, 4)))
    with pytest.raises(QvggtError, match="extrinsics"):
        read_scene(folder)
