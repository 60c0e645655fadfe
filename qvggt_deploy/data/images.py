"""Image loading and preprocessing as VGGT's official ``load_and_preprocess_images``.

Modes (target size T = 518 for VGGT-1B; a preset's ``img_size`` otherwise):
- ``crop``: width becomes T, height ``round(h * T / w / 14) * 14`` (Python round, ties to even);
  bicubic resize; heights above T are centre-cropped to T.
- ``pad``: the longer side becomes T, the other ``round(.../14)*14``; bicubic resize; padded with
  white (1.0) to T x T, centred.
Images of different resulting shapes are padded (white, centred) to the largest H and W.

Beyond the official loader: EXIF orientation is applied (phone photos come out upright),
grayscale/palette/16-bit inputs become RGB, RGBA is composited over white, and unreadable files
raise :class:`QvggtError` naming the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
PathLike = Union[str, os.PathLike]


def list_images(folder: PathLike) -> List[Path]:
    """Image files of ``folder`` (sorted by name); a missing or image-less folder is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise QvggtError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise QvggtError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return files


def open_rgb(path: PathLike):
    """Open an image as an upright 8-bit RGB PIL image (EXIF applied, alpha over white)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
    except FileNotFoundError:
        raise QvggtError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise QvggtError(f"cannot read image {path}: {exc}") from exc
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        # 16-bit: the format's full scale, so every image of a sequence keeps its own exposure
        top = 65535.0 if im.mode.startswith("I;16") else (arr.max() if arr.max() > 0 else 1.0)
        im = Image.fromarray((arr / top * 255.0).round().astype(np.uint8))
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return im.convert("RGB")


def _to_tensor(im) -> torch.Tensor:
    arr = np.asarray(im, dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


@dataclass(frozen=True)
class Placement:
    """Where an original image lies in the network input, so outputs can be mapped back to it.

    In continuous pixel coordinates with the origin at the image's top-left corner (COLMAP's
    convention, pixel centres at +0.5), ``x_net = x_orig * resized_w / original_w + left`` and
    ``y_net = y_orig * resized_h / original_h + top``: PIL's resize maps corners to corners, and
    cropping or padding only shifts (``left``/``top`` < 0 where the image was cropped).
    ``original_wh`` is the upright size (EXIF orientation applied).
    """

    original_wh: Tuple[int, int]
    resized_wh: Tuple[int, int]
    left: int = 0
    top: int = 0

    @property
    def scale_xy(self) -> Tuple[float, float]:
        """Network pixels per original pixel, along x and y."""
        return self.resized_wh[0] / self.original_wh[0], self.resized_wh[1] / self.original_wh[1]

    def shifted(self, dx: int, dy: int) -> "Placement":
        return Placement(self.original_wh, self.resized_wh, self.left + dx, self.top + dy)

    def valid_mask(self, height: int, width: int) -> np.ndarray:
        """``[H, W]`` bool: network pixels that show the image (False on padding)."""
        x0, y0 = max(self.left, 0), max(self.top, 0)
        x1, y1 = min(self.left + self.resized_wh[0], width), min(self.top + self.resized_wh[1], height)
        mask = np.zeros((height, width), dtype=bool)
        mask[y0:y1, x0:x1] = True
        return mask


def _fit(img: torch.Tensor, height: int, width: int) -> Tuple[torch.Tensor, int, int]:
    """Centre ``img`` in ``height x width``: white padding where smaller, a centre crop where larger.
    Returns the image and the offset (left, top) of its top-left corner in the result."""
    offsets = []
    for axis, size in ((2, width), (1, height)):
        delta = size - img.shape[axis]
        if delta < 0:
            start = -delta // 2
            img = img.narrow(axis, start, size)
            offsets.append(-start)
        else:
            offsets.append(delta // 2)
    left, top = offsets
    pad_left, pad_top = max(left, 0), max(top, 0)
    pad = (pad_left, width - img.shape[2] - pad_left, pad_top, height - img.shape[1] - pad_top)
    if any(pad):
        img = F.pad(img, pad, mode="constant", value=1.0)
    return img, left, top


def _pad_to(img: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return _fit(img, height, width)[0]


def preprocess_image(im, mode: str = "crop", target_size: int = 518, patch: int = 14) -> torch.Tensor:
    """One RGB PIL image -> ``[3, H, W]`` float32 in [0, 1] (see module docstring)."""
    return _preprocess(im, mode, target_size, patch)[0]


def _preprocess(im, mode: str, target_size: int, patch: int) -> Tuple[torch.Tensor, Placement]:
    from PIL import Image

    if mode not in ("crop", "pad"):
        raise QvggtError(f"preprocessing mode must be 'crop' or 'pad', got {mode!r}")
    if target_size % patch:
        raise QvggtError(f"target size {target_size} is not a multiple of the patch size {patch}")
    width, height = im.size
    if mode == "crop" or width >= height:
        new_w = target_size
        new_h = max(patch, round(height * (new_w / width) / patch) * patch)
    else:
        new_h = target_size
        new_w = max(patch, round(width * (new_h / height) / patch) * patch)
    img = _to_tensor(im.resize((new_w, new_h), Image.Resampling.BICUBIC))
    placement = Placement((width, height), (new_w, new_h))
    if mode == "crop" and new_h > target_size:
        start = (new_h - target_size) // 2
        img = img[:, start:start + target_size, :]
        placement = placement.shifted(0, -start)
    if mode == "pad":
        img, left, top = _fit(img, target_size, target_size)
        placement = placement.shifted(left, top)
    return img, placement


def load_and_preprocess_images(paths: Sequence[PathLike], mode: str = "crop", target_size: int = 518,
                               patch: int = 14) -> torch.Tensor:
    """Load images into ``[N, 3, H, W]`` float32 in [0, 1]; H, W multiples of ``patch``."""
    return load_placed_images(paths, mode, target_size, patch)[0]


def load_placed_images(paths: Sequence[PathLike], mode: str = "crop", target_size: int = 518, patch: int = 14,
                       size_hw: Optional[Tuple[int, int]] = None) -> Tuple[torch.Tensor, List[Placement]]:
    """Like :func:`load_and_preprocess_images`, also returning each image's :class:`Placement`.

    Args:
        size_hw: fit every image into exactly this size (a model exported for a fixed size):
            centred, white padding or a centre crop (with a warning). Defaults to the largest
            preprocessed size (padding only).
    """
    if len(paths) == 0:
        raise QvggtError("no images given")
    done = [_preprocess(open_rgb(p), mode, target_size, patch) for p in paths]
    if size_hw is None:
        height = max(img.shape[1] for img, _ in done)
        width = max(img.shape[2] for img, _ in done)
        if any(img.shape[1:] != (height, width) for img, _ in done):
            logger.warning("images have different shapes after preprocessing; padding all to %dx%d (HxW)",
                           height, width)
    else:
        height, width = size_hw
        cropped = [str(p) for p, (img, _) in zip(paths, done) if img.shape[1] > height or img.shape[2] > width]
        if cropped:
            logger.warning("%d image(s) are centre-cropped to the model's %dx%d input (first: %s)",
                           len(cropped), height, width, cropped[0])
    images, placements = [], []
    for img, placement in done:
        img, left, top = _fit(img, height, width)
        images.append(img)
        placements.append(placement.shifted(left, top))
    return torch.stack(images), placements
