import numpy as np
import onnx_graphsurgeon as gs
import pytest
import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.passes.lower_linears import LinearLowering
from qvggt_deploy.passes import get_pass
from qvggt_deploy.quant import quantizer
from qvggt_deploy.quant.fake import QuantLinear
from tests.onnx_util import ort_run

K, N, G = 64, 24, 32


def marker_graph(calls=1):
    x = gs.Variable("x", dtype=np.float32, shape=[2, 5, K])
    nodes, outs = [], []
    for i in range(calls):
        y = gs.Variable(f"y{i}", dtype=np.float32, shape=[2, 5, N])
        nodes.append(gs.Node("Linear", domain="qvggt", name=f"m{i}", inputs=[x], outputs=[y],
                             attrs={"layer": "fc", "out_features": N}))
        outs.append(y)
    return gs.Graph(nodes=nodes, inputs=[x], outputs=outs, opset=21)


def layer(precision):
    lin = torch.nn.Linear(K, N)
    torch.nn.init.normal_(lin.weight, std=0.05)
    if precision in ("fp32", "fp16"):
        q = QuantLinear.from_linear(lin, precision)
        spec = LinearLowering(precision, K, N, weight=q.weight.numpy(), bias=q.bias.numpy())
    else:
        bits = 4 if precision.startswith("w4") else 8
        s = quantizer.compute_scales(lin.weight, bits, G)
        act = dict(abits=8, act_granularity="per_tensor", act_scale=0.02) if precision.endswith("a8") else {}
        q = QuantLinear.from_linear(lin, precision, bits, G, s, **act)
        spec = LinearLowering(precision, K, N, bias=q.bias.numpy(), qweight=lambda: q.qweight.numpy(),
                              scales=q.scales.numpy(), group=G, **act)
    return q, spec


@pytest.mark.parametrize("precision", ["fp32", "fp16", "w4a16", "w8a16", "w8a8", "w4a8"])
def test_ort_lowering_equals_quantlinear(precision):
    module, spec = layer(precision)
    graph = marker_graph()
    get_pass("lower-linears")(graph, plan={"fc": spec}, target="ort")
    x = torch.randn(2, 5, K, generator=torch.Generator().manual_seed(1))
    (y,) = ort_run(graph, {"x": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(y, module(x).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("precision", ["fp16", "w4a16", "w8a8"])
def test_trt_lowering_is_fp16_between_casts(precision):
    module, spec = layer(precision)
    graph = marker_graph()
    get_pass("lower-linears")(graph, plan={"fc": spec}, target="trt")
    mm = next(n for n in graph.nodes if n.op == "MatMul")
    assert all(np.dtype(t.dtype) == np.float16 for t in mm.inputs)
    assert graph.nodes[-1].op == "Cast" and graph.nodes[-1].attrs["to"] == 1
    x = torch.randn(2, 5, K, generator=torch.Generator().manual_seed(1))
    (y,) = ort_run(graph, {"x": x.numpy()})
    with torch.no_grad():
        ref = module(x).numpy()
    assert np.abs(y - ref).max() < 2e-2 * max(np.abs(ref).max(), 1)


def test_repeated_calls_share_constants_and_bad_plans_fail():
    _, spec = layer("w4a16")
    graph = marker_graph(calls=3)
    get_pass("lower-linears")(graph, plan={"fc": spec})
    dqs = [n for n in graph.nodes if n.op == "DequantizeLinear"]
    assert len(dqs) == 3 and len({n.inputs[0].name for n in dqs}) == 1
    assert len({n.name for n in graph.nodes}) == len(graph.nodes)  # unique node names
    with pytest.raises(QvggtError, match="no entry in the precision plan"):
        get_pass("lower-linears")(marker_graph(), plan={})
    with pytest.raises(QvggtError, match="unknown export target"):
        get_pass("lower-linears")(marker_graph(), plan={"fc": spec}, target="coreml")
