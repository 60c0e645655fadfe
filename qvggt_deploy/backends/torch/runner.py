"""``TorchRunner``: a Polygraphy runner over the PyTorch model (float or fake-quantized).

Built on first access (module ``__getattr__``), so importing this module needs no polygraphy.
"""
from __future__ import annotations

import time

from qvggt_deploy.backends.base import build_lazily, check_images, invoke_if_callable, ordered_outputs, runner_base


def _make_class():
    base = runner_base()

    class TorchRunner(base):
        """Runs VGGT in PyTorch (CPU, fp32 math).

        Args:
            model: a VGGT or a loader making one (``ModelFromPreset``).
            name (str, optional): the runner's name. Defaults to "torch".
            height, width (int, optional): the input size to enforce (like an exported graph).
        """

        def __init__(self, model, name=None, height=None, width=None):
            super().__init__(name=name or "torch", prefix="qvggt-torch")
            self._model = model
            self.height, self.width = height, width

        def activate_impl(self):
            self.model = invoke_if_callable(self._model)

        def get_input_metadata_impl(self):
            from polygraphy.common import TensorMetadata

            import numpy as np

            return TensorMetadata().add("images", dtype=np.float32, shape=["frames", 3, self.height, self.width])

        def infer(self, feed_dict, check_inputs=False, *args, **kwargs):
            """Polygraphy's ``infer``; inputs are checked by :func:`check_images` (QvggtError)."""
            return super().infer(feed_dict, False, *args, **kwargs)

        def infer_impl(self, feed_dict):
            import torch

            images = check_images(feed_dict, self.height, self.width, self.name)
            start = time.perf_counter()
            with torch.no_grad():
                out = self.model(torch.from_numpy(images))
            self.inference_time = time.perf_counter() - start
            return ordered_outputs({k: v.numpy() for k, v in out.items() if hasattr(v, "numpy")})

        def deactivate_impl(self):
            del self.model

    return TorchRunner


def __getattr__(name):
    if name == "TorchRunner":
        return build_lazily(globals(), name, _make_class)
    raise AttributeError(name)
