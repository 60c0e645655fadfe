"""Plain image folders (photos without ground truth), e.g. calibration sets.

A folder holds one sequence (its images) and/or several (one per subfolder, one level deep), so
a calibration set can mix scenes while each batch still shows one scene from several views (what
VGGT's global attention expects). Images of any size and PIL-readable format are preprocessed by
:func:`qvggt_deploy.data.images.load_and_preprocess_images` (VGGT's official crop/pad rules);
different sizes within a batch are padded as the official loader does.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Sequence, Union

import numpy as np
import torch

from qvggt_deploy.data.images import IMAGE_EXTENSIONS, load_and_preprocess_images
from qvggt_deploy.errors import QvggtError

PathLike = Union[str, os.PathLike]


def _images_in(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def image_sequences(root: PathLike) -> List[List[Path]]:
    """Image sequences under ``root``: its own images (if any) plus each subfolder's images.

    Raises:
        QvggtError: ``root`` is missing, or holds no images at all (naming the folder and the
            accepted extensions).
    """
    root = Path(root)
    if not root.is_dir():
        raise QvggtError(f"image folder not found: {root}")
    sequences = []
    own = _images_in(root)
    if own:
        sequences.append(own)
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        # A saved scene folder keeps its frames in images/.
        files = _images_in(sub) or (_images_in(sub / "images") if (sub / "images").is_dir() else [])
        if files:
            sequences.append(files)
    if not sequences:
        raise QvggtError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {root} or its subfolders")
    return sequences


def pick_frames(files: Sequence[Path], frames: int, rng: np.random.Generator) -> List[Path]:
    """``frames`` files of one sequence: a random window of consecutive images (neighbouring
    photos overlap, as in a capture), or all of them repeated if the sequence is shorter."""
    if len(files) >= frames:
        start = int(rng.integers(0, len(files) - frames + 1))
        return list(files[start:start + frames])
    return [files[i % len(files)] for i in range(frames)]


def load_frames(files: Sequence[Path], image_size: int, mode: str = "crop", patch: int = 14) -> torch.Tensor:
    """Files -> ``[S,3,H,W]`` in [0, 1] (VGGT preprocessing at ``image_size``)."""
    return load_and_preprocess_images(list(files), mode=mode, target_size=image_size, patch=patch)
