"""Custom operators: the W4A16 GEMM kernel's layout, binding, CPU reference and ``W4A16Linear``,
and the TensorRT plugin contract.

Submodules import only torch and numpy; the kernel library is loaded on first use
(:func:`qvggt_deploy.ops.w4a16.load_library`).
"""
