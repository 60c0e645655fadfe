"""``int4-to-qgemm``: INT4 weight-only MatMuls -> ``com.microsoft.DynamicQuantizeMatMul`` (int8 x int8).

What it computes is **W8A8 with dynamic per-tensor activations**, not W4A16: the INT4 weights
re-gridded to int8 per output channel, the activations quantized to uint8 with one run-time range
per tensor.

ONNX Runtime's fastest CPU GEMM is its u8s8 QGEMM (AVX2, AVX-VNNI, AVX512-VNNI and AMX kernels in
MLAS): on this project's 2-core Xeon with AMX a VGGT-1B fc1 (2748 x 1024 x 4096) takes 8-11 ms
against 70-95 ms for fp32 SGEMM and 52-85 ms for ``MatMulNBits`` with int8 activations (level 4).
It needs int8 weights with one scale per output channel, so this pass re-grids each layer:

    w8[k, n] = round(q[k, n] * s[k // block, n] / c[n]),   c[n] = max_k |q[k, n] * s[k // block, n]| / 127

The added weight error is at most ``c[n] / 2``, about 1/16 of the INT4 step of the layer's
coarsest block; the activations are quantized to uint8 per tensor at run time by the kernel. It is
an approximate mode (like ``accuracy_level`` 4), measured in ``docs/export.md``. The int8
weights are stored (the file is ~1.7x the INT4 one): a chain of constant ops from the INT4
weights that ONNX Runtime would fold at load keeps every intermediate fp32 copy until folding
ends (VGGT-1B passed 12 GB before we stopped it).

Token rule (``docs/method.md``), for the layers given in ``special_layers``: the special tokens
(token ``t`` of ``x [..., L, K]`` with ``t % tokens_per_frame < num_special``) bypass the int8
GEMM. They are zeroed in its input, so the per-tensor range is the patch tokens' alone (the
range always includes 0), and gathered into the layer's exact INT4 MatMul (left for
``int4-to-matmulnbits``: level 0, fp32 math), whose rows are scattered back::

    y = ScatterElements(DynamicQuantizeMatMul(Where(special, 0, x), w8, c, b),
                        rows, MatMul(Gather(x, rows, axis=-2), DQ(q, s)) + b, axis=-2)

``rows`` (``F * num_special`` indices, ``F = L / tokens_per_frame``) and the mask come from
``Shape(x)`` at run time, so the frame count stays dynamic. Those layers keep their INT4 weights
next to the int8 ones.
"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.graph.tensors import TensorStore, int4_raw, read_array, unpack_onnx_int4
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.log import get_logger
from qvggt_deploy.graph.int4 import detach, int4_weight_matmuls
from qvggt_deploy.passes.registry import register_pass

gs = lazy_import("onnx_graphsurgeon")

logger = get_logger(__name__)


def _dequantize(q: np.ndarray, s: np.ndarray, block: int) -> np.ndarray:
    """INT4 ``q [K, N]`` with ``[K/block, N]`` scales -> fp32 ``q * s`` ``[K, N]``."""
    K, N = q.shape
    return (q.astype(np.float32).reshape(K // block, block, N) * s.astype(np.float32)[:, None, :]).reshape(K, N)


def _scales_of(w: np.ndarray) -> np.ndarray:
    c = np.abs(w).max(axis=0) / np.float32(127)
    return np.where(c > 0, c, np.float32(1)).astype(np.float32)


def channel_scales(q: np.ndarray, s: np.ndarray, block: int) -> np.ndarray:
    """Per-output-channel int8 scales ``c[n] = max_k |q * s| / 127`` (fp32) of an INT4 ``[K, N]``
    weight with ``[K/block, N]`` scales; an all-zero channel gets 1 (its weights stay 0)."""
    return _scales_of(_dequantize(q, s, block))


@register_pass("int4-to-qgemm")
def int4_to_qgemm(graph, *, store: Optional[TensorStore] = None, special_layers: Iterable[str] = (),
                  tokens_per_frame: int = 0, num_special: int = 5):
    """Rewrite each INT4 weight-only MatMul (see ``int4_weight_matmuls``) as ``DynamicQuantizeMatMul``
    on its re-gridded int8 weights (absorbing a following bias Add). A layer used by several
    MatMuls gets one int8 weight.

    Preconditions: fp32 activations and scales (the kernel's A and b_scale are float); weights are
    ``gs.Constant`` as the exporter makes them; the inputs of ``special_layers`` have tokens on
    axis -2, ``tokens_per_frame`` of them per frame. Never touched: other MatMuls, the INT4
    constants.

    Args:
        graph (gs.Graph): modified in place.
        store (TensorStore): where the int8 weights and scales go. Defaults to in memory.
        special_layers (iterable of str): layers (node-name prefixes) whose special tokens bypass
            the int8 GEMM (module docstring). Defaults to none.
        tokens_per_frame (int): tokens of one frame; needed with ``special_layers``.
        num_special (int): leading special tokens per frame. Defaults to 5.

    Raises:
        QvggtError: ``special_layers`` with a bad ``tokens_per_frame``/``num_special``.
    """
    store = store or TensorStore()
    special = set(special_layers)
    if special and (tokens_per_frame <= 0 or not 0 < num_special <= tokens_per_frame):
        raise QvggtError(f"int4-to-qgemm: need 0 < num_special ({num_special}) <= tokens_per_frame "
                         f"({tokens_per_frame}) for the special-token bypass")
    rows = _SpecialRows(graph, tokens_per_frame, num_special)
    cache = {}
    matches = [m for m in int4_weight_matmuls(graph) if np.dtype(m.s.dtype) == np.float32]
    bypassed = 0
    for m in matches:
        key = (m.q.name, m.s.name)
        if key not in cache:
            cache[key] = _int8_weight(m, store)
        w8, c = cache[key]
        if m.name in special:
            _bypass(graph, m, w8, c, rows)
            bypassed += 1
            continue
        inputs = [m.x, w8, c] + ([gs.Variable.empty(), m.bias] if m.bias is not None else [])
        detach(m.tail)
        graph.nodes.append(gs.Node("DynamicQuantizeMatMul", name=f"{m.name}/DynamicQuantizeMatMul",
                                   domain="com.microsoft", inputs=inputs, outputs=[m.out]))
    if special - {m.name for m in matches}:
        logger.debug("int4-to-qgemm: special layers without an INT4 MatMul: %s",
                     sorted(special - {m.name for m in matches}))
    logger.debug("int4-to-qgemm: %d MatMuls rewritten, %d with the special-token bypass", len(matches), bypassed)
    return graph.cleanup().toposort()


class _SpecialRows:
    """Builds, per layer, the special-token mask ``[L, 1]`` and row indices ``[F * num_special]``
    of an activation from its run-time shape (constants shared by all layers)."""

    def __init__(self, graph, tokens_per_frame: int, num_special: int):
        self.graph, self.tpf, self.num_special = graph, tokens_per_frame, num_special
        self.consts = {}

    def const(self, name, value):
        if name not in self.consts:
            self.consts[name] = gs.Constant(f"qvggt.qgemm_special.{name}", np.array(value))
        return self.consts[name]

    def node(self, prefix, op, inputs, dtype, attrs=None):
        out = gs.Variable(f"{prefix}/{op}_{len(self.graph.nodes)}_output", dtype=dtype)
        self.graph.nodes.append(gs.Node(op, name=f"{prefix}/{op}_{len(self.graph.nodes)}", inputs=inputs,
                                        outputs=[out], attrs=attrs or {}))
        return out

    def __call__(self, x, prefix):
        n, c = self.node, self.const
        length = n(prefix, "Gather", [n(prefix, "Shape", [x], np.int64), c("axis", np.int64(-2))], np.int64,
                   {"axis": 0})
        pos = n(prefix, "Mod", [n(prefix, "Range", [c("zero", np.int64(0)), length, c("one", np.int64(1))], np.int64),
                                c("tokens_per_frame", np.int64(self.tpf))], np.int64)
        special = n(prefix, "Less", [pos, c("num_special", np.int64(self.num_special))], np.bool_)
        mask = n(prefix, "Unsqueeze", [special, c("last_axis", np.array([-1], np.int64))], np.bool_)
        frames = n(prefix, "Div", [length, c("tokens_per_frame", np.int64(self.tpf))], np.int64)
        starts = n(prefix, "Mul", [n(prefix, "Range", [c("zero", np.int64(0)), frames, c("one", np.int64(1))],
                                     np.int64), c("tokens_per_frame", np.int64(self.tpf))], np.int64)
        grid = n(prefix, "Add", [n(prefix, "Unsqueeze", [starts, c("last_axis", np.array([-1], np.int64))], np.int64),
                                 c("offsets", np.arange(self.num_special, dtype=np.int64))], np.int64)
        rows = n(prefix, "Reshape", [grid, c("flat", np.array([-1], np.int64))], np.int64)
        return mask, rows


def _bypass(graph, m, w8, c, rows: _SpecialRows) -> None:
    """``m`` as the module docstring's bypass: int8 GEMM on the patch rows, the original INT4
    MatMul (``m.tail``, re-fed) on the gathered special rows, scattered into the int8 result."""
    prefix = f"{m.name}/special_bypass"
    mask, idx = rows(m.x, prefix)
    patch = rows.node(prefix, "Where", [mask, rows.const("fzero", np.float32(0)), m.x], np.float32)
    y_q = gs.Variable(f"{m.name}/DynamicQuantizeMatMul_output", dtype=np.float32)
    graph.nodes.append(gs.Node("DynamicQuantizeMatMul", name=f"{m.name}/DynamicQuantizeMatMul", domain="com.microsoft",
                               inputs=[patch, w8, c] + ([gs.Variable.empty(), m.bias] if m.bias is not None else []),
                               outputs=[y_q]))
    x_s = rows.node(prefix, "Gather", [m.x, idx], np.float32, {"axis": -2})
    m.tail[0].inputs[0] = x_s
    y_s = gs.Variable(f"{prefix}/exact_output", dtype=np.float32)
    m.tail[-1].outputs = [y_s]
    ind = rows.node(prefix, "Expand", [rows.node(prefix, "Unsqueeze", [idx, rows.const("last_axis", np.array([-1], np.int64))],
                                                 np.int64), rows.node(prefix, "Shape", [y_s], np.int64)], np.int64)
    graph.nodes.append(gs.Node("ScatterElements", name=f"{prefix}/ScatterElements", inputs=[y_q, ind, y_s],
                               outputs=[m.out], attrs={"axis": -2}))


def int8_weights(q: np.ndarray, s: np.ndarray, block: int):
    """INT4 ``q [K, N]`` with ``[K/block, N]`` scales -> (int8 ``[K, N]``, fp32 channel scales ``[N]``)."""
    w = _dequantize(q, s, block)
    c = _scales_of(w)
    return np.round(w / c).astype(np.int8), c


def _int8_weight(m, store):
    """The re-gridded int8 weight and its channel scales, as stored constants."""
    K, N = m.q.shape
    w8, c = int8_weights(unpack_onnx_int4(int4_raw(m.q), (K, N)), read_array(m.s), m.block)
    return store.add(f"{m.q.name}.int8", w8), store.add(f"{m.q.name}.channel_scale", c)
