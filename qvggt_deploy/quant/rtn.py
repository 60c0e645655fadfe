"""Round-to-nearest (RTN) baseline: absmax group scales, no calibration data."""
from __future__ import annotations

import json
from typing import Callable, Optional

from torch import nn

from qvggt_deploy.quant import quantizer
from qvggt_deploy.quant.recipe import LayerSpec, Recipe, model_fingerprint
from qvggt_deploy.quant.targets import candidate_linears


def new_recipe(model: nn.Module, method: dict, fingerprint: Optional[str] = None) -> Recipe:
    """An empty recipe bound to ``model``'s preset, config and weights."""
    cfg = model.cfg
    return Recipe(preset=cfg.name, config=json.loads(json.dumps(cfg.to_dict())), fingerprint=fingerprint or model_fingerprint(model),
                  method=dict(method), layers={})


def supports_group(linear: nn.Linear, group: int) -> bool:
    return linear.in_features % group == 0


def rtn_recipe(model: nn.Module, precision: str = "w4a16", group: int = 128,
               fallback: str = "fp16", fingerprint: Optional[str] = None,
               filter_fn: Optional[Callable[[nn.Module, str], bool]] = None) -> Recipe:
    """Quantize every candidate Linear (that ``filter_fn(module, name)`` accepts, if given) with
    RTN at ``precision``/``group``: the one RTN path (``quantize_(model, RTNConfig(...))`` applies
    this recipe).

    Layers whose input width is not a multiple of ``group`` (the camera head's 9-d pose
    embedding) stay at ``fallback`` precision; an unquantized ``precision`` (fp16, fp32) is given
    as is. INT8 activations (w8a8, w4a8) are dynamic per token: RTN has no calibration data for
    static scales.
    """
    recipe = new_recipe(model, {"name": "rtn", "precision": precision, "group": group}, fingerprint)
    bits = LayerSpec(precision).wbits
    for name, linear in candidate_linears(model).items():
        if filter_fn is not None and not filter_fn(linear, name):
            continue
        if bits is None:
            recipe.layers[name] = LayerSpec(precision, source="rtn")
            continue
        if not supports_group(linear, group):
            recipe.layers[name] = LayerSpec(fallback, source="rtn:fallback")
            continue
        w = linear.weight.detach().float()
        scales = quantizer.compute_scales(w, bits, group)
        q = quantizer.quantize(w, scales, bits, group)
        spec = LayerSpec(precision, group=group, source="rtn")
        if spec.abits:
            spec = LayerSpec(precision, group=group, act_granularity="per_token", source="rtn")
        recipe.set_quantized(name, spec, q, scales)
    return recipe
