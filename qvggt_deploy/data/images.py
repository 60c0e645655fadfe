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
from pathlib import Path
from typing import List, Sequence, Union

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


def _pad_to(img: torch.Tensor, height: int, width: int) -> torch.Tensor:
    dh, dw = height - img.shape[1], width - img.shape[2]
    if dh == 0 and dw == 0:
        return img
    top, left = dh // 2, dw // 2
    return F.pad(img, (left, dw - left, top, dh - top), mode="constant", value=1.0)


def preprocess_image(im, mode: str = "crop", target_size: int = 518, patch: int = 14) -> torch.Tensor:
    """One RGB PIL image -> ``[3, H, W]`` float32 in [0, 1] (see module docstring)."""
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
    if mode == "crop" and new_h > target_size:
        start = (new_h - target_size) // 2
        img = img[:, start:start + target_size, :]
    if mode == "pad":
        img = _pad_to(img, target_size, target_size)
    return img


def load_and_preprocess_images(paths: Sequence[PathLike], mode: str = "crop", target_size: int = 518,
                               patch: int = 14) -> torch.Tensor:
    """Load images into ``[N, 3, H, W]`` float32 in [0, 1]; H, W multiples of ``patch``."""
    if len(paths) == 0:
        raise QvggtError("no images given")
    images = [preprocess_image(open_rgb(p), mode, target_size, patch) for p in paths]
    height = max(img.shape[1] for img in images)
    width = max(img.shape[2] for img in images)
    if any(img.shape[1:] != (height, width) for img in images):
        logger.warning("images have different shapes after preprocessing; padding all to %dx%d (HxW)",
                       height, width)
        images = [_pad_to(img, height, width) for img in images]
    return torch.stack(images)
