"""What every backend shares: lazy loader functors, the runner base class, input checks.

Loaders are Polygraphy's (``polygraphy.backend.base.BaseLoader``, a core dependency): a functor
named *ProductFromSource* whose ``__call__`` builds the product (``SessionFromOnnx(path)()`` -> an
``onnxruntime.InferenceSession``); arguments may themselves be loaders, so chains stay lazy until
a runner activates.

Runners subclass ``polygraphy.backend.base.BaseRunner`` (``activate``/``infer``/``deactivate``,
``inference_time``), so ``polygraphy.comparator.Comparator`` can run them side by side; the
classes are built on first use (:func:`runner_base`).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Dict, Optional

import numpy as np
from polygraphy.backend.base import BaseLoader

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.graph.io import INPUT_NAME, OUTPUT_NAMES
from qvggt_deploy.lazy import import_or_raise


def invoke_if_callable(value):
    """A loader's product, or the value itself (a session or model passed directly)."""
    return value() if isinstance(value, BaseLoader) else value


def runner_base():
    """``polygraphy.backend.base.BaseRunner`` (imported now; QvggtError with a hint if missing)."""
    return import_or_raise("polygraphy.backend.base", "pip install polygraphy").BaseRunner


def check_images(feed_dict: Dict[str, Any], height: Optional[int], width: Optional[int], where: str) -> np.ndarray:
    """The ``images`` input of a feed dict as float32 ``[S, 3, H, W]``; QvggtError naming the
    problem otherwise (missing input, wrong rank, channels, size or dtype)."""
    if INPUT_NAME not in feed_dict:
        raise QvggtError(f"{where}: feed has no input '{INPUT_NAME}' (got {sorted(feed_dict)})")
    images = feed_dict[INPUT_NAME]
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] < 1:
        raise QvggtError(f"{where}: images must be [S, 3, H, W] with S >= 1, got shape {list(images.shape)}")
    if height is not None and (images.shape[2], images.shape[3]) != (height, width):
        raise QvggtError(f"{where}: images are {images.shape[2]}x{images.shape[3]} but this model was exported "
                         f"for {height}x{width}")
    if not np.issubdtype(images.dtype, np.floating):
        raise QvggtError(f"{where}: images must be float (RGB in [0, 1]), got {images.dtype}")
    return np.ascontiguousarray(images, dtype=np.float32)


def ordered_outputs(outputs: Dict[str, Any]) -> "OrderedDict[str, np.ndarray]":
    """The contract's five outputs, in order, as float32 numpy arrays."""
    missing = [k for k in OUTPUT_NAMES if k not in outputs]
    if missing:
        raise QvggtError(f"backend returned no {', '.join(missing)}")
    return OrderedDict((k, np.asarray(outputs[k], dtype=np.float32)) for k in OUTPUT_NAMES)


def build_lazily(module_globals: Dict[str, Any], name: str, factory: Callable[[], type]):
    """Module ``__getattr__`` helper: build class ``name`` on first access and cache it."""
    cls = factory()
    cls.__module__ = module_globals["__name__"]
    module_globals[name] = cls
    return cls
