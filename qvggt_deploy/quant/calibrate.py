"""The calibration driver: unit by unit over VGGT (llm-awq's ``run_awq`` loop), resumable.

For each unit (transformer block, or the camera head's other Linears) in execution order:

1. its inputs come from the :class:`~qvggt_deploy.quant.stream.CalibStream`, i.e. from the
   blocks before it *already quantized*, so every unit is calibrated on what it will see;
2. one forward with hooks caches the inputs of its four Linears; with token filtering the
   compensation rows of each are computed from the special rows (:mod:`.tokens`);
3. for each scale group (norm1 -> qkv, v -> proj, norm2 -> fc1, GELU -> fc2), on the float
   block: ``rtn`` keeps ``s = 1``; ``awq`` searches the exponent (:mod:`.awq`); ``qvggt``
   searches (exponent, clip) with head supervision (:mod:`.task_search`); the factors are folded
   into the model and the cached inputs divided by them;
4. each Linear gets its clip (AWQ per-group clip search, optional) and is quantized from the
   folded weights, activation scales are calibrated for the A8 options, the results go into a
   partial recipe, and the Linears are swapped for :class:`~qvggt_deploy.quant.fake.QuantLinear`
   by the same code that applies recipes (so a resumed run builds the same model).

Search and apply are apart: a partial recipe is all a unit's result is; on restart it is re-applied
with :func:`~qvggt_deploy.quant.recipe.apply_recipe` instead of searched again.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch
from torch import nn

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger, progress
from qvggt_deploy.quant import quantizer
from qvggt_deploy.quant.awq import search_clip, search_scale
from qvggt_deploy.quant.capture import capture_inputs
from qvggt_deploy.quant.config import get_precision
from qvggt_deploy.quant.objective import TaskWeights, reference, task_loss
from qvggt_deploy.quant.phases import PhaseClock
from qvggt_deploy.quant.recipe import (LayerSpec, Recipe, apply_recipe, fold_scale_group, install_token_layout_hook,
                                       model_fingerprint, swap_layers)
from qvggt_deploy.quant.rtn import new_recipe
from qvggt_deploy.quant.search import UnitSpec, act_scale_for, build_probe, inspected
from qvggt_deploy.quant.stream import BlockInput, CalibStream
from qvggt_deploy.quant.targets import ScaleGroup, Unit, block_scale_groups, head_scale_groups
from qvggt_deploy.quant.task_search import TaskSearchOptions, search_group
from qvggt_deploy.quant.tokens import compensation_rows, split_rows, stat_rows
from qvggt_deploy.quant.workstore import WorkStore

logger = get_logger(__name__)

METHODS = ("rtn", "awq", "qvggt")
# What `qvggt calibrate` and `qvggt demo` run unless told: AWQ, because the ablation at equal bits
# (docs/method.md, Results) measured no gain from QVGGT's token filter, compensation rows or task
# search in any setting, and a loss at pure W3A16 and W4A8; `--method qvggt` runs them all.
DEFAULT_METHOD = "awq"
_METHOD_SWITCHES = {
    "rtn": dict(smooth=False, clip_search=False, token_filter=False, task_search=False),
    "awq": dict(token_filter=False, task_search=False),
    "qvggt": {},
}


@dataclass(frozen=True)
class CalibOptions:
    """Everything that decides a calibration's result (also the resume key).

    ``method`` names a preset of the switches (``rtn``: none; ``awq``: scale + clip search;
    ``qvggt``: all); single switches can be overridden for ablations.
    """

    method: str = "qvggt"
    wbits: int = 4
    group: int = 128
    abits: Optional[int] = None
    act_granularity: str = "per_tensor"
    act_calib: str = "mse"
    smooth: bool = True
    clip_search: bool = True
    token_filter: bool = True
    comp_directions: int = 2
    task_search: bool = True
    search: TaskSearchOptions = field(default_factory=TaskSearchOptions)
    task_weights: TaskWeights = field(default_factory=TaskWeights)
    max_rows: int = 4096
    seed: int = 0

    @classmethod
    def for_method(cls, method: str, **changes) -> "CalibOptions":
        if method not in METHODS:
            raise QvggtError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
        return cls(method=method, **{**_METHOD_SWITCHES[method], **changes})

    @property
    def precision(self) -> str:
        name = f"w{self.wbits}a{self.abits or 16}"
        get_precision(name)
        return name

    def to_json(self) -> dict:
        return {"name": self.method, **dataclasses.asdict(self)}


def unit_spec(opts: CalibOptions, precision: str) -> UnitSpec:
    """Trial spec of a unit: with token filtering its trials bypass the special tokens, as the
    deployed layers do (``special_bypass``), so every choice is scored on the deployed arithmetic."""
    return UnitSpec(precision, opts.group, opts.act_granularity, opts.act_calib, special_bypass=opts.token_filter)


def calibrate(model: nn.Module, scenes: List[torch.Tensor], opts: CalibOptions,
              plan: Optional[Dict[str, str]] = None, work: Optional[WorkStore] = None,
              fingerprint: Optional[str] = None, phases: Optional[PhaseClock] = None) -> Recipe:
    """Calibrate ``model`` in place (it ends fake-quantized) and return the recipe.

    Args:
        model: the float VGGT (eval mode, on the device the scenes are on).
        scenes: calibration images, one ``[B, S, 3, H, W]`` (or ``[S, 3, H, W]``) per scene.
        opts: method and its options.
        plan: unit name -> precision (mixed precision); units not listed get ``opts.precision``.
        work: where finished units are saved and found again (resume). Defaults to none.
        fingerprint: the float model's fingerprint, if already computed.
        phases: accumulates wall seconds per phase (FP32 targets, capture, compensation, scale
            search, clip search, finalist scoring, quantize, stream). Defaults to a private clock.
    """
    phases = phases if phases is not None else PhaseClock()
    recipe = new_recipe(model, opts.to_json(), fingerprint or model_fingerprint(model))
    if opts.token_filter:
        recipe.token_filter = {"enabled": True, "rule": "docs/method.md#token-rule",
                               "special_per_frame": model.aggregator.patch_start_idx,
                               "directions": opts.comp_directions, "rows": 2 * opts.comp_directions + 1,
                               "layers": []}
    with phases("stream"):
        stream = CalibStream(model, scenes)
    task_scenes = list(range(min(len(scenes), max(opts.search.scenes, 1))))
    with phases("fp32 targets"):
        refs = reference(stream.predictions(task_scenes, opts.search.dense_frames)) if opts.task_search else None
    for index, unit in enumerate(progress(stream.units, desc=f"calibrate ({opts.method})")):
        spec = unit_spec(opts, (plan or {}).get(unit.name, opts.precision))
        cached = work.load_unit(index, unit.name) if work else None
        if cached is not None:
            part = _part_from_store(recipe, *cached)
            apply_recipe(model, part, check=False)
        else:
            part = calibrate_unit(model, stream, unit, spec, opts, refs, recipe, seed=opts.seed + index,
                                  phases=phases)
            if work:
                work.save_unit(index, unit.name, _part_meta(part), part.tensors)
        _merge(recipe, part)
        with phases("stream"):
            stream.advance(unit)
        logger.debug("unit %d/%d %s (%s)%s", index + 1, len(stream.units), unit.name, spec.precision,
                     " from the work folder" if cached is not None else "")
    install_token_layout_hook(model)  # as apply_recipe does: a fresh run = a resumed run = an applied recipe
    if plan:
        recipe.extra["plan"] = {"units": dict(plan)}
    return recipe


@torch.no_grad()
def calibrate_unit(model: nn.Module, stream: CalibStream, unit: Unit, spec: UnitSpec, opts: CalibOptions,
                   refs, header: Recipe, seed: int = 0, phases: Optional[PhaseClock] = None) -> Recipe:
    """Calibrate one unit; the model ends with it folded and quantized. Returns its partial recipe."""
    phases = phases if phases is not None else PhaseClock()
    part = _empty_part(header)
    if spec.bits is None:
        for name in unit.linears:
            part.layers[name] = LayerSpec(spec.precision, source="plan")
    else:
        task = None
        if opts.task_search and refs is not None and opts.search.top_m > 0:
            def task() -> float:
                preds = stream.predictions(range(len(refs)), opts.search.dense_frames)
                return task_loss(preds, refs, opts.task_weights)["task"]
        if unit.is_block:
            _calibrate_block(model, stream, unit, spec, opts, task, seed, part, phases)
        else:
            _calibrate_linears(model, stream, unit, spec, opts, task, seed, part, phases)
    with phases("quantize"):
        swap_layers(model, part)
    return part


def _calibrate_block(model, stream, unit: Unit, spec: UnitSpec, opts: CalibOptions,
                     task: Optional[Callable[[], float]], seed: int, part: Recipe, phases: PhaseClock) -> None:
    with phases("capture"):
        inputs = stream.unit_inputs(unit)
        block = model.get_submodule(unit.name)
        modules = {n: model.get_submodule(n) for n in unit.linears}
        with capture_inputs(modules) as got:
            for inp in inputs:
                block(inp.x, pos=inp.pos)
        feats = {n: got[n] for n in unit.linears}
    layouts = [(i.tokens_per_frame, i.num_special) for i in inputs]
    filt = opts.token_filter and inputs[0].num_special > 0
    with phases("compensation"):
        comp = {n: _compensation(feats[n], layouts, opts.comp_directions) if filt else None for n in unit.linears}
    with phases("finalist scoring"):
        task_float = task() if task else None
    clips: Dict[str, object] = {}  # layer -> layer clip (float) or refined per-group ratios
    for group in block_scale_groups(unit.name, block.norm1.normalized_shape[0]):
        layer = group.layers[0]
        if modules[layer].in_features % spec.group:
            continue
        with phases("scale search"):
            probe = build_probe(model, *inspected(unit.name, layer), inputs, feats[layer], comp[layer],
                                opts.max_rows, seed)
        s, clips[layer], info = _choose(model, probe, layer, spec, opts, task, task_float, seed, phases=phases)
        part.extra["search"][layer] = info
        if s is not None:
            fold_scale_group(model, group, s)
            part.set_smoothing(group, s)
            feats[layer] = [f / s for f in feats[layer]]
            comp[layer] = None if comp[layer] is None else comp[layer] / s
    with phases("quantize"):
        for layer in unit.linears:
            rows, weights = stat_rows(feats[layer], layouts, comp[layer])
            _quantize_layer(model, layer, spec, opts, rows, weights, clips.get(layer, 1.0), seed, part,
                            comp[layer], bypass=filt)


def _calibrate_linears(model, stream, unit: Unit, spec: UnitSpec, opts: CalibOptions,
                       task: Optional[Callable[[], float]], seed: int, part: Recipe, phases: PhaseClock) -> None:
    """A camera-head unit outside the trunk: its Linears' inputs are hooked during camera-head
    forwards (all refinement rounds); scale groups from ``targets.head_scale_groups``."""
    with phases("capture"):
        feats = {n: [f.reshape(-1, f.shape[-1]) for f in xs] for n, xs in stream.linear_inputs(unit.linears).items()}
    groups = {g.layers[0]: g for g in head_scale_groups(model)}
    with phases("finalist scoring"):
        task_float = task() if task else None
    clips: Dict[str, object] = {}  # layer -> layer clip (float) or refined per-group ratios
    for layer in unit.linears:
        if model.get_submodule(layer).in_features % spec.group:
            continue
        group = groups.get(layer)
        with phases("scale search"):
            probe = build_probe(model, *inspected(unit.name, layer, is_block=False),
                                [BlockInput(f) for f in feats[layer]], feats[layer], None, opts.max_rows, seed)
        s, clips[layer], info = _choose(model, probe, layer, spec, opts, task, task_float, seed,
                                        smooth=group is not None, phases=phases)
        if info:
            part.extra["search"][layer] = info
        if s is not None:
            fold_scale_group(model, group, s)
            part.set_smoothing(group, s)
            feats[layer] = [f / s for f in feats[layer]]
    with phases("quantize"):
        for layer in unit.linears:
            rows = torch.cat(feats[layer])
            _quantize_layer(model, layer, spec, opts, rows, rows.new_ones(rows.shape[0]), clips.get(layer, 1.0), seed,
                            part, None, bypass=False)


def _choose(model, probe, layer: str, spec: UnitSpec, opts: CalibOptions, task, task_float, seed: int,
            smooth: bool = True, phases: Optional[PhaseClock] = None):
    """(smoothing factors or None, clip: a float or per-group ratios, info) for one scale group,
    per the method (``smooth`` False: the Linear has no scale group, only its clip is searched)."""
    if opts.task_search:
        refine = None
        if opts.clip_search:
            def refine(s: torch.Tensor, base: float) -> torch.Tensor:
                w = model.get_submodule(layer).weight.detach().float() * s[None, :]
                return search_clip(w, probe.rows / s, probe.row_weights, spec.bits, spec.group, seed=seed, base=base)
        pick, finalists = search_group(model, probe, layer, spec, opts.search, task, task_float,
                                       smooth=opts.smooth and smooth, refine=refine, phases=phases)
        return (pick.s if pick.a > 0 else None), pick.effective_clip, {**pick.summary(), "finalists": len(finalists)}
    if opts.smooth and smooth:
        with phases("scale search") if phases is not None else contextlib.nullcontext():
            choice = search_scale(model, probe, layer, spec, opts.search.grid)
        info = {"a": choice.a, "rec": min(choice.losses), "rec_rtn": choice.losses[0]}
        return (choice.s if choice.a > 0 else None), 1.0, info
    return None, 1.0, {}


def _quantize_layer(model, layer: str, spec: UnitSpec, opts: CalibOptions, rows, weights, clip,
                    seed: int, part: Recipe, comp: Optional[torch.Tensor], bypass: bool) -> None:
    linear = model.get_submodule(layer)
    if linear.in_features % spec.group:
        part.layers[layer] = LayerSpec("fp16", source="fallback: input width not a multiple of the group")
        return
    w = linear.weight.detach().float()
    clip_arg = clip
    if opts.clip_search and not torch.is_tensor(clip):  # a tensor: the search already refined it
        clip_arg = clip * search_clip(w, rows, weights, spec.bits, spec.group, seed=seed, base=clip)
    scales = quantizer.compute_scales(w, spec.bits, spec.group, clip_arg)
    q = quantizer.quantize(w, scales, spec.bits, spec.group)
    act_scale = act_scale_for(spec, rows, weights)
    layer_spec = LayerSpec(spec.precision, spec.group, clip=clip if not torch.is_tensor(clip) else 1.0,
                           act_granularity=spec.act_granularity if spec.abits else None,
                           act_scale=act_scale, special_bypass=bypass and bool(spec.abits), source=opts.method)
    part.set_quantized(layer, layer_spec, q, scales)
    if comp is not None and comp.shape[0]:
        part.set_compensation(layer, comp)


def _compensation(xs: List[torch.Tensor], layouts, k: int) -> torch.Tensor:
    """Compensation rows of one Linear from its special rows over all scenes (``[0, K]`` for
    filtering without compensation)."""
    special = torch.cat([split_rows(x, tpf, ns)[1] for x, (tpf, ns) in zip(xs, layouts)])
    if k <= 0:
        return special.new_zeros(0, special.shape[1])
    return compensation_rows(special, k)


# ---- partial recipes ---------------------------------------------------------------------------
def _empty_part(header: Recipe) -> Recipe:
    return Recipe(preset=header.preset, config=header.config, fingerprint=header.fingerprint,
                  method=header.method, layers={}, token_filter={"layers": []}, extra={"search": {}})


def _part_meta(part: Recipe) -> dict:
    return {"layers": {k: dataclasses.asdict(v) for k, v in part.layers.items()},
            "scale_groups": [dataclasses.asdict(g) for g in part.scale_groups],
            "comp_layers": part.token_filter.get("layers", []), "search": part.extra.get("search", {})}


def _part_from_store(header: Recipe, meta: dict, tensors: Dict[str, torch.Tensor]) -> Recipe:
    part = _empty_part(header)
    part.layers = {k: LayerSpec(**v) for k, v in meta["layers"].items()}
    part.scale_groups = [ScaleGroup(g["prev"], g["prev_kind"], tuple(g["layers"]),
                                    tuple(g["rows"]) if g.get("rows") else None) for g in meta["scale_groups"]]
    part.tensors = dict(tensors)
    part.token_filter["layers"] = list(meta["comp_layers"])
    part.extra["search"] = meta["search"]
    return part


def _merge(recipe: Recipe, part: Recipe) -> None:
    recipe.layers.update(part.layers)
    recipe.scale_groups.extend(part.scale_groups)
    recipe.tensors.update(part.tensors)
    if part.token_filter.get("layers"):
        recipe.token_filter.setdefault("layers", []).extend(part.token_filter["layers"])
    recipe.extra.setdefault("search", {}).update(part.extra.get("search", {}))
