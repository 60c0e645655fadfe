"""What an export is asked to do, checked where it is built: :class:`ExportOptions`."""
from __future__ import annotations

from dataclasses import dataclass

from qvggt_deploy.errors import QvggtError

TARGETS = ("ort", "trt")
FLOAT_PRECISIONS = ("fp32", "fp16")
ORT_INT4_FORMS = ("matmulnbits", "qdq")
ORT_INT8_KERNELS = ("qgemm", "matmulnbits")
EXTERNAL_DATA = ("auto", "always", "never")


def _choice(value, choices, flag: str) -> None:
    if value not in choices:
        raise QvggtError(f"{flag} must be one of {', '.join(choices)}, got {value!r}")


@dataclass(frozen=True)
class ExportOptions:
    """The options of one ONNX export (one input size, dynamic frame count).

    Args:
        height (int): input height, a positive multiple of the patch size (checked against the
            model by :meth:`check_model`).
        width (int): input width, likewise.
        target (str): "ort" (CPU, exact fp32 emulation of the fake-quantized model) or "trt"
            (strongly typed QDQ with fp16 Casts). Defaults to "ort".
        frames (int): frames of the tracing input (the exported dim is dynamic). Defaults to 1.
        float_precision (str): precision of Linears the recipe does not list: "fp32" or "fp16".
            Defaults to "fp32".
        ort_int8_activations (bool): ``--target ort``: INT4 layers with int8 activations (faster,
            not exact). Defaults to False.
        ort_int8_kernel (str): with ``ort_int8_activations``: "qgemm" (W8A8, dynamic per-tensor,
            ``DynamicQuantizeMatMul``) or "matmulnbits" (W4A8, ``MatMulNBits`` accuracy level 4).
            Defaults to "qgemm".
        ort_int8_special_bypass (bool): with "qgemm", the special tokens of the ViT and aggregator
            blocks bypass the int8 GEMM. Defaults to True.
        ort_int4 (str): ``--target ort``: INT4 as "matmulnbits" or left as "qdq". Defaults to
            "matmulnbits".
        trt_plugin (bool): ``--target trt``: INT4 GEMMs become W4A16 plugin nodes. Defaults to False.
        conv_precision (str): DPT conv weights "fp32" or rounded to "fp16". Defaults to "fp32".
        calibration_graph (bool): float activations plus one ``<layer>.calib_input`` output per
            token-filtered layer (``--target ort`` and a recipe). Defaults to False.
        external_data (str): "auto" (external above ~1.8 GB), "always" or "never". Defaults to "auto".
        dense_loop (bool): the DPT heads frame by frame in a Loop (``--target ort``). Defaults to False.
        free_weights (bool): write the float Linear weights before tracing and release them from
            the model (unusable afterwards). Defaults to False.

    Raises:
        QvggtError: a value out of range or options that do not go together (one sentence).
    """

    height: int
    width: int
    target: str = "ort"
    frames: int = 1
    float_precision: str = "fp32"
    ort_int8_activations: bool = False
    ort_int8_kernel: str = "qgemm"
    ort_int8_special_bypass: bool = True
    ort_int4: str = "matmulnbits"
    trt_plugin: bool = False
    conv_precision: str = "fp32"
    calibration_graph: bool = False
    external_data: str = "auto"
    dense_loop: bool = False
    free_weights: bool = False

    def __post_init__(self):
        if self.target not in TARGETS:
            raise QvggtError(f"unknown target {self.target!r}; choose one of {', '.join(TARGETS)}")
        _choice(self.float_precision, FLOAT_PRECISIONS, "--float-precision")
        _choice(self.conv_precision, FLOAT_PRECISIONS, "--conv-precision")
        _choice(self.ort_int4, ORT_INT4_FORMS, "--ort-int4")
        _choice(self.ort_int8_kernel, ORT_INT8_KERNELS, "--ort-int8-kernel")
        _choice(self.external_data, EXTERNAL_DATA, "--external-data")
        if self.ort_int8_activations and self.ort_int4 != "matmulnbits":
            raise QvggtError("--ort-int8-activations needs --ort-int4 matmulnbits (a QDQ graph follows the session's "
                             "accuracy level instead)")
        if self.target != "ort" and (self.ort_int8_activations or self.ort_int4 != "matmulnbits"):
            raise QvggtError("--ort-int8-activations/--ort-int4 apply to --target ort only")
        if self.target != "trt" and self.trt_plugin:
            raise QvggtError("--trt-plugin applies to --target trt only")
        if self.dense_loop and self.target != "ort":
            raise QvggtError("--dense-loop is for --target ort (TensorRT plans the batched heads itself; its lint and "
                             "memory model read the main graph only)")
        if self.calibration_graph and self.target != "ort":
            raise QvggtError("--calibration-graph needs --target ort and a --recipe (its token_filter layers)")
        if self.frames < 1:
            raise QvggtError(f"--frames must be at least 1, got {self.frames}")
        if self.height <= 0 or self.width <= 0:
            raise QvggtError(f"--height/--width {self.height}x{self.width} must be positive")

    @property
    def qgemm(self) -> bool:
        """INT4 layers run as int8 ``DynamicQuantizeMatMul`` (W8A8)."""
        return self.ort_int8_activations and self.ort_int8_kernel == "qgemm"

    @property
    def accuracy_level(self) -> int:
        """``MatMulNBits`` accuracy level: 4 (int8 activations, W4A8) or 0 (exact)."""
        return 4 if self.ort_int8_activations and not self.qgemm else 0

    def check_model(self, patch_size: int, has_recipe: bool) -> None:
        """What needs the model and the recipe: the size fits the patch, a calibration graph has a recipe."""
        if self.height % patch_size or self.width % patch_size:
            raise QvggtError(f"--height/--width {self.height}x{self.width} must be positive multiples of the patch "
                             f"size {patch_size}")
        if self.calibration_graph and not has_recipe:
            raise QvggtError("--calibration-graph needs --target ort and a --recipe (its token_filter layers)")
