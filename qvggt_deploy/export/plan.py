"""The graph passes of an export, as data: :func:`plan_passes` maps options to ``[(pass, kwargs)]``.

The exporter traces, runs the plan with :class:`~qvggt_deploy.passes.registry.PassRunner` and
saves; what runs, in which order and with which arguments is decided here only, so it is tested
without tracing (tests/export/test_plan.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from qvggt_deploy.export.convs import CONV_ROOTS
from qvggt_deploy.export.options import ExportOptions

#: Row bands of the DPT heads' full-resolution tail on ORT (VGGT-1B, 2 frames at 518x518: W4A16
#: peak RSS 2.00 -> 1.61 GB with 4 bands; docs/export.md).
DENSE_BANDS = 4

Step = Tuple[str, Dict[str, object]]


@dataclass
class PassInputs:
    """What the passes need besides the options, gathered from the model and the recipe.

    Args:
        lowering (dict): layer -> :class:`~qvggt_deploy.passes.lower_linears.LinearLowering`.
        store (TensorStore, optional): where new weights go. Defaults to None (in memory).
        constants (dict, optional): float weights written before tracing (``free_weights``).
        tokens_per_frame (int): tokens of one frame (special + patches).
        num_special (int): special tokens per frame (camera + registers).
        convs_rounded (bool): the DPT conv weights were rounded to fp16 in the model.
        body (gs.Graph, optional): the per-frame DPT heads graph (``dense_loop``).
        compensation (dict): layer -> compensation rows (``calibration_graph``).
        token_rule_layers (list): Linears the token rule covers (special-token bypass of "qgemm").
    """

    lowering: Dict[str, object] = field(default_factory=dict)
    store: Optional[object] = None
    constants: Optional[Dict[str, object]] = None
    tokens_per_frame: int = 0
    num_special: int = 0
    convs_rounded: bool = False
    body: Optional[object] = None
    compensation: Dict[str, object] = field(default_factory=dict)
    token_rule_layers: Sequence[str] = ()

    @property
    def has_int4(self) -> bool:
        return any(spec.wbits == 4 for spec in self.lowering.values())

    @property
    def bypass_layers(self) -> List[str]:
        """Layers with quantized activations whose special tokens bypass the quantizer."""
        return [name for name, spec in self.lowering.items() if spec.abits and spec.special_bypass]


def _conv_step(inputs: PassInputs) -> List[Step]:
    if not inputs.convs_rounded:
        return []
    return [("fp16-conv-weights", dict(prefixes=tuple(f"model.{root}." for root in CONV_ROOTS), store=inputs.store))]


def plan_body_passes(options: ExportOptions, inputs: PassInputs) -> List[Step]:
    """The passes of the per-frame DPT heads graph (``dense_loop`` only)."""
    return [("fold-constants", {}), ("dedupe-constants", {}), *_conv_step(inputs), ("cleanup", {})]


def plan_passes(options: ExportOptions, inputs: Optional[PassInputs] = None) -> List[Step]:
    """The passes of the main graph, in order, with their keyword arguments.

    Args:
        options: the export's options.
        inputs: model- and recipe-derived arguments. Defaults to an empty plan (no Linear layers).

    Returns:
        ``[(pass name, kwargs)]`` for :class:`~qvggt_deploy.passes.registry.PassRunner`.
    """
    inputs = inputs or PassInputs()
    ort, tokens = options.target == "ort", dict(tokens_per_frame=inputs.tokens_per_frame,
                                                 num_special=inputs.num_special)
    steps: List[Step] = [("fold-constants", {}), ("dedupe-constants", {})]
    if options.dense_loop:
        steps.append(("loop-dense-heads", dict(body=inputs.body)))
    else:
        steps += _conv_step(inputs)
        if ort:
            steps.append(("band-upsampled-convs", dict(bands=DENSE_BANDS)))
    steps.append(("lower-attention", dict(fused="ort" if ort else None)))
    steps.append(("lower-linears", dict(plan=inputs.lowering, target=options.target, store=inputs.store,
                                        constants=inputs.constants)))
    if inputs.bypass_layers:
        steps.append(("bypass-special-tokens", dict(layers=inputs.bypass_layers, **tokens)))
    if options.calibration_graph:
        steps.append(("drop-filtered-tokens", dict(compensation=inputs.compensation, **tokens)))
    if ort and options.qgemm and inputs.has_int4:
        special = [n for n in inputs.token_rule_layers if n in inputs.lowering and inputs.lowering[n].wbits == 4] \
            if options.ort_int8_special_bypass else []
        steps.append(("int4-to-qgemm", dict(store=inputs.store, special_layers=special, **tokens)))
    if ort and options.ort_int4 == "matmulnbits" and inputs.has_int4:  # what qgemm left (fp16 layers)
        steps.append(("int4-to-matmulnbits", dict(accuracy_level=options.accuracy_level, store=inputs.store)))
    if options.trt_plugin and inputs.has_int4:
        steps.append(("w4a16-plugin", dict(store=inputs.store)))
    steps.append(("cleanup", {}))
    return steps
