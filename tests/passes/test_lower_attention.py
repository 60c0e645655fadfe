import numpy as np
import onnx_graphsurgeon as gs
import pytest
import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.passes import get_pass
from tests.onnx_util import ort_run


def marker_graph(heads=2, dim=8, attrs=True):
    q, k, v = (gs.Variable(n, dtype=np.float32, shape=["b", heads, "l", dim]) for n in "qkv")
    y = gs.Variable("y", dtype=np.float32, shape=["b", heads, "l", dim])
    node = gs.Node("Attention", domain="qvggt", name="blk.attn/Attention", inputs=[q, k, v], outputs=[y],
                   attrs={"num_heads": heads, "head_dim": dim} if attrs else {})
    return gs.Graph(nodes=[node], inputs=[q, k, v], outputs=[y], opset=21)


@pytest.mark.parametrize("fused", [None, "ort"])
def test_lowered_attention_is_sdpa(fused):
    graph = marker_graph()
    get_pass("lower-attention")(graph, fused=fused)
    ops = {n.op for n in graph.nodes}
    assert ("MultiHeadAttention" in ops) == (fused == "ort") and "Attention" not in ops
    feeds = {n: torch.randn(1, 2, 11, 8, generator=torch.Generator().manual_seed(i)) for i, n in enumerate("qkv")}
    (y,) = ort_run(graph, {k: v.numpy() for k, v in feeds.items()})
    ref = torch.nn.functional.scaled_dot_product_attention(feeds["q"], feeds["k"], feeds["v"])
    np.testing.assert_allclose(y, ref.numpy(), rtol=1e-5, atol=1e-6)


def test_marker_without_shape_attributes_is_refused():
    with pytest.raises(QvggtError, match="num_heads/head_dim"):
        get_pass("lower-attention")(marker_graph(attrs=False))
    with pytest.raises(QvggtError, match="fused"):
        get_pass("lower-attention")(marker_graph(), fused="trt")
