"""``ModelFromPreset``: a VGGT in PyTorch, float or fake-quantized by a recipe."""
from __future__ import annotations

from typing import Optional

from polygraphy.backend.base import BaseLoader


class ModelFromPreset(BaseLoader):
    """Build the model a backend comparison needs.

    Args:
        preset (str): model preset.
        checkpoint (path or hub id, optional): weights; None = the embedded ones (tiny).
        allow_random (bool): a preset without weights runs on random ones instead of being
            refused. Defaults to False.
        recipe (path or Recipe, optional): apply this recipe (fake quantization). Defaults to None.
        conv_precision (str): round the DPT conv weights like an export with this setting
            ("fp32" or "fp16"). Defaults to "fp32".
        threads (int, optional): torch CPU threads.
        device (str or torch.device): where the model lives. On CUDA a recipe's W4A16 layers
            run the W4A16 GEMM kernel (the deployed arithmetic); elsewhere they are
            fake-quantized. Defaults to "cpu".
    """

    def __init__(self, preset: str, checkpoint=None, recipe=None, conv_precision: str = "fp32",
                 threads: Optional[int] = None, device="cpu", allow_random: bool = False):
        self.preset, self.checkpoint, self.recipe, self.allow_random = preset, checkpoint, recipe, allow_random
        self.conv_precision, self.threads, self.device = conv_precision, threads, device

    def call_impl(self):
        import torch

        from qvggt_deploy.export.convs import round_conv_weights
        from qvggt_deploy.model.checkpoint import load_model

        if self.threads:
            torch.set_num_threads(int(self.threads))
        device = torch.device(self.device)
        model = load_model(self.preset, self.checkpoint, device=device, allow_random=self.allow_random)
        if self.recipe is not None:
            from qvggt_deploy.quant.recipe import Recipe, apply_recipe, load_recipe

            recipe = self.recipe if isinstance(self.recipe, Recipe) else load_recipe(self.recipe)
            if device.type == "cuda":
                from qvggt_deploy.ops.linear import apply_recipe_with_kernel

                apply_recipe_with_kernel(model, recipe)
            else:
                apply_recipe(model, recipe)
        round_conv_weights(model, self.conv_precision)
        return model.eval()
