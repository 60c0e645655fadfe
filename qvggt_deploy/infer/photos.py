"""Photos in, :class:`~qvggt_deploy.outputs.reconstruction.Reconstruction` out, through any runner."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from qvggt_deploy.graph.io import INPUT_NAME
from qvggt_deploy.log import get_logger
from qvggt_deploy.outputs.reconstruction import Reconstruction

logger = get_logger(__name__)


def fixed_input_size(runner) -> Optional[Tuple[int, int]]:
    """The (H, W) an active runner's ``images`` input is fixed to, or None where any size goes."""
    shape = runner.get_input_metadata()[INPUT_NAME].shape
    dims = list(shape)[2:] if shape is not None else []
    return (int(dims[0]), int(dims[1])) if len(dims) == 2 and all(isinstance(d, int) and d > 0 for d in dims) \
        else None


def reconstruct(runner, files: Sequence, *, mode: str = "crop", target_size: int = 518,
                patch: int = 14) -> Reconstruction:
    """Preprocess ``files`` as VGGT's loader does and run them as one sequence.

    A model of fixed input size H x W gets the photos at that size: in crop mode the width
    becomes W, in pad mode the longer side min(H, W); then each is centred, padded white or
    centre-cropped. Elsewhere ``target_size`` applies and photos are padded to the largest.

    Args:
        runner: an inactive runner (activated here, deactivated after).
        files: image paths, in sequence order; their names are kept as given.
        mode: "crop" or "pad". Defaults to "crop".
        target_size: model size where the runner takes any size. Defaults to 518.
        patch: patch size. Defaults to 14.
    """
    from qvggt_deploy.data.images import load_placed_images

    with runner:
        size = fixed_input_size(runner)
        target = target_size if size is None else (size[1] if mode == "crop" else min(size))
        images, placements = load_placed_images(files, mode, target, patch, size)
        logger.info("%d images -> %dx%d (HxW) on %s", len(files), images.shape[-2], images.shape[-1], runner.name)
        outputs = runner.infer({INPUT_NAME: np.ascontiguousarray(images.numpy())})  # runners take C-contiguous arrays
    return Reconstruction.from_outputs(outputs, images, [Path(f).name for f in files], placements)
