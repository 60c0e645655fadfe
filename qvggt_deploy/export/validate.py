"""Structural checks of an ONNX file before it is linted, planned or built.

``onnx.load(load_external_data=False)`` accepts a 0-byte file (an empty ModelProto) and never
looks at the external-data file, so tools that read only the headers passed a broken file. These
checks are cheap (headers and file sizes only): a non-empty graph with inputs and outputs, every
tensor's bytes present (inline, or in an external file inside the model's folder, with the
length its dtype and shape need), and the ``qvggt.*`` metadata where a command relies on it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.graph.metadata import PREFIX, proto_metadata
from qvggt_deploy.graph.walk import ONNX_DTYPE_BYTES, iter_graphs
from qvggt_deploy.lazy import import_or_raise


def _tensors(model) -> Iterable:
    for g in iter_graphs(model.graph):
        yield from g.initializer
        for node in g.node:
            for attr in node.attribute:
                if attr.name == "value" and attr.HasField("t"):
                    yield attr.t


def tensor_bytes(t) -> Optional[int]:
    """Bytes a tensor's data must have (INT4 packed two per byte); None for dtypes without a width."""
    per = ONNX_DTYPE_BYTES.get(t.data_type)
    if per is None:
        return None
    numel = math.prod(t.dims) if t.dims else 1
    return int(math.ceil(numel * per))


def check_external_data(model, base_dir: Path, path: Path) -> None:
    """Every external tensor's file exists inside ``base_dir`` and holds ``offset + length`` bytes."""
    sizes: Dict[str, int] = {}
    base = base_dir.resolve()
    for t in _tensors(model):
        if t.data_location != 1:  # TensorProto.EXTERNAL
            if t.HasField("raw_data"):
                need = tensor_bytes(t)
                if need is not None and len(t.raw_data) != need:
                    raise QvggtError(f"{path}: tensor {t.name} holds {len(t.raw_data)} bytes, its shape "
                                     f"{list(t.dims)} needs {need}")
            continue
        info = {e.key: e.value for e in t.external_data}
        location = info.get("location")
        if not location:
            raise QvggtError(f"{path}: tensor {t.name} is external but names no file")
        target = (base / location).resolve()
        if base not in target.parents:
            raise QvggtError(f"{path}: tensor {t.name} points outside the model's folder ({location})")
        if location not in sizes:
            if not target.is_file():
                raise QvggtError(f"{path}: external data file {target.name} is missing (tensor {t.name})")
            sizes[location] = target.stat().st_size
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else None
        except ValueError:
            raise QvggtError(f"{path}: tensor {t.name} has a malformed offset/length") from None
        need = tensor_bytes(t)
        if length is not None and need is not None and length != need:
            raise QvggtError(f"{path}: tensor {t.name} is stored as {length} bytes, its shape {list(t.dims)} "
                             f"needs {need}")
        end = offset + (length if length is not None else need or 0)
        if end > sizes[location]:
            raise QvggtError(f"{path}: external data file {target.name} is truncated ({sizes[location]} bytes, "
                             f"tensor {t.name} ends at byte {end})")


def load_checked(path, require_metadata: Tuple[str, ...] = ()) -> Tuple[object, Dict[str, str]]:
    """Load an ONNX file's headers and check it (see the module docstring).

    Args:
        path: the ``.onnx`` file.
        require_metadata: ``qvggt.*`` keys the caller relies on (without the prefix).

    Returns:
        (the ModelProto without external data, the qvggt metadata without the prefix).
    """
    onnx = import_or_raise("onnx")
    path = Path(path)
    if not path.is_file():
        raise QvggtError(f"ONNX file not found: {path}")
    if path.stat().st_size == 0:
        raise QvggtError(f"{path}: empty file (0 bytes), not an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises its own types
        raise QvggtError(f"{path}: not a readable ONNX file ({str(exc).splitlines()[0] if str(exc) else exc})") from None
    if len(model.graph.node) == 0:
        raise QvggtError(f"{path}: the graph has no nodes (an empty or non-ONNX file)")
    if not model.graph.input or not model.graph.output:
        raise QvggtError(f"{path}: the graph has no {'inputs' if not model.graph.input else 'outputs'}")
    check_external_data(model, path.parent, path)
    metadata = proto_metadata(model, str(path))
    missing = [k for k in require_metadata if k not in metadata]
    if missing:
        raise QvggtError(f"{path}: not a qvggt export (metadata {PREFIX}{missing[0]} missing); make it with "
                         f"`qvggt export`")
    return model, metadata
