"""The precision plan of an export: one :class:`LinearLowering` per Linear, read from the model or
from a recipe, for the ``lower-linears`` pass (:mod:`qvggt_deploy.passes.lower_linears`)."""
from __future__ import annotations

from typing import Dict

from torch import nn

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.graph.tensors import TensorStore
from qvggt_deploy.passes.lower_linears import FP16, FP32, LinearLowering, kn
from qvggt_deploy.quant.fake import QuantLinear
from qvggt_deploy.quant.quantizer import unpack_int4 as quantizer_unpack_int4


def plan_from_model(model: nn.Module, float_precision: str = "fp32") -> Dict[str, LinearLowering]:
    """The lowering plan of every Linear the export view marks (track head excluded).

    Args:
        model: a VGGT, float or after ``apply_recipe``.
        float_precision (str): precision of plain ``nn.Linear`` layers (not in a recipe): "fp32"
            or "fp16". Defaults to "fp32".
    """
    if float_precision not in ("fp32", "fp16"):
        raise QvggtError(f"float precision must be fp32 or fp16, got {float_precision!r}")
    plan: Dict[str, LinearLowering] = {}
    for name, m in model.named_modules():
        if name.startswith("track_head"):
            continue
        if isinstance(m, QuantLinear):
            plan[name] = LinearLowering(
                precision=m.precision, in_features=m.in_features, out_features=m.out_features,
                weight=m.weight.detach().numpy() if m.bits is None else None,
                bias=None if m.bias is None else m.bias.detach().float().numpy(),
                qweight=None if m.qweight is None else (lambda q=m.qweight: q.detach().numpy()),
                scales=None if m.scales is None else m.scales.detach().float().numpy(),
                group=m.group, abits=m.abits, act_granularity=m.act_granularity,
                act_scale=m.act_scale, special_bypass=bool(m.special_bypass))
        elif isinstance(m, nn.Linear):
            w = m.weight.detach().float()
            plan[name] = LinearLowering(
                precision=float_precision, in_features=m.in_features, out_features=m.out_features,
                weight=(w.half().float() if float_precision == "fp16" else w).numpy(),
                bias=None if m.bias is None else m.bias.detach().float().numpy())
    return plan


def plan_from_recipe(model: nn.Module, recipe, float_precision: str = "fp32") -> Dict[str, LinearLowering]:
    """The lowering plan of a recipe, read from the recipe's tensors (not from QuantLinears).

    Equivalent to ``plan_from_model(apply_recipe(model, recipe))`` without building the
    fake-quantized layers (VGGT-1B: 4.5 GB of dequantised fp32 weights and 1.1 GB of unpacked
    integers the export never reads). Expects ``model`` to be the float model with the recipe's
    smoothing already folded (``quant.recipe.apply_smoothing``); integers are unpacked one layer
    at a time during lowering.
    """
    plan = plan_from_model(model, float_precision)
    modules = dict(model.named_modules())
    for name, spec in recipe.layers.items():
        linear = modules.get(name)
        if linear is None or not isinstance(linear, nn.Linear):
            raise QvggtError(f"recipe layer {name} is not a Linear of this model")
        bias = None if linear.bias is None else linear.bias.detach().float().numpy()
        act = dict(abits=spec.abits, act_granularity=spec.act_granularity, act_scale=spec.act_scale,
                   special_bypass=bool(spec.special_bypass))
        if spec.wbits:
            N, K = linear.out_features, linear.in_features
            packed, scales = recipe.tensors[f"{name}.qweight"], recipe.tensors[f"{name}.scales"]
            want = (N, K // 2) if spec.wbits == 4 else (N, K)
            if tuple(packed.shape) != want or tuple(scales.shape) != (N, K // spec.group):
                raise QvggtError(f"recipe layer {name}: qweight {tuple(packed.shape)} / scales {tuple(scales.shape)} "
                                 f"do not fit the model's Linear {K}->{N} with group {spec.group}")
            if spec.wbits == 4:
                qfn = lambda p=packed: quantizer_unpack_int4(p).numpy()  # noqa: E731
            else:
                qfn = lambda p=packed: p.numpy()  # noqa: E731
            plan[name] = LinearLowering(spec.precision, K, N, bias=bias, qweight=qfn, scales=scales.float().numpy(),
                                        group=spec.group, **act)
        else:
            w = linear.weight.detach().float()
            plan[name] = LinearLowering(spec.precision, linear.in_features, linear.out_features,
                                        weight=(w.half().float() if spec.precision == "fp16" else w).numpy(), bias=bias, **act)
    return plan


def prewrite_float_weights(plan: Dict[str, LinearLowering], store: TensorStore) -> Dict[str, object]:
    """Write every float Linear weight of ``plan`` now (streamed to the store's external file when it
    has one) and drop the plan's reference to it; returns the constants by the names
    :func:`~qvggt_deploy.passes.lower_linears.lower_linears` uses (``<layer>.weight`` fp32, ``<layer>.weight_fp16``), to pass back as
    its ``constants``. Lets the exporter release the model's Linear weights before tracing."""
    consts: Dict[str, object] = {}
    for name, spec in plan.items():
        if spec.weight is None or spec.precision not in ("fp32", "fp16"):
            continue
        key, dtype = (f"{name}.weight", FP32) if spec.precision == "fp32" else (f"{name}.weight_fp16", FP16)
        consts[key] = store.add(key, kn(spec.weight).astype(dtype, copy=False), stream=True)
        spec.weight = None
    return consts
