"""``W4A16Linear``: an ``nn.Linear`` replacement holding INT4 weights in the kernel's layout.

On CUDA tensors it calls the W4A16 kernel (:mod:`qvggt_deploy.ops.w4a16`); on CPU it runs the
reference of the same arithmetic (:mod:`qvggt_deploy.ops.reference`), so models converted here
are testable without a GPU. Activations are rounded to fp16 on the way in and the result is
returned in the input's dtype (VGGT's heads run in fp32 around it).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.ops import reference
from qvggt_deploy.ops.layout import kernel_shape_error, repack_for_kernel

# name -> (canonical qweight uint8 [N, K/2], scales fp16 [N, K/group], group): what the
# calibration recipe's weights.safetensors provides.
LayerWeights = Tuple[torch.Tensor, torch.Tensor, int]
# "table": the dispatch table (qvggt_deploy/ops/w4a16_dispatch.json) for the input's GPU; an int:
# that many rows; None: always the fused kernel.
CublasMinM = Union[int, str, None]
TABLE = "table"


class W4A16Linear(nn.Module):
    """``y = x @ W^T + b`` with W stored as INT4 + fp16 group scales (kernel layout).

    Buffers: ``qweight`` int32 ``[K/64, 8*N]``, ``scales`` fp16 ``[K/group, N]``, ``bias`` fp16
    ``[N]`` or None (LAYOUT block of ``kernels/w4a16_gemm.cu``).

    Args:
        in_features (int): K, a multiple of 64.
        out_features (int): N, a multiple of 16.
        group (int): input channels per scale, a multiple of 32 dividing K.
        bias (bool): whether a bias buffer exists. Defaults to True.
        cublas_min_m (int, "table" or None): on CUDA, from how many rows on the weights are
            dequantised with the library's kernel and multiplied by cuBLAS (``F.linear`` in fp16)
            instead of running the fused kernel. ``"table"``: the dispatch table's threshold for
            this GPU and shape (:mod:`qvggt_deploy.ops.dispatch`); None: always fused. Defaults
            to ``"table"``.
    """

    def __init__(self, in_features: int, out_features: int, group: int, bias: bool = True,
                 cublas_min_m: CublasMinM = TABLE, device=None):
        super().__init__()
        reason = kernel_shape_error(out_features, in_features, group)
        if reason is not None:
            raise QvggtError(f"W4A16Linear({in_features} -> {out_features}, group {group}): {reason}")
        if not (cublas_min_m is None or cublas_min_m == TABLE or (isinstance(cublas_min_m, int) and cublas_min_m > 0)):
            raise QvggtError(f"W4A16Linear: cublas_min_m must be a positive int, {TABLE!r} or None, got {cublas_min_m!r}")
        self.in_features, self.out_features, self.group = in_features, out_features, group
        self.cublas_min_m = cublas_min_m
        self._table_thresholds: Dict[int, Optional[int]] = {}  # device index -> the table's threshold
        self.register_buffer("qweight", torch.zeros(in_features // 64, 8 * out_features, dtype=torch.int32,
                                                    device=device))
        self.register_buffer("scales", torch.zeros(in_features // group, out_features, dtype=torch.float16,
                                                   device=device))
        self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float16, device=device) if bias else None)

    @classmethod
    def from_quantized(cls, qweight: torch.Tensor, scales: torch.Tensor, bias: Optional[torch.Tensor], group: int,
                       cublas_min_m: CublasMinM = TABLE) -> "W4A16Linear":
        """Build from canonical INT4 weights (``qvggt_deploy/quant/quantizer.py``).

        Args:
            qweight (Tensor): uint8 ``[N, K/2]`` (low nibble = even k, q + 8).
            scales (Tensor): fp16 ``[N, K/group]``.
            bias (Tensor, optional): ``[N]``, any float dtype (stored as fp16).
            group (int): input channels per scale.
        """
        if qweight.dim() != 2:
            raise QvggtError(f"qweight must be uint8 [N, K/2], got shape {tuple(qweight.shape)}")
        n, k = qweight.shape[0], qweight.shape[1] * 2
        module = cls(k, n, group, bias=bias is not None, cublas_min_m=cublas_min_m, device=qweight.device)
        qweight_dev, scales_dev = repack_for_kernel(qweight, scales, group)
        module.qweight.copy_(qweight_dev)
        module.scales.copy_(scales_dev)
        if bias is not None:
            if tuple(bias.shape) != (n,):
                raise QvggtError(f"bias shape {tuple(bias.shape)} does not match out_features {n}")
            module.bias.copy_(bias.detach().to(torch.float16))
        return module

    @classmethod
    def from_float(cls, linear: nn.Linear, group: int, clip: float = 1.0, **kwargs) -> "W4A16Linear":
        """Round-to-nearest INT4 of ``linear`` with the canonical quantizer, then :meth:`from_quantized`."""
        qweight, scales = quantize_linear(linear, group, clip)
        return cls.from_quantized(qweight, scales, linear.bias, group, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise QvggtError(f"W4A16Linear expects [..., {self.in_features}] inputs, got {tuple(x.shape)}")
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if x.is_cuda:
            from qvggt_deploy.ops import w4a16

            x16 = x2.to(torch.float16)
            threshold = self.threshold_for(x.device)
            if threshold is not None and x2.shape[0] >= threshold:
                w = w4a16.dequantize(self.qweight, self.scales, self.group)
                y = F.linear(x16, w, self.bias)
            else:
                y = w4a16.gemm(x16, self.qweight, self.scales, self.bias, self.group, algo="fused")
        else:
            y = reference.w4a16_gemm_reference(x2, self.qweight, self.scales, self.bias, self.group)
        return y.reshape(*lead, self.out_features).to(x.dtype)

    def threshold_for(self, device: torch.device) -> Optional[int]:
        """Rows from which this layer takes the dequantise + cuBLAS route on ``device`` (None: never)."""
        if self.cublas_min_m != TABLE:
            return self.cublas_min_m
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index not in self._table_thresholds:
            from qvggt_deploy.ops.dispatch import cublas_min_m

            major, minor = torch.cuda.get_device_capability(index)
            self._table_thresholds[index] = cublas_min_m(10 * major + minor, self.in_features, self.out_features)
        return self._table_thresholds[index]

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, group={self.group}, "
                f"bias={self.bias is not None}")


def quantize_linear(linear: nn.Linear, group: int, clip: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Canonical RTN INT4 of a Linear: (uint8 ``[N, K/2]``, fp16 ``[N, K/group]``) on its device."""
    from qvggt_deploy.quant.quantizer import compute_scales, pack_int4, quantize

    w = linear.weight.detach()
    scales = compute_scales(w, 4, group, clip)
    return pack_int4(quantize(w, scales, 4, group)), scales.to(torch.float16)


