import pytest

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.passes import get_pass, list_passes, register_pass
from qvggt_deploy.passes.registry import PassRunner
from tests.onnx_util import int4_matmul_graph

EXPECTED = {"cleanup", "fold-constants", "drop-filtered-tokens", "dedupe-constants", "fp16-conv-weights", "lower-attention", "lower-linears", "bypass-special-tokens", "int4-to-matmulnbits", "w4a16-plugin"}


def test_every_pass_is_registered_and_documented():
    assert EXPECTED <= set(list_passes())
    for name in list_passes():
        fn = get_pass(name)
        assert fn.pass_name == name
        assert "Preconditions" in (fn.__doc__ or ""), f"{name}: docstring must state preconditions"


def test_unknown_pass_and_double_registration():
    with pytest.raises(QvggtError, match="unknown graph pass"):
        get_pass("no-such-pass")
    with pytest.raises(ValueError, match="already registered"):
        register_pass("cleanup")(lambda graph: graph)


def test_runner_records_names_and_cleanup_drops_dead_nodes():
    graph, _, _ = int4_matmul_graph(64, 16, 32, uses=2)
    graph.outputs = graph.outputs[:1]
    runner = PassRunner(graph)
    runner.run("cleanup")
    assert runner.names == ["cleanup"]
    assert len(runner.graph.nodes) == 3
