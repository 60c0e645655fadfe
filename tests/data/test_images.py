import numpy as np
import pytest
from PIL import Image

from qvggt_deploy.data.images import list_images, load_and_preprocess_images, open_rgb, preprocess_image
from qvggt_deploy.errors import QvggtError


@pytest.mark.parametrize("size,expected", [((779, 520), (350, 518)), ((706, 529), (392, 518)),
                                           ((1280, 960), (392, 518)), ((912, 596), (336, 518)),
                                           ((1024, 1024), (518, 518)), ((400, 900), (518, 518))])
def test_crop_mode_sizes_match_official(size, expected):
    img = preprocess_image(Image.new("RGB", size, (10, 20, 30)), "crop", 518)
    assert tuple(img.shape[1:]) == expected


def test_pad_mode_pads_white_centred():
    img = preprocess_image(Image.new("RGB", (300, 600), (0, 0, 0)), "pad", 224)
    assert img.shape == (3, 224, 224)
    # portrait: height 224, width round(300*224/600/14)*14 = 112 -> 56 px white each side
    assert img[:, :, :56].eq(1.0).all() and img[:, :, -56:].eq(1.0).all()
    assert img[:, :, 56:168].max() < 0.01


def test_rgba_grayscale_and_exif(tmp_path):
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 0))  # fully transparent -> white
    rgba.save(tmp_path / "a.png")
    assert np.asarray(open_rgb(tmp_path / "a.png")).min() == 255
    Image.new("L", (40, 30), 128).save(tmp_path / "b.png")
    assert open_rgb(tmp_path / "b.png").mode == "RGB"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.new("RGB", (40, 30)).save(tmp_path / "c.jpg", exif=exif)
    assert open_rgb(tmp_path / "c.jpg").size == (30, 40)


def test_unreadable_file_named(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(QvggtError, match="broken.jpg"):
        load_and_preprocess_images([tmp_path / "broken.jpg"], target_size=56)


def test_folder_errors(tmp_path):
    with pytest.raises(QvggtError, match="not found"):
        list_images(tmp_path / "nope")
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(QvggtError, match="no images"):
        list_images(tmp_path)


def test_mixed_sizes_padded_to_common_shape(shared):
    files = list_images(shared / "images" / "room" / "images")
    assert {f.suffix.lower() for f in files} >= {".png", ".jpg"}
    batch = load_and_preprocess_images(files, target_size=224)
    assert batch.shape[0] == len(files) and batch.shape[-1] == 224
    assert batch.shape[-2] % 14 == 0 and 0.0 <= batch.min() and batch.max() <= 1.0
