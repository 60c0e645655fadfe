"""Micro-preset exports shared by the export, backend and check tests (each export takes seconds,
so each is made once per test process and cached)."""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from qvggt_deploy.model import build_model
from qvggt_deploy.quant import quantizer
from qvggt_deploy.quant.recipe import LayerSpec
from qvggt_deploy.quant.rtn import rtn_recipe

H = W = 56  # micro: 4x4 patches, 21 tokens per frame
GROUP = 32


def micro_model():
    return build_model("micro", seed=0)


def w4a16_recipe(model):
    return rtn_recipe(model, "w4a16", GROUP)


def mixed_recipe(model):
    """W4A16 everywhere, plus INT8-activation layers of both granularities with the special-token
    bypass, INT8 weights per channel, and an fp16 layer: every lowering path of the exporter."""
    recipe = rtn_recipe(model, "w4a16", GROUP)
    recipe.method = {"name": "test-mixed"}
    mods = dict(model.named_modules())

    def set_int(name, precision, group, **act):
        w = mods[name].weight.detach().float()
        bits = 8 if precision.startswith("w8") else 4
        s = quantizer.compute_scales(w, bits, group)
        recipe.set_quantized(name, LayerSpec(precision, group=group, source="test", **act), quantizer.quantize(w, s, bits, group), s)

    set_int("aggregator.frame_blocks.0.attn.qkv", "w8a8", 32, act_granularity="per_token", special_bypass=True)
    set_int("aggregator.global_blocks.1.mlp.fc1", "w4a8", 32, act_granularity="per_tensor", act_scale=0.02, special_bypass=True)
    set_int("aggregator.patch_embed.blocks.0.mlp.fc2", "w8a16", 128)
    set_int("camera_head.trunk.0.mlp.fc1", "w8a8", 64, act_granularity="per_tensor", act_scale=0.05)
    recipe.layers["aggregator.frame_blocks.1.attn.proj"] = LayerSpec("fp16", source="test")
    for name in list(recipe.tensors):
        if name.startswith("aggregator.frame_blocks.1.attn.proj."):
            del recipe.tensors[name]
    return recipe


_ROOT = None
_CACHE = {}


def get_export(name: str):
    """(ExportResult, reference torch model computing the same thing, recipe or None) for one of
    ``fp32``, ``w4a16``, ``mixed`` with optional suffixes ``-trt``, ``-ext`` (external data),
    ``-int8`` (ORT int8 activations, qgemm kernel; ``-int8nbits``: MatMulNBits level 4),
    ``-qdq`` (INT4 left as QDQ)."""
    global _ROOT
    from qvggt_deploy.export.onnx import export_onnx
    from qvggt_deploy.quant.recipe import apply_recipe

    if name not in _CACHE:
        if _ROOT is None:
            _ROOT = Path(tempfile.mkdtemp(prefix="qvggt-test-exports-"))
            atexit.register(shutil.rmtree, _ROOT, True)
        model, ref = micro_model(), micro_model()
        base = name.split("-")[0]
        recipe = {"fp32": lambda m: None, "w4a16": w4a16_recipe, "mixed": mixed_recipe}[base](model)
        if recipe is not None:
            apply_recipe(ref, recipe)
        kwargs = {}
        if name.endswith("-trt"):
            kwargs["target"] = "trt"
        if "-ext" in name:
            kwargs["external_data"] = "always"
        if "-int8" in name:
            kwargs["ort_int8_activations"] = True
            kwargs["ort_int8_kernel"] = "matmulnbits" if "-int8nbits" in name else "qgemm"
        if name.endswith("-qdq") or name == "mixed":  # mixed also covers INT4 left as QDQ
            kwargs["ort_int4"] = "qdq"
        if name == "mixed":  # ... and fp16 DPT conv weights
            from qvggt_deploy.export.convs import round_conv_weights

            kwargs["conv_precision"] = "fp16"
            round_conv_weights(ref, "fp16")
        result = export_onnx(model, _ROOT / f"{name}.onnx", height=H, width=W, recipe=recipe, **kwargs)
        _CACHE[name] = (result, ref.eval(), recipe)
    return _CACHE[name]


@pytest.fixture()
def exports():
    return get_export


@pytest.fixture()
def images():
    return torch.rand(3, 3, H, W, generator=torch.Generator().manual_seed(7))


def export_and_torch_args(variant: str, folder):
    """The micro export of ``variant`` and the ``--preset micro --checkpoint [--recipe]`` arguments
    that run the same model in PyTorch (checkpoint and recipe written into ``folder``)."""
    from qvggt_deploy.model.checkpoint import save_checkpoint

    result, ref, recipe = get_export(variant)
    save_checkpoint(ref if recipe is None else get_export("fp32")[1], folder / "micro.pt")
    args = ["--preset", "micro", "--checkpoint", str(folder / "micro.pt")]
    if recipe is not None:
        args += ["--recipe", str(recipe.save(folder / "recipe"))]
    return result, args
