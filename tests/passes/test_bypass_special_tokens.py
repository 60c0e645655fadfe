import numpy as np
import onnx_graphsurgeon as gs
import pytest
import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.passes import get_pass
from qvggt_deploy.quant.fake import fake_quant_activation, special_token_mask
from tests.onnx_util import ort_run


def act_quant_graph(scale: float, layers=("a", "b")):
    """x -> [Q/DQ per layer] -> Relu, one quantizer per layer name; plus a weight Q/DQ."""
    x = gs.Variable("x", dtype=np.float32, shape=[1, "L", 8])
    s = gs.Constant("s", np.array(scale, np.float32))
    zp = gs.Constant("zp", np.array(0, np.int8))
    nodes, outs = [], []
    for name in layers:
        q = gs.Variable(f"{name}_q", dtype=np.int8)
        d = gs.Variable(f"{name}_dq", dtype=np.float32)
        y = gs.Variable(f"{name}_y", dtype=np.float32, shape=[1, "L", 8])
        nodes += [gs.Node("QuantizeLinear", name=f"{name}/input_quantizer/QuantizeLinear", inputs=[x, s, zp], outputs=[q]),
                  gs.Node("DequantizeLinear", name=f"{name}/input_quantizer/DequantizeLinear", inputs=[q, s, zp], outputs=[d]),
                  gs.Node("Relu", name=f"{name}/Relu", inputs=[d], outputs=[y])]
        outs.append(y)
    wq = gs.Constant("wq", np.arange(8, dtype=np.int8))
    wd = gs.Variable("wd", dtype=np.float32, shape=[8])
    nodes.append(gs.Node("DequantizeLinear", name="weight/DequantizeLinear", inputs=[wq, s, zp], outputs=[wd]))
    return gs.Graph(nodes=nodes, inputs=[x], outputs=outs + [wd], opset=21)


@pytest.mark.parametrize("frames", [1, 3])
def test_special_tokens_skip_the_quantizer(frames):
    tpf, special = 7, 5
    x = torch.randn(1, frames * tpf, 8)
    scale = float(x.abs().max()) / 127 * 4  # coarse: quantization is visible
    graph = act_quant_graph(scale)
    get_pass("bypass-special-tokens")(graph, tokens_per_frame=tpf, num_special=special)
    a, b, w = ort_run(graph, {"x": x.numpy()})
    xq = fake_quant_activation(x, 8, "per_tensor", scale)
    mask = special_token_mask(x.shape[1], tpf, special)
    expected = torch.relu(torch.where(mask[:, None], x, xq)).numpy()
    np.testing.assert_array_equal(a, expected)
    np.testing.assert_array_equal(b, expected)
    np.testing.assert_array_equal(w, np.arange(8, dtype=np.float32) * np.float32(scale))  # weight DQ untouched


def test_layers_selects_quantizers():
    graph = act_quant_graph(0.05)
    get_pass("bypass-special-tokens")(graph, tokens_per_frame=7, layers=["b"])
    wheres = [n for n in graph.nodes if n.op == "Where"]
    assert len(wheres) == 1 and wheres[0].name.startswith("b/")
    assert graph.nodes == graph.toposort().nodes


@pytest.mark.parametrize("tpf,special", [(0, 5), (4, 5), (7, 0)])
def test_bad_layout(tpf, special):
    with pytest.raises(QvggtError, match="num_special"):
        get_pass("bypass-special-tokens")(act_quant_graph(0.1), tokens_per_frame=tpf, num_special=special)
