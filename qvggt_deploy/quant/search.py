"""What the calibration methods share: a unit's settings, one Linear quantized for a decision,
and probes (what a scale group's candidates are scored on).

A *trial* quantizes a group's Linears for one candidate without touching the model's float
state: the Linear is swapped (``capture.swapped``, restored in ``finally``) for a
:class:`SmoothedLinear` computing ``act_q(x / s) @ Q(W diag(s))^T + b``, which is exactly what
the model computes once ``s`` is folded into the previous op and the Linear quantized.

A *probe* runs the module AWQ inspects for a group (llm-awq's ``module2inspect``) on cached
inputs: the attention for norm1 -> qkv, ``proj`` for v -> proj, the MLP for norm2 -> fc1, ``fc2``
for GELU -> fc2, and scores a trial by the weighted MSE of its outputs against the float ones.
Row weights carry the token rule (special rows 0, compensation rows the weight of the tokens
they replace; see :mod:`~qvggt_deploy.quant.tokens`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Union

import torch
from torch import nn

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.quant import quantizer
from qvggt_deploy.quant.activation import calibrate_act_scale, subsample_rows
from qvggt_deploy.quant.capture import swapped
from qvggt_deploy.quant.config import get_precision
from qvggt_deploy.quant.fake import QuantLinear
from qvggt_deploy.quant.stream import BlockInput
from qvggt_deploy.quant.tokens import attention_with_virtual_queries, special_rows_mask, stat_rows

Clip = Union[float, torch.Tensor]

# layer suffix -> (module to inspect, relative to the block; does it mix tokens?)
INSPECT = {
    "attn.qkv": ("attn", True),
    "attn.proj": ("attn.proj", False),
    "mlp.fc1": ("mlp", False),
    "mlp.fc2": ("mlp.fc2", False),
}


@dataclass(frozen=True)
class UnitSpec:
    """How the Linears of one unit are deployed (one precision per unit: the mixed-precision plan)."""

    precision: str
    group: int
    act_granularity: str = "per_tensor"
    act_calib: str = "mse"
    special_bypass: bool = False

    @property
    def bits(self) -> Optional[int]:
        return get_precision(self.precision).wbits

    @property
    def abits(self) -> Optional[int]:
        return get_precision(self.precision).abits


class SmoothedLinear(QuantLinear):
    """Trial Linear: a :class:`QuantLinear` of ``W diag(s)`` fed ``x / s``."""

    def __init__(self, *args, inv_s: torch.Tensor, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("inv_s", inv_s.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x * self.inv_s)


def quantize_linear(linear: nn.Linear, spec: UnitSpec, clip: Clip = 1.0, s: Optional[torch.Tensor] = None,
                    act_scale: Optional[float] = None) -> QuantLinear:
    """``linear`` quantized per ``spec``, with ``s`` folded in (a trial) or not (final layers)."""
    act = dict(abits=spec.abits, act_granularity=spec.act_granularity if spec.abits else None,
               act_scale=act_scale if spec.abits else None, special_bypass=spec.special_bypass)
    w = linear.weight.detach().float()
    if s is not None:
        w = w * s[None, :]
    if spec.bits is None:
        weight, q, scales = (w.half().float() if spec.precision == "fp16" else w), None, None
    else:
        scales = quantizer.compute_scales(w, spec.bits, spec.group, clip)
        q = quantizer.quantize(w, scales, spec.bits, spec.group)
        weight = quantizer.dequantize(q, scales, spec.group)
    args = (linear.in_features, linear.out_features, linear.bias, spec.precision, weight, q, scales,
            spec.bits, spec.group if spec.bits else None)
    if s is None:
        return QuantLinear(*args, **act)
    return SmoothedLinear(*args, inv_s=1.0 / s, **act)


def act_scale_for(spec: UnitSpec, rows: torch.Tensor, weights: torch.Tensor, grid: int = 40) -> Optional[float]:
    """Static activation scale when ``spec`` quantizes activations per tensor, else None."""
    if not spec.abits or spec.act_granularity != "per_tensor":
        return None
    return calibrate_act_scale(rows, weights, spec.abits, spec.act_calib, grid=grid)


@dataclass
class Probe:
    """Cached inputs of one scale group's inspected module and how to score its outputs.

    ``rows``/``row_weights``: the group's Linear inputs as the token rule counts them (AWQ's
    per-channel statistic and activation ranges come from these). ``run()`` evaluates the
    inspected module on the cached inputs as the model now holds it; ``ref`` is the float run.
    """

    run: Callable[[], List[torch.Tensor]]
    weights: List[torch.Tensor]
    rows: torch.Tensor
    row_weights: torch.Tensor
    ref: Optional[List[torch.Tensor]] = None

    def error(self, outs: Sequence[torch.Tensor]) -> float:
        num = sum(float((((o - r) ** 2).sum(-1) * w).sum()) for o, r, w in zip(outs, self.ref, self.weights))
        den = sum(float(w.sum()) * o.shape[-1] for o, w in zip(outs, self.weights))
        return num / max(den, 1e-30)


def set_layout(module: nn.Module, tokens_per_frame: Optional[int]) -> None:
    """Tell the QuantLinears under ``module`` the token layout (special-token bypass)."""
    for m in module.modules():
        if isinstance(m, QuantLinear):
            m.tokens_per_frame = tokens_per_frame or None


# camera-head Linears outside blocks inspect themselves, except:
HEAD_INSPECT = {"camera_head.pose_branch.fc1": "camera_head.pose_branch"}


def inspected(block: str, layer: str, is_block: bool = True):
    """(module AWQ inspects for the group feeding ``layer`` of unit ``block``, does it mix tokens?)."""
    if not is_block:
        return HEAD_INSPECT.get(layer, layer), False
    suffix = layer[len(block) + 1:]
    if suffix not in INSPECT:
        raise QvggtError(f"{layer}: no probe for a Linear at {suffix!r} of a block")
    inspect, mixes_tokens = INSPECT[suffix]
    return f"{block}.{inspect}", mixes_tokens


@torch.no_grad()
def build_probe(model: nn.Module, module_name: str, mixes_tokens: bool, inputs, feats: List[torch.Tensor],
                comp: Optional[torch.Tensor], max_rows: int = 4096, seed: int = 0) -> Probe:
    """Probe running ``module_name`` (an attention module if ``mixes_tokens``, else per-token) on
    the cached input ``feats`` of the group's Linear.

    Args:
        inputs: per scene, a :class:`~qvggt_deploy.quant.stream.BlockInput` (layout, pos).
        feats: the group Linear's input per scene, in the current (folded) coordinates.
        comp: compensation rows ``[R, K]`` (token filtering; ``[0, K]``: filtering only), or None.
        max_rows: rows kept for per-token probes (sampled, weights preserved). Defaults to 4096.
    """
    layouts = [(i.tokens_per_frame, i.num_special) for i in inputs]
    rows, row_w = stat_rows(feats, layouts, comp)
    if mixes_tokens:
        attn = model.get_submodule(module_name)
        weights = []
        for f, inp in zip(feats, inputs):
            keep = (~special_rows_mask(f.shape[1], inp.tokens_per_frame, inp.num_special, f.device)).float()
            w = keep.expand(f.shape[0], -1)
            if comp is not None:
                virtual = f.new_full((f.shape[0], comp.shape[0]),
                                     inp.frames_per_seq * inp.num_special / max(comp.shape[0], 1))
                w = torch.cat([w, virtual], dim=1)
            weights.append(w)

        batches = _batch_scenes(feats, inputs)
        if len(batches) < len(feats):  # one attention call per layout: fewer, larger ops
            weights = [torch.cat([weights[i] for i in idx]) for idx, _, _ in batches]

        def run() -> List[torch.Tensor]:
            outs = []
            for _, f, inp in batches:
                set_layout(attn, inp.tokens_per_frame)
                outs.append(attn(f, pos=inp.pos) if comp is None
                            else attention_with_virtual_queries(attn, f, inp.pos, comp))
            return outs
    else:
        rows_s, w_s = subsample_rows(rows, row_w, max_rows, seed)
        weights = [w_s]

        def run() -> List[torch.Tensor]:
            module = model.get_submodule(module_name)
            set_layout(module, None)
            return [module(rows_s)]
    probe = Probe(run, weights, rows, row_w)
    probe.ref = run()
    return probe


def _batch_scenes(feats: List[torch.Tensor], inputs) -> List[tuple]:
    """Scenes of one layout (shape, tokens per frame, special tokens) joined along the batch:
    ``[(scene indices, x, BlockInput with the joined pos)]``. Attention is per sequence, so the
    joined run computes what the scene-by-scene runs compute (up to float rounding)."""
    groups: dict = {}
    for i, (f, inp) in enumerate(zip(feats, inputs)):
        key = (tuple(f.shape[1:]), inp.tokens_per_frame, inp.num_special, inp.frames_per_seq, inp.pos is None)
        groups.setdefault(key, []).append(i)
    out = []
    for idx in groups.values():
        first = inputs[idx[0]]
        pos = None if first.pos is None else torch.cat([inputs[i].pos for i in idx])
        out.append((idx, torch.cat([feats[i] for i in idx]),
                    BlockInput(None, pos, first.tokens_per_frame, first.num_special, first.frames_per_seq)))
    return out


@torch.no_grad()
def trial_error(model: nn.Module, probe: Probe, layer: str, spec: UnitSpec, s: Optional[torch.Tensor],
                clip: Clip = 1.0, task: Optional[Callable[[], float]] = None):
    """Probe error with ``layer`` quantized for candidate ``(s, clip)`` (and the task loss when
    ``task`` is given: ``(error, task_loss)``); the model is restored afterwards."""
    linear = model.get_submodule(layer)
    act_scale = act_scale_for(spec, probe.rows if s is None else probe.rows / s, probe.row_weights)
    if s is None:
        s = torch.ones(linear.in_features, device=linear.weight.device)
    trial = quantize_linear(linear, spec, clip, s, act_scale)
    with swapped(model, {layer: trial}):
        err = probe.error(probe.run())
        if task is None:
            return err
        return err, task()
