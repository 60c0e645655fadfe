"""Placements say where each photo lies in the network input: padding is white, the photo black."""
import numpy as np
import pytest
from PIL import Image

from qvggt_deploy.data.images import load_and_preprocess_images, load_placed_images


@pytest.fixture()
def black_photos(tmp_path):
    paths = []
    for name, size in [("square.png", (64, 64)), ("wide.png", (80, 60)), ("tall.png", (60, 90))]:
        Image.new("RGB", size, (0, 0, 0)).save(tmp_path / name)
        paths.append(tmp_path / name)
    return paths


@pytest.mark.parametrize("mode,size_hw", [("crop", None), ("pad", None), ("crop", (42, 56)), ("pad", (56, 70))])
def test_valid_mask_is_exactly_the_photo(black_photos, mode, size_hw):
    images, placements = load_placed_images(black_photos, mode, 56, 14, size_hw)
    H, W = images.shape[-2:]
    assert size_hw is None or (H, W) == size_hw
    for img, place in zip(images, placements):
        photo = img.numpy().max(axis=0) < 0.5  # black = photo, white = padding
        np.testing.assert_array_equal(place.valid_mask(H, W), photo)


def test_crop_offsets_and_scale(black_photos):
    _, (square, wide, tall) = load_placed_images(black_photos, "crop", 56, 14, (42, 56))
    assert square.resized_wh == (56, 56) and square.top == -7  # centre-cropped to 42 rows
    assert wide.resized_wh == (56, 42) and (wide.left, wide.top) == (0, 0)
    assert tall.resized_wh == (56, 84) and tall.top == -21
    assert wide.scale_xy == pytest.approx((56 / 80, 42 / 60))


def test_unchanged_batch_without_a_size(black_photos):
    np.testing.assert_array_equal(load_and_preprocess_images(black_photos, "crop", 56),
                                  load_placed_images(black_photos, "crop", 56)[0])
