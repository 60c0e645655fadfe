"""qvggt-deploy: QVGGT post-training quantization of VGGT and its deployment through ONNX,
ONNX Runtime and TensorRT.

Heavy optional dependencies (onnxruntime, onnx_graphsurgeon, polygraphy, tensorrt, CUDA bindings)
are imported lazily through :mod:`qvggt_deploy.lazy`, so ``import qvggt_deploy`` needs only torch
and numpy.
"""

__version__ = "0.1.0"
