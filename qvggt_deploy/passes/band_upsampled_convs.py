"""``band-upsampled-convs``: compute a full-resolution upsample -> conv tail in row bands.

Each DPT head ends at the input resolution: bilinear ``Resize`` (align_corners) of a
``[S, 128, h, w]`` map to ``[S, 128, H, W]``, two broadcast ``Add``\\ s (the separable position
embedding), a 3x3 ``Conv`` to 32 channels, ``Relu`` and a 1x1 ``Conv`` to the head's outputs. For
VGGT-1B at 518x518 each 128-channel map is 137 MB per frame, and ONNX Runtime holds two of them at
once (plus the layout copy its NCHWc convolution makes): this tail alone sets the W4A16 graph's peak
memory. Computed in ``bands`` horizontal bands the big maps exist one band at a time.

Band ``[r0, r1)`` resizes only its own output rows plus the conv's halo, with
``tf_crop_and_resize`` and a region of interest that reproduces the align_corners sampling
coordinates of those rows, runs the same per-pixel ops, and the 3x3 conv pads with zeros only at
the image border (inside, the halo rows are real data). The band outputs are concatenated along
``H``: the same values as the full tail, up to the last bits of the resampling coordinates.
"""
from __future__ import annotations

import numpy as np

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.passes.registry import register_pass

gs = lazy_import("onnx_graphsurgeon")

UNARY = ("Relu", "Sigmoid")
BINARY = ("Add", "Mul", "Sub", "Div")  # with a constant second operand broadcast over rows


def _attr(node, name, default=None):
    value = node.attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else value


def _only_consumer(tensor, graph_outputs):
    """The single node reading ``tensor``, if it has one and is not a graph output."""
    return tensor.outputs[0] if len(tensor.outputs) == 1 and tensor.name not in graph_outputs else None


def _broadcast_const(node, height):
    """The constant operand of a binary pointwise node if it broadcasts over a 4-D map whose rows
    it either spans (dim 2 == height) or repeats (dim 2 == 1); else None."""
    consts = [t for t in node.inputs if isinstance(t, gs.Constant)]
    if len(consts) != 1 or len(node.inputs) != 2:
        return None
    shape = consts[0].values.shape
    if len(shape) == 0:
        return consts[0]
    if len(shape) != 4 or shape[2] not in (1, height):
        return None
    return consts[0]


