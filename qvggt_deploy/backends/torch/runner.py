"""``TorchRunner``: a Polygraphy runner over the PyTorch model (float or fake-quantized).

Built on first access (module ``__getattr__``), so importing this module needs no polygraphy.
"""
from __future__ import annotations

import contextlib
import time

from qvggt_deploy.backends.base import build_lazily, check_images, invoke_if_callable, ordered_outputs, runner_base


def _make_class():
    base = runner_base()

    class TorchRunner(base):
        """Runs VGGT in PyTorch (fp32 math unless ``dtype`` says otherwise).

        Args:
            model: a VGGT or a loader making one (``ModelFromPreset``).
            name (str, optional): the runner's name. Defaults to "torch".
            height, width (int, optional): the input size to enforce (like an exported graph).
            device (str or torch.device): where the inputs go (the model's device). Defaults to "cpu".
            dtype (str, optional): autocast dtype for the aggregator's matmuls, "bfloat16" or
                "float16" (the heads stay fp32 inside the model). Defaults to None (fp32).
        """

        def __init__(self, model, name=None, height=None, width=None, device="cpu", dtype=None):
            super().__init__(name=name or "torch", prefix="qvggt-torch")
            self._model = model
            self.height, self.width = height, width
            self.device, self.dtype = device, dtype

        def activate_impl(self):
            self.model = invoke_if_callable(self._model)

        def get_input_metadata_impl(self):
            import numpy as np
            from polygraphy.common import TensorMetadata

            return TensorMetadata().add("images", dtype=np.float32, shape=["frames", 3, self.height, self.width])

        def infer(self, feed_dict, check_inputs=False, *args, **kwargs):
            """Polygraphy's ``infer``; inputs are checked by :func:`check_images` (QvggtError)."""
            return super().infer(feed_dict, False, *args, **kwargs)

        def infer_impl(self, feed_dict):
            import torch

            images = check_images(feed_dict, self.height, self.width, self.name)
            device = torch.device(self.device)
            autocast = (torch.autocast(device_type=device.type, dtype=getattr(torch, self.dtype)) if self.dtype
                        else contextlib.nullcontext())
            start = time.perf_counter()
            with torch.no_grad(), autocast:
                out = self.model(torch.from_numpy(images).to(device))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            self.inference_time = time.perf_counter() - start
            out = {k: v.detach().float().cpu().numpy() for k, v in out.items() if torch.is_tensor(v)}
            return ordered_outputs(out)

        def deactivate_impl(self):
            del self.model

    return TorchRunner


def __getattr__(name):
    if name == "TorchRunner":
        return build_lazily(globals(), name, _make_class)
    raise AttributeError(name)
