"""qvggt-deploy: post-training quantization (QVGGT) and deployment of VGGT through ONNX,
ONNX Runtime and TensorRT."""
from setuptools import find_packages, setup

setup(
    name="qvggt-deploy",
    version="0.1.0",
    description="QVGGT post-training quantization and ONNX/ORT/TensorRT deployment of VGGT",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["qvggt_deploy", "qvggt_deploy.*"]),
    package_data={"qvggt_deploy": ["assets/*"]},
    include_package_data=True,
    # torch is pinned by the Makefile's install step (torch==2.13.0, a CPU wheel); here we only
    # state the range we support so that JetPack's own torch build also satisfies it.
    install_requires=[
        "torch>=2.3",
        "numpy>=1.24",
        "safetensors>=0.4",
        "pillow>=10",
        "tqdm>=4.60",
        "pyyaml>=6",
        "matplotlib>=3.7",
        "onnx>=1.17",
        "onnxruntime>=1.20",
        "onnx-graphsurgeon>=0.5",
        "polygraphy>=0.49",
        "onnxscript>=0.2",
        "trimesh>=4",  # qvggt infer --format glb (pure Python + numpy)
    ],
    extras_require={
        "dev": ["pytest>=8", "pycolmap>=3.10"],  # pycolmap reads the COLMAP models back in tests
        # Only where CUDA exists (Jetson / desktop GPU); tensorrt comes with JetPack.
        # cuda-bindings 13.x needs a CUDA 13 driver; JetPack 6 ships CUDA 12.6.
        "cuda": ["cuda-bindings>=12.6,<13"],
        "hub": ["huggingface_hub>=0.24"],  # --checkpoint owner/name from the Hugging Face Hub
    },
    entry_points={"console_scripts": ["qvggt=qvggt_deploy.cli.main:main"]},
)