def _match(resize, height, graph_outputs):
    """The tail after ``resize``: (pre-conv pointwise nodes, the kxk conv, per-pixel nodes after
    it), or None when the pattern does not hold."""
    pre, post = [], []
    tensor = resize.outputs[0]
    node = _only_consumer(tensor, graph_outputs)
    while node is not None and node.op in UNARY + BINARY:
        if node.inputs[0] is not tensor or (node.op in BINARY and _broadcast_const(node, height) is None):
            return None
        pre.append(node)
        tensor = node.outputs[0]
        node = _only_consumer(tensor, graph_outputs)
    if node is None or node.op != "Conv" or node.inputs[0] is not tensor:
        return None
    conv = node
    kh, kw = conv.inputs[1].shape[2:] if conv.inputs[1].shape else (None, None)
    pads = list(_attr(conv, "pads", [0, 0, 0, 0]))
    if (kh is None or kh % 2 == 0 or list(_attr(conv, "strides", [1, 1])) != [1, 1]
            or list(_attr(conv, "dilations", [1, 1])) != [1, 1] or _attr(conv, "group", 1) != 1
            or pads != [kh // 2, kw // 2, kh // 2, kw // 2] or _attr(conv, "auto_pad", "NOTSET") != "NOTSET"):
        return None
    tensor = conv.outputs[0]
    node = _only_consumer(tensor, graph_outputs)
    while node is not None and node.inputs[0] is tensor and (
            node.op == "Relu" or (node.op == "Conv" and node.inputs[1].shape is not None
                                  and list(node.inputs[1].shape[2:]) == [1, 1]
                                  and list(_attr(node, "pads", [0, 0, 0, 0])) == [0, 0, 0, 0]
                                  and list(_attr(node, "strides", [1, 1])) == [1, 1])):
        post.append(node)
        tensor = node.outputs[0]
        node = _only_consumer(tensor, graph_outputs)
    return pre, conv, post


def _output_size(resize):
    """(H, W) of a Resize whose ``sizes`` ends in constants: a Constant, or the exporter's
    ``Concat(Shape(x)[:2], [H, W])``."""
    if len(resize.inputs) < 4 or resize.inputs[3] is None or resize.inputs[3].name == "":
        return None
    sizes = resize.inputs[3]
    if isinstance(sizes, gs.Constant):
        return tuple(int(v) for v in sizes.values[2:])
    producer = sizes.inputs[0] if sizes.inputs else None
    if producer is not None and producer.op == "Concat" and isinstance(producer.inputs[-1], gs.Constant):
        tail = producer.inputs[-1].values
        if tail.size == 2:
            return int(tail[0]), int(tail[1])
    return None


@register_pass("band-upsampled-convs")
def band_upsampled_convs(graph, *, bands: int = 4):
    """Split every ``Resize(linear, align_corners) -> pointwise -> kxk Conv -> (Relu | 1x1 Conv)*``
    tail at least 4 rows per band high into ``bands`` row bands.

    Preconditions: 4-D NCHW tensors; the Resize's input height is static and its ``sizes`` ends in
    the constants ``[H, W]``; pointwise operands are constants broadcast over rows (dim 2 is 1 or
    H). Never touched: any tail that does not match exactly (it runs as it was), and everything
    else. A band count may grow by one or two to dodge an ORT shortcut (see ``_band_edges``).

    Args:
        graph (gs.Graph): modified in place.
        bands (int): number of row bands (>= 2). Defaults to 4.
    """
    if bands < 2:
        raise QvggtError(f"band-upsampled-convs: bands must be >= 2, got {bands}")
    graph_outputs = {t.name for t in graph.outputs}
    sliced = {}
    for resize in [n for n in graph.nodes if n.op == "Resize"]:
        if _attr(resize, "mode") != "linear" or _attr(resize, "coordinate_transformation_mode") != "align_corners":
            continue
        size = _output_size(resize)
        if size is None or size[0] < 4 * bands:
            continue
        height, width = size
        tail = _match(resize, height, graph_outputs)
        source = resize.inputs[0].shape
        if tail is None or not source or len(source) != 4 or not isinstance(source[2], int):
            continue
        edges = _band_edges(height, bands, source[2], tail[1].inputs[1].shape[2] // 2)
        if edges is None:
            continue
        _band(graph, resize, *tail, height=height, width=width, edges=edges, sliced=sliced)
    return graph.cleanup().toposort()


def _band_edges(height, bands, source_height, halo):
    """Row edges of ``bands`` near-equal bands, such that no band (with its halo) resizes to exactly
    ``source_height`` rows: ONNX Runtime's linear Resize treats an axis whose output and input
    sizes are equal as the identity, ignoring the region of interest. None if that cannot be had."""
    for count in range(bands, bands + 3):
        edges = np.linspace(0, height, count + 1).round().astype(int)
        rows = [min(r1 + halo, height) - max(r0 - halo, 0) for r0, r1 in zip(edges[:-1], edges[1:])]
        if source_height not in rows and min(rows) >= 2:
            return edges
    return None


def _band(graph, resize, pre, conv, post, *, height, width, edges, sliced):
    source = resize.inputs[0]
    final = (post[-1] if post else conv).outputs[0]
    kh = conv.inputs[1].shape[2]
    halo = kh // 2
    prefix = f"{resize.name or 'resize'}/band"
    new = []

    def node(op, inputs, attrs=None, name=None, dtype=np.float32):
        out = gs.Variable(f"{prefix}/{name}_output", dtype=dtype)
        new.append(gs.Node(op, name=f"{prefix}/{name}", inputs=inputs, outputs=[out], attrs=attrs or {}))
        return out

    lead = node("Slice", [node("Shape", [source], name="shape", dtype=np.int64),
                          gs.Constant(f"{prefix}/0", np.array([0], np.int64)),
                          gs.Constant(f"{prefix}/2", np.array([2], np.int64))], name="lead", dtype=np.int64)
    outputs = []
    for b, (r0, r1) in enumerate(zip(edges[:-1], edges[1:])):
        lo, hi = max(r0 - halo, 0), min(r1 + halo, height)
        # tf_crop_and_resize: x_in = start*(h-1) + x*(end-start)*(h-1)/(rows-1); start/end chosen
        # so that x_in = (lo + x)*(h-1)/(H-1), align_corners' coordinate of output row lo + x.
        # The end is nudged down one ulp: a coordinate rounded past h-1 would be extrapolated.
        start, end = lo / (height - 1), (hi - 1) / (height - 1)
        end32 = np.nextafter(np.float32(end), np.float32(0)) if hi == height else np.float32(end)
        roi = gs.Constant(f"{prefix}{b}/roi", np.array([0, 0, start, 0, 1, 1, end32, 1], np.float32))
        sizes = node("Concat", [lead, gs.Constant(f"{prefix}{b}/hw", np.array([hi - lo, width], np.int64))],
                     {"axis": 0}, name=f"{b}/sizes", dtype=np.int64)
        x = node("Resize", [source, roi, gs.Variable.empty(), sizes],
                 {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"}, name=f"{b}/Resize")
        for p in pre:
            inputs = [x]
            if p.op in BINARY:
                const = _broadcast_const(p, height)
                if const.values.ndim == 4 and const.values.shape[2] == height:
                    key = (const.name, lo, hi)  # a constant shared by two tails is sliced once
                    if key not in sliced:
                        sliced[key] = gs.Constant(f"{const.name}/rows{lo}_{hi}",
                                                  np.ascontiguousarray(const.values[:, :, lo:hi]))
                    const = sliced[key]
                inputs.append(const)
            x = node(p.op, inputs, dict(p.attrs), name=f"{b}/{p.op}_{len(new)}")
        pad_w = conv.attrs["pads"][1]
        pads = [halo if r0 == 0 else 0, pad_w, halo if r1 == height else 0, pad_w]
        x = node("Conv", [x, *conv.inputs[1:]], {**conv.attrs, "pads": pads}, name=f"{b}/Conv")
        for p in post:
            x = node(p.op, [x, *p.inputs[1:]], dict(p.attrs), name=f"{b}/{p.op}_{len(new)}")
        outputs.append(x)
    (post[-1] if post else conv).outputs.clear()
    new.append(gs.Node("Concat", name=f"{prefix}/Concat", inputs=outputs, outputs=[final], attrs={"axis": 2}))
    graph.nodes.extend(new)
