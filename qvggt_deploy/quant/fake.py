"""Fake-quantized modules: PyTorch evaluation of any precision plan, bit-exact with the export.

:class:`QuantLinear` computes ``y = act_q(x) @ (q * s)^T + b`` in fp32, where ``q * s`` is the
dequantised weight of :mod:`qvggt_deploy.quant.quantizer` and ``act_q`` the optional INT8
activation fake-quantizer. With ``special_bypass`` the activation quantizer skips the special
tokens (camera/register, CLS/register): token i is special iff ``i % tokens_per_frame <
num_special``, the same rule the ONNX pass ``bypass-special-tokens`` implements.

``activations = "fp16"`` (:func:`set_activations`) computes what the W4A16 kernel and a TensorRT
fp16 engine compute instead (LAYOUT block of ``kernels/w4a16_gemm.cu``): input rounded to fp16,
weight ``fp16_rn(q * s)``, exact fp16 x fp16 products summed in fp32, bias in fp16, output
rounded to fp16. Only the quantized Linears change; norms, attention, convolutions and float
Linears stay fp32 (``--dtype fp16`` autocasts the aggregator instead).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from qvggt_deploy.quant import quantizer


def fake_quant_activation(x: torch.Tensor, bits: int, granularity: str,
                          scale: Optional[float] = None) -> torch.Tensor:
    """Symmetric INT``bits`` quantize-dequantize of activations (last dim = channels).

    ``per_tensor`` uses the static ``scale`` (calibrated); ``per_token`` computes one scale per
    row at run time (``absmax / qmax``), as a dynamic quantizer does.
    """
    qmax = 2 ** (bits - 1) - 1
    if granularity == "per_tensor":
        if scale is None:
            raise ValueError("per_tensor activation quantization needs a calibrated scale")
        s = torch.as_tensor(scale, dtype=x.dtype, device=x.device)
    elif granularity == "per_token":
        s = (x.detach().abs().amax(dim=-1, keepdim=True) / qmax).clamp_min(quantizer.SCALE_FLOOR)
    else:
        raise ValueError(f"unknown activation granularity {granularity!r}")
    return torch.clamp(torch.round(x / s), -qmax - 1, qmax) * s


def special_token_mask(num_tokens: int, tokens_per_frame: int, num_special: int, device=None) -> torch.Tensor:
    """Boolean ``[num_tokens]``: True for special tokens (``i % tokens_per_frame < num_special``)."""
    idx = torch.arange(num_tokens, device=device)
    return (idx % tokens_per_frame) < num_special


class QuantLinear(nn.Module):
    """A Linear whose weight is the dequantised INT4/INT8 (or fp16-rounded) weight.

    Attributes kept for export: ``precision``, ``bits``, ``group``, ``qweight`` (int8 values
    ``[N, K]``, unpacked), ``scales`` (fp32 holding fp16 values ``[N, K/group]``), ``abits``,
    ``act_granularity``, ``act_scale``, ``special_bypass``.
    """

    def __init__(self, in_features: int, out_features: int, bias: Optional[torch.Tensor],
                 precision: str, weight: torch.Tensor, qweight: Optional[torch.Tensor] = None,
                 scales: Optional[torch.Tensor] = None, bits: Optional[int] = None,
                 group: Optional[int] = None, abits: Optional[int] = None,
                 act_granularity: Optional[str] = None, act_scale: Optional[float] = None,
                 special_bypass: bool = False, num_special: int = 5):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.precision = precision
        self.bits, self.group = bits, group
        self.abits, self.act_granularity, self.act_scale = abits, act_granularity, act_scale
        self.special_bypass = special_bypass
        self.num_special = num_special
        self.tokens_per_frame: Optional[int] = None  # set per forward by the token-layout hook
        self.activations = "fp32"  # or "fp16": the deployed fp16 arithmetic (set_activations)
        self.register_buffer("weight", weight.float().contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.register_buffer("qweight", qweight)
        self.register_buffer("scales", scales)

    @classmethod
    def from_linear(cls, linear: nn.Linear, precision: str, bits: Optional[int] = None,
                    group: Optional[int] = None, scales: Optional[torch.Tensor] = None,
                    qweight: Optional[torch.Tensor] = None, **act) -> "QuantLinear":
        """Quantize ``linear`` with given ``scales`` (and optionally precomputed ``qweight``)."""
        w = linear.weight.detach().float()
        if bits is not None:
            if qweight is None:
                qweight = quantizer.quantize(w, scales, bits, group)
            weight = quantizer.dequantize(qweight, scales, group)
        elif precision == "fp16":
            weight = w.half().float()
        else:
            weight = w
        return cls(linear.in_features, linear.out_features, linear.bias, precision, weight, qweight,
                   None if scales is None else scales.float(), bits, group, **act)

    def _quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.precision == "fp16":
            return x.half().float()
        if self.abits is None:
            return x
        xq = fake_quant_activation(x, self.abits, self.act_granularity, self.act_scale)
        if self.special_bypass and self.tokens_per_frame and x.dim() >= 2:
            mask = special_token_mask(x.shape[-2], self.tokens_per_frame, self.num_special, x.device)
            xq = torch.where(mask[:, None], x, xq)
        return xq

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activations == "fp16":
            return self._forward_fp16(x)
        y = F.linear(self._quantize_input(x.float()), self.weight, self.bias)
        return y.half().float() if self.precision == "fp16" else y

    def _forward_fp16(self, x: torch.Tensor) -> torch.Tensor:
        """fp16 in, fp16 weight, fp32 sums, fp16 out, emulated in fp32 (fp16 x fp16 products are
        exact in fp32, so only the summation order can differ from a GPU)."""
        xq = self._quantize_input(_fp16(x.float()))
        bias = None if self.bias is None else _fp16(self.bias)
        return _fp16(F.linear(_fp16(xq), _fp16(self.weight), bias))

    def extra_repr(self) -> str:
        extra = f", group={self.group}" if self.group else ""
        act = f", abits={self.abits} ({self.act_granularity})" if self.abits else ""
        fp16 = ", fp16 activations" if self.activations == "fp16" else ""
        return f"{self.in_features}->{self.out_features}, {self.precision}{extra}{act}{fp16}"


ACTIVATION_DTYPES = ("fp32", "fp16")


def _fp16(x: torch.Tensor) -> torch.Tensor:
    return x.half().float()


def set_activations(model: nn.Module, dtype: str) -> int:
    """Run every :class:`QuantLinear` of ``model`` with ``dtype`` activations ("fp32": exact
    fp32 emulation, the default; "fp16": the W4A16 kernel's / TensorRT's fp16 arithmetic).
    Returns how many layers were set (0: the model is not quantized)."""
    if dtype not in ACTIVATION_DTYPES:
        raise ValueError(f"activations must be one of {ACTIVATION_DTYPES}, got {dtype!r}")
    layers = [m for m in model.modules() if isinstance(m, QuantLinear)]
    for m in layers:
        m.activations = dtype
    return len(layers)


class ScaledActivation(nn.Module):
    """``act(x) * inv_scale``: carries an AWQ smoothing factor through a non-homogeneous
    activation (GELU). ``inv_scale`` = 1/s is stored, so export multiplies by the same constant."""

    def __init__(self, act: nn.Module, inv_scale: torch.Tensor):
        super().__init__()
        self.act = act
        self.register_buffer("inv_scale", inv_scale.float().contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x) * self.inv_scale