def rtn_w4a16_layers(model: nn.Module, group: int, clip: float = 1.0,
                     filter_fn: Optional[Callable[[str, nn.Linear], bool]] = None) -> Dict[str, LayerWeights]:
    """Round-to-nearest weights for every ``nn.Linear`` the kernel can run (and ``filter_fn``
    accepts), in the form :func:`convert_model_to_w4a16` takes; layers whose shape breaks the
    kernel rules (e.g. VGGT's 9-wide pose layers) are left out."""
    layers: Dict[str, LayerWeights] = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if kernel_shape_error(module.out_features, module.in_features, group) is not None:
            continue
        if filter_fn is not None and not filter_fn(name, module):
            continue
        qweight, scales = quantize_linear(module, group, clip)
        layers[name] = (qweight, scales, group)
    return layers


def convert_model_to_w4a16(model: nn.Module, layers: Dict[str, LayerWeights], *,
                           cublas_min_m: CublasMinM = TABLE) -> nn.Module:
    """Swap the named ``nn.Linear`` modules of ``model`` for :class:`W4A16Linear`, in place.

    Every entry is validated before anything is swapped, so a bad entry leaves the model as it was.

    Args:
        model (nn.Module): the model (e.g. VGGT).
        layers (dict): module name -> ``(qweight, scales, group)``, canonical format: uint8
            ``[N, K/2]``, fp16 ``[N, K/group]``.
        cublas_min_m (int, "table" or None): passed to every :class:`W4A16Linear`. Defaults to
            ``"table"``.

    Returns:
        ``model``.
    """
    from qvggt_deploy.quant.capture import set_submodule

    plan = []
    for name, entry in layers.items():
        try:
            linear = model.get_submodule(name)
        except AttributeError:
            raise QvggtError(f"convert_model_to_w4a16: no module named {name!r} in the model") from None
        if not isinstance(linear, nn.Linear):
            raise QvggtError(f"convert_model_to_w4a16: {name!r} is a {type(linear).__name__}, not nn.Linear")
        qweight, scales, group = entry
        n, k = linear.out_features, linear.in_features
        if tuple(qweight.shape) != (n, k // 2) or qweight.dtype != torch.uint8:
            raise QvggtError(f"convert_model_to_w4a16: {name!r} is Linear({k} -> {n}) but its qweight is "
                             f"{qweight.dtype} {tuple(qweight.shape)}, expected uint8 ({n}, {k // 2})")
        if k % group or tuple(scales.shape) != (n, k // group):
            raise QvggtError(f"convert_model_to_w4a16: {name!r} scales {tuple(scales.shape)} do not match "
                             f"Linear({k} -> {n}) with group {group}")
        reason = kernel_shape_error(n, k, group)
        if reason is not None:
            raise QvggtError(f"convert_model_to_w4a16: {name!r} cannot use the W4A16 kernel: {reason}")
        plan.append((name, linear, qweight, scales, group))
    for name, linear, qweight, scales, group in plan:
        device = linear.weight.device
        new = W4A16Linear.from_quantized(qweight.to(device), scales.to(device), linear.bias, group,
                                         cublas_min_m=cublas_min_m)
        set_submodule(model, name, new)
    return model


def apply_recipe_with_kernel(model: nn.Module, recipe, check: bool = True,
                             cublas_min_m: CublasMinM = TABLE) -> nn.Module:
    """Apply a recipe so that its W4A16 layers run the real kernel (:class:`W4A16Linear`).

    Smoothing is folded and the other quantized layers are fake-quantized exactly as
    :func:`qvggt_deploy.quant.recipe.apply_recipe` does; every ``w4a16`` layer the kernel can
    take (see :func:`kernel_shape_error`) becomes a :class:`W4A16Linear` holding the recipe's
    integers. On CUDA this is the deployed arithmetic; on the CPU the reference emulates it.
    """
    import dataclasses

    from qvggt_deploy.quant.recipe import apply_recipe

    kernel_layers = {}
    for name, spec in recipe.layers.items():
        if spec.precision != "w4a16":
            continue
        linear = model.get_submodule(name)
        if kernel_shape_error(linear.out_features, linear.in_features, spec.group) is None:
            kernel_layers[name] = recipe.canonical_int4(name)
    rest = dataclasses.replace(recipe, layers={k: v for k, v in recipe.layers.items() if k not in kernel_layers})
    apply_recipe(model, rest, check=check)
    return convert_model_to_w4a16(model, kernel_layers, cublas_min_m=cublas_min_m)
