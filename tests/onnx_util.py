"""Tiny ONNX graphs built in code, and a runner, for the export and pass tests."""
from __future__ import annotations

import numpy as np


def ort_run(model_or_graph, feeds, accuracy_level: int = 0):
    """Run an ONNX ModelProto or gs.Graph on ONNX Runtime (CPU), INT4 QDQ kept exact."""
    import onnx_graphsurgeon as gs
    import onnxruntime as ort

    model = gs.export_onnx(model_or_graph) if isinstance(model_or_graph, gs.Graph) else model_or_graph
    so = ort.SessionOptions()
    so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", str(accuracy_level))
    from qvggt_deploy.backends.onnxrt.loader import DISABLED_OPTIMIZERS

    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(DISABLED_OPTIMIZERS))
    return sess.run(None, feeds)


def int4_weights(K: int, N: int, group: int, seed: int = 0):
    """(q int8 [N, K] in [-8, 7], scales fp32 [N, K/group] holding fp16 values, dequantised W [N, K])."""
    import torch

    from qvggt_deploy.quant import quantizer

    g = torch.Generator().manual_seed(seed)
    w = torch.randn(N, K, generator=g) * 0.05
    s = quantizer.compute_scales(w, 4, group)
    q = quantizer.quantize(w, s, 4, group)
    return q.numpy(), s.numpy(), quantizer.dequantize(q, s, group).numpy()


def int4_matmul_graph(K: int, N: int, group: int, *, bias: bool = True, dtype=np.float32, seed: int = 0,
                      uses: int = 1, opset: int = 21):
    """``y_i = x @ DQ(q, s) (+ b)`` for i < uses (one weight shared by ``uses`` MatMuls), as gs.Graph.

    Returns (graph, dequantised W [N, K] fp32, bias [N] or None).
    """
    import onnx_graphsurgeon as gs

    from qvggt_deploy.graph.tensors import TensorStore

    q, s, wd = int4_weights(K, N, group, seed)
    store = TensorStore()
    qc = store.add_int4("w.qweight", q.T)
    sc = store.add("w.scales", s.T.astype(dtype))
    b = np.random.default_rng(seed).standard_normal(N).astype(np.float32) * 0.1 if bias else None
    bc = store.add("w.bias", b.astype(dtype)) if bias else None
    x = gs.Variable("x", dtype=dtype, shape=["batch", 7, K])
    nodes, outputs = [], []
    for i in range(uses):
        wv = gs.Variable(f"w_{i}", dtype=dtype)
        nodes.append(gs.Node("DequantizeLinear", name=f"layer{i}/DequantizeLinear", inputs=[qc, sc], outputs=[wv],
                             attrs={"axis": 0, "block_size": group}))
        mm = gs.Variable(f"mm_{i}", dtype=dtype)
        nodes.append(gs.Node("MatMul", name=f"layer{i}/MatMul", inputs=[x, wv], outputs=[mm]))
        if bias:
            y = gs.Variable(f"y_{i}", dtype=dtype, shape=["batch", 7, N])
            nodes.append(gs.Node("Add", name=f"layer{i}/Add", inputs=[mm, bc], outputs=[y]))
        else:
            y = mm
            y.shape = ["batch", 7, N]
        outputs.append(y)
    graph = gs.Graph(nodes=nodes, inputs=[x], outputs=outputs, opset=opset)
    return graph, wd, b
