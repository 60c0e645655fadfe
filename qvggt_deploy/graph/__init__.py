"""The low layer: ONNX contracts shared by the exporter, the graph passes, the backends and TensorRT.

Model I/O names (:mod:`.io`), weights in ONNX form and the INT4 byte layout (:mod:`.tensors`), the
one INT4 ``DequantizeLinear + MatMul`` matcher (:mod:`.int4`), the marker ops the trace emits
(:mod:`.markers`), subgraph walking (:mod:`.walk`) and the ``qvggt.*`` metadata
(:mod:`.metadata`). Nothing here imports a higher package of ``qvggt_deploy``.
"""
