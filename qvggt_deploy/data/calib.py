"""Calibration data for post-training quantization: batches of frames ``[S,3,H,W]`` in [0, 1].

Sources (``source`` argument of :func:`calibration_batches`):

- ``"synthetic"``: freshly generated scenes with seeds from :data:`CALIB_SEED_START` (5 * 10^8),
  disjoint from training (< 10^6) and evaluation (>= 10^9) seeds;
- a folder of saved scene folders (``scene.npz`` + ``images/``, see ``docs/scenes.md``);
- a folder of photos (its own images and/or one subfolder per sequence), see
  :mod:`qvggt_deploy.data.folders`.

Each batch shows one scene (or sequence) from S views, as VGGT is run. Deterministic for a seed.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Union

import numpy as np
import torch

from qvggt_deploy.data.folders import image_sequences, load_frames, pick_frames
from qvggt_deploy.data.synthetic import SceneConfig, generate_scene
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)

CALIB_SEED_START = 5 * 10 ** 8
SYNTHETIC = "synthetic"


def calibration_batches(source: Union[str, os.PathLike], num_batches: int, frames: int = 4,
                        image_size: int = 224, seed: int = 0, mode: str = "crop",
                        patch: int = 14) -> Iterator[torch.Tensor]:
    """Yield ``num_batches`` batches ``[S,3,H,W]`` (S = ``frames``), one scene/sequence each.

    Args:
        source: ``"synthetic"``, a folder of scene folders, or a folder of images (see module).
        num_batches: how many batches. Sequences are reused (other frames) when there are fewer.
        frames: S, views per batch. Defaults to 4.
        image_size: the model's input size (generated scenes are square; photos follow VGGT's
            ``mode`` preprocessing, so H may be smaller than W). Defaults to 224.
        seed: picks scenes/frames. Defaults to 0.
        mode: ``"crop"`` or ``"pad"`` preprocessing for photos. Defaults to "crop".
        patch: patch size (H and W become multiples of it). Defaults to 14.

    Raises:
        QvggtError: empty or missing folder, unreadable image (named), bad arguments.
    """
    if num_batches < 1 or frames < 1:
        raise QvggtError(f"calibration needs num_batches >= 1 and frames >= 1 (got {num_batches}, {frames})")
    if str(source) == SYNTHETIC:
        cfg = SceneConfig(frames=frames, image_size=(image_size, image_size))
        for i in range(num_batches):
            yield generate_scene(CALIB_SEED_START + seed + i, cfg).images
        return
    sequences = image_sequences(Path(source))
    rng = np.random.default_rng([int(seed), 0xCA1])
    order = rng.permutation(len(sequences))
    logger.info("calibration: %d sequences, %d images in %s", len(sequences), sum(map(len, sequences)), source)
    for i in range(num_batches):
        files = pick_frames(sequences[order[i % len(sequences)]], frames, rng)
        yield load_frames(files, image_size, mode=mode, patch=patch)
