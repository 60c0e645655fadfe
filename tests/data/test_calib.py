import numpy as np
import pytest
import torch
from PIL import Image

from qvggt_deploy.data.calib import calibration_batches
from qvggt_deploy.data.folders import image_sequences
from qvggt_deploy.data.scene_io import write_scene
from qvggt_deploy.data.synthetic import SceneConfig, generate_scene
from qvggt_deploy.errors import QvggtError


def _photo(path, size, mode="RGB"):
    rng = np.random.default_rng(len(str(path)))
    arr = rng.integers(0, 255, size=(size[1], size[0], 4 if mode == "RGBA" else 3), dtype=np.uint8)
    Image.fromarray(arr, mode).save(path)


def test_synthetic_batches_are_deterministic():
    a = list(calibration_batches("synthetic", 2, frames=2, image_size=28, seed=3))
    b = list(calibration_batches("synthetic", 2, frames=2, image_size=28, seed=3))
    assert len(a) == 2 and a[0].shape == (2, 3, 28, 28)
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and not torch.equal(a[0], a[1])


def test_image_folder_with_mixed_sizes_and_formats(tmp_path):
    seq = tmp_path / "seq1"
    seq.mkdir()
    _photo(seq / "a.jpg", (64, 48))
    _photo(seq / "b.png", (50, 70), "RGBA")
    _photo(seq / "c.bmp", (80, 60))
    _photo(tmp_path / "top.png", (30, 30))
    assert [len(s) for s in image_sequences(tmp_path)] == [1, 3]
    batches = list(calibration_batches(tmp_path, 3, frames=2, image_size=28, seed=0))
    assert len(batches) == 3
    for b in batches:
        assert b.shape[:2] == (2, 3) and b.shape[-1] == 28 and b.shape[-2] % 14 == 0
        assert 0 <= b.min() and b.max() <= 1


def test_scene_folders_as_calibration_source(tmp_path):
    write_scene(generate_scene(1, SceneConfig(frames=3, image_size=(28, 28))), tmp_path / "scene_1")
    (batch,) = calibration_batches(tmp_path, 1, frames=2, image_size=28)
    assert batch.shape == (2, 3, 28, 28)


def test_empty_or_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(QvggtError, match="no images"):
        next(calibration_batches(tmp_path, 1))
    with pytest.raises(QvggtError, match="not found"):
        next(calibration_batches(tmp_path / "missing", 1))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(QvggtError, match="broken.jpg"):
        next(calibration_batches(tmp_path, 1, frames=1, image_size=28))
    with pytest.raises(QvggtError, match="num_batches"):
        next(calibration_batches("synthetic", 0))
