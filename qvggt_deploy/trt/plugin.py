"""The graph-to-plugin contract: do the W4A16 plugin nodes of an exported graph match what the
TensorRT plugin registers?

TensorRT's ONNX parser (10.x ``FallbackPluginImporter``) turns a node it has no importer for into
a plugin: it looks up the creator by the node's ``op_type`` (the plugin name), its
``plugin_version`` attribute (default "1") and ``plugin_namespace`` attribute (default ""), and
passes the node's attributes as plugin fields (INT attributes as ``kINT32``; a field the node
lacks only gets a warning). A mismatch therefore fails late, on the Jetson, as "Plugin not found"
or as a plugin built with a default field. :func:`check_plugin_nodes` catches it on any machine.

The constants live in :mod:`qvggt_deploy.ops.plugin_contract` (``OP_TYPE``, ``PLUGIN_VERSION``,
``PLUGIN_NAMESPACE``, ``ATTRIBUTES``, ``INPUTS``, ``check_node_attrs`` for the kernel's shape
limits); :func:`load_contract` reads them into a :class:`PluginContract`.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from qvggt_deploy.errors import QvggtError

CONTRACT_MODULE = "qvggt_deploy.ops.plugin_contract"
INT32_MAX = 2 ** 31 - 1
#: Attributes the parser consumes itself (not plugin fields).
PARSER_ATTRIBUTES = ("plugin_version", "plugin_namespace")


@dataclass(frozen=True)
class PluginContract:
    """What the plugin registers and which node attributes/inputs it expects."""

    name: str
    version: str = "1"
    namespace: str = ""
    attributes: Tuple[str, ...] = ("group_size", "in_features", "out_features", "has_bias")
    inputs: Tuple[str, ...] = ("input", "qweight", "scales", "bias")
    #: the contract module's own field check (kernel shape limits), ``f(attrs, node_name)`` raising
    #: QvggtError; None when the contract has none.
    check_attrs: Optional[Callable] = None


def load_contract(module_name: str = CONTRACT_MODULE) -> PluginContract:
    """Read the contract constants of ``module_name`` (QvggtError if it cannot be imported)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise QvggtError(f"the plugin contract {module_name} is not available here ({exc})") from exc
    return PluginContract(name=str(module.OP_TYPE), version=str(module.PLUGIN_VERSION),
                          namespace=str(module.PLUGIN_NAMESPACE), attributes=tuple(module.ATTRIBUTES),
                          inputs=tuple(getattr(i, "name", i) for i in module.INPUTS),
                          check_attrs=getattr(module, "check_node_attrs", None))


def _attr(node, name):
    for a in node.attribute:
        if a.name == name:
            return a
    return None


def _initializer(graph, name: str):
    return next((init for init in graph.initializer if init.name == name), None)


def check_plugin_nodes(model, contract: PluginContract) -> List[str]:
    """Problems with the plugin nodes of ``model`` (an ``onnx.ModelProto``); [] when all match.

    Checks per node of ``op_type == contract.name``: ``plugin_version``/``plugin_namespace`` as the
    parser will read them; every contract attribute present as an INT within int32 (``has_bias``
    0/1); ``group_size`` divides ``in_features``; the input count (bias only with ``has_bias``);
    and where the packed weight and scales are initializers, their sizes: ``out * in / 2`` bytes of
    INT4 and ``out * in / group_size`` fp16 scales (sizes, not shapes: the kernel's packed layout
    is its own, see kernels/w4a16_gemm.cu).
    """
    import onnx

    from qvggt_deploy.graph.walk import ONNX_DTYPE_BYTES

    problems: List[str] = []
    for node in model.graph.node:
        if node.op_type != contract.name:
            continue
        where = f"plugin node {node.name or '<unnamed>'}"
        version = _attr(node, "plugin_version")
        got_version = version.s.decode() if version is not None else "1"
        if got_version != contract.version:
            problems.append(f"{where}: plugin_version {got_version!r}, the plugin registers {contract.version!r}")
        namespace = _attr(node, "plugin_namespace")
        got_ns = namespace.s.decode() if namespace is not None else ""
        if got_ns != contract.namespace:
            problems.append(f"{where}: plugin_namespace {got_ns!r}, the plugin registers {contract.namespace!r}")
        values: Dict[str, int] = {}
        for name in contract.attributes:
            a = _attr(node, name)
            if a is None:
                problems.append(f"{where}: attribute {name} missing (TensorRT would only warn and use a default)")
            elif a.type != onnx.AttributeProto.INT:
                problems.append(f"{where}: attribute {name} must be an INT (plugin field kINT32), got "
                                f"{onnx.AttributeProto.AttributeType.Name(a.type)}")
            elif not 0 <= a.i <= INT32_MAX:
                problems.append(f"{where}: attribute {name}={a.i} does not fit int32")
            else:
                values[name] = int(a.i)
        extra = [a.name for a in node.attribute if a.name not in contract.attributes and a.name not in PARSER_ATTRIBUTES]
        if extra:
            problems.append(f"{where}: attributes {extra} are not plugin fields of {contract.name}")
        k, n, g = values.get("in_features"), values.get("out_features"), values.get("group_size")
        if k and g and k % g:
            problems.append(f"{where}: group_size {g} does not divide in_features {k}")
        if "has_bias" in values and values["has_bias"] not in (0, 1):
            problems.append(f"{where}: has_bias must be 0 or 1, got {values['has_bias']}")
        if contract.check_attrs is not None and len(values) == len(contract.attributes):
            try:
                contract.check_attrs(values, node.name)
            except QvggtError as exc:
                problems.append(f"{where}: {exc}")
        n_inputs = len([i for i in node.input if i])
        bias = values.get("has_bias", 1 if n_inputs == len(contract.inputs) else 0)
        want = len(contract.inputs) - (0 if bias else 1)
        if n_inputs != want:
            problems.append(f"{where}: {n_inputs} inputs, the plugin takes {want} ({', '.join(contract.inputs[:want])})")
        if k and n and g and len(node.input) >= 3:
            qweight, scales = _initializer(model.graph, node.input[1]), _initializer(model.graph, node.input[2])
            if qweight is not None:
                nbytes = math.prod(qweight.dims) * ONNX_DTYPE_BYTES.get(qweight.data_type, 0)
                if nbytes != n * k // 2:
                    problems.append(f"{where}: packed weight {qweight.name} holds {nbytes:g} bytes, expected "
                                    f"{n * k // 2} for out_features {n} x in_features {k} at 4 bits")
            if scales is not None:
                numel = math.prod(scales.dims)
                if numel != n * (k // g):
                    problems.append(f"{where}: scales {scales.name} hold {numel} values, expected {n * (k // g)} "
                                    f"(out_features {n} x in_features {k} / group_size {g})")
    return problems


def count_plugin_nodes(model, contract: PluginContract) -> int:
    return sum(1 for node in model.graph.node if node.op_type == contract.name)
