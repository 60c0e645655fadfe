"""torchao-style entry point: ``quantize_(model, config, filter_fn)``, in place.

Configs are frozen dataclasses with a ``VERSION``; each type has one handler. A
:class:`~qvggt_deploy.quant.recipe.Recipe` is itself a config (what calibration produced).

    quantize_(model, RTNConfig("w4a16", group=64), lambda m, fqn: "camera_head" not in fqn)
    quantize_(model, load_recipe("out/recipe"))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Type

from torch import nn

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.quant.config import get_precision
from qvggt_deploy.quant.recipe import Recipe, apply_recipe
from qvggt_deploy.quant.rtn import rtn_recipe

FilterFn = Callable[[nn.Module, str], bool]


@dataclass(frozen=True)
class RTNConfig:
    """Round-to-nearest weights (no data) at ``precision`` with ``group``; activations of A8
    precisions are quantized dynamically per token (static scales need calibration)."""

    VERSION = 1
    precision: str = "w4a16"
    group: int = 128


def _rtn(model: nn.Module, config: RTNConfig, filter_fn: Optional[FilterFn]) -> None:
    get_precision(config.precision)
    apply_recipe(model, rtn_recipe(model, config.precision, config.group, filter_fn=filter_fn), check=False)


def _recipe(model: nn.Module, recipe: Recipe, filter_fn: Optional[FilterFn]) -> None:
    if filter_fn is not None:
        raise QvggtError("a recipe is applied whole (its smoothing spans layers); use no filter_fn")
    apply_recipe(model, recipe)


HANDLERS: Dict[Type, Callable] = {RTNConfig: _rtn, Recipe: _recipe}


def quantize_(model: nn.Module, config, filter_fn: Optional[FilterFn] = None) -> nn.Module:
    """Quantize ``model``'s candidate Linears in place per ``config``.

    Args:
        model: a float VGGT.
        config: an :class:`RTNConfig` or a :class:`~qvggt_deploy.quant.recipe.Recipe`.
        filter_fn: ``(module, fully qualified name) -> bool``; only Linears it accepts are
            quantized. Defaults to all candidates.

    Returns:
        the model (eval mode).
    """
    handler = HANDLERS.get(type(config))
    if handler is None:
        raise QvggtError(f"no quantization handler for {type(config).__name__}; use one of "
                         f"{', '.join(t.__name__ for t in HANDLERS)}")
    handler(model, config, filter_fn)
    return model.eval()
