"""``ModelFromPreset``: a VGGT in PyTorch, float or fake-quantized by a recipe."""
from __future__ import annotations

from typing import Optional

from qvggt_deploy.backends.base import BaseLoader


class ModelFromPreset(BaseLoader):
    """Build the model a backend comparison needs.

    Args:
        preset (str): model preset.
        checkpoint (path, optional): weights; None = the embedded ones (tiny) or random.
        recipe (path or Recipe, optional): apply this recipe (fake quantization). Defaults to None.
        conv_precision (str): round the DPT conv weights like an export with this setting
            ("fp32" or "fp16"). Defaults to "fp32".
        threads (int, optional): torch CPU threads.
    """

    def __init__(self, preset: str, checkpoint=None, recipe=None, conv_precision: str = "fp32",
                 threads: Optional[int] = None):
        self.preset, self.checkpoint, self.recipe = preset, checkpoint, recipe
        self.conv_precision, self.threads = conv_precision, threads

    def call_impl(self):
        import torch

        from qvggt_deploy.export.convs import round_conv_weights
        from qvggt_deploy.model.checkpoint import load_model

        if self.threads:
            torch.set_num_threads(int(self.threads))
        model = load_model(self.preset, self.checkpoint)
        if self.recipe is not None:
            from qvggt_deploy.quant.recipe import Recipe, apply_recipe, load_recipe

            recipe = self.recipe if isinstance(self.recipe, Recipe) else load_recipe(self.recipe)
            apply_recipe(model, recipe)
        round_conv_weights(model, self.conv_precision)
        return model.eval()
