"""DPT dense prediction head (depth, point map, and track features).

References: Ranftl et al., Vision Transformers for Dense Prediction (arXiv 2103.13413); VGGT.

Four aggregator layers (``intermediate_layer_idx``) are tapped; their patch tokens go through one
shared LayerNorm, a 1x1 projection, a sin/cos positional embedding (weight 0.1) and a resize
(x4 deconv, x2 deconv, identity, stride-2 conv), then a RefineNet-style fusion to 8x the patch
grid, a bilinear resize to the image size, another positional embedding, and the output convs.

Quirk kept for checkpoint fidelity: the residual conv unit adds ``relu(x)`` as its skip
connection (the official ReLU is in-place on the input).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from qvggt_deploy.model.heads.head_act import activate_dense


def uv_grid(width: int, height: int, aspect_ratio: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised (u, v) coordinates ``[height, width, 2]`` spanning a unit-diagonal rectangle."""
    diag = (aspect_ratio ** 2 + 1) ** 0.5
    span_x, span_y = aspect_ratio / diag, 1.0 / diag
    u = torch.linspace(-span_x * (width - 1) / width, span_x * (width - 1) / width, width,
                       dtype=torch.float32, device=device)
    v = torch.linspace(-span_y * (height - 1) / height, span_y * (height - 1) / height, height,
                       dtype=torch.float32, device=device)
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu, vv], dim=-1).to(dtype)


def sincos_1d(dim: int, pos: torch.Tensor, omega_0: float = 100.0) -> torch.Tensor:
    """``pos [M]`` -> ``[M, dim]``: concat(sin(p*omega), cos(p*omega)), omega_k = omega_0^(-k/(dim/2)).

    Computed in float32 (the official code uses float64, which breaks ONNX Runtime's Einsum;
    the difference is below fp32 rounding of the result).
    """
    omega = torch.arange(dim // 2, dtype=torch.float32, device=pos.device) / (dim / 2.0)
    omega = 1.0 / omega_0 ** omega
    angles = pos.float()[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def position_embedding(channels: int, height: int, width: int, aspect_ratio: float,
                       dtype=torch.float32, device=None) -> torch.Tensor:
    """DPT positional embedding ``[channels, height, width]``: x-embedding || y-embedding."""
    grid = uv_grid(width, height, aspect_ratio, torch.float32, device).reshape(-1, 2)
    emb = torch.cat([sincos_1d(channels // 2, grid[:, 0]), sincos_1d(channels // 2, grid[:, 1])], dim=-1)
    return emb.reshape(height, width, channels).permute(2, 0, 1).to(dtype)


class ResidualConvUnit(nn.Module):
    """``conv2(relu(conv1(relu(x)))) + relu(x)`` (see module docstring for the skip quirk)."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, 1, 1, bias=True)
        self.conv2 = nn.Conv2d(features, features, 3, 1, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return self.conv2(F.relu(self.conv1(x))) + x


class FeatureFusionBlock(nn.Module):
    """``y = x0 (+ RCU1(x1)); y = RCU2(y); y = resize(y); y = out_conv(y)`` (bilinear, align_corners)."""

    def __init__(self, features: int, has_residual: bool = True):
        super().__init__()
        self.has_residual = has_residual
        # Registration order follows the official module (out_conv first) so state dicts list
        # keys in the same order.
        self.out_conv = nn.Conv2d(features, features, 1, 1, 0, bias=True)
        if has_residual:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x0: torch.Tensor, x1: Optional[torch.Tensor] = None,
                size: Optional[Sequence[int]] = None) -> torch.Tensor:
        y = x0
        if self.has_residual:
            y = y + self.resConfUnit1(x1)
        y = self.resConfUnit2(y)
        if size is None:
            y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            y = F.interpolate(y, size=tuple(int(s) for s in size), mode="bilinear", align_corners=True)
        return self.out_conv(y)


class Scratch(nn.Module):
    """Container matching the official ``scratch.*`` key names."""

    def __init__(self, in_channels: Sequence[int], features: int, head_features_2: int,
                 output_dim: int, feature_only: bool):
        super().__init__()
        self.layer1_rn = nn.Conv2d(in_channels[0], features, 3, 1, 1, bias=False)
        self.layer2_rn = nn.Conv2d(in_channels[1], features, 3, 1, 1, bias=False)
        self.layer3_rn = nn.Conv2d(in_channels[2], features, 3, 1, 1, bias=False)
        self.layer4_rn = nn.Conv2d(in_channels[3], features, 3, 1, 1, bias=False)
        self.refinenet1 = FeatureFusionBlock(features)
        self.refinenet2 = FeatureFusionBlock(features)
        self.refinenet3 = FeatureFusionBlock(features)
        self.refinenet4 = FeatureFusionBlock(features, has_residual=False)
        if feature_only:
            self.output_conv1 = nn.Conv2d(features, features, 3, 1, 1)
        else:
            self.output_conv1 = nn.Conv2d(features, features // 2, 3, 1, 1)
            self.output_conv2 = nn.Sequential(
                nn.Conv2d(features // 2, head_features_2, 3, 1, 1),
                nn.ReLU(),
                nn.Conv2d(head_features_2, output_dim, 1, 1, 0),
            )

    def fuse(self, feats: List[torch.Tensor]) -> torch.Tensor:
        l1 = self.layer1_rn(feats[0])
        l2 = self.layer2_rn(feats[1])
        l3 = self.layer3_rn(feats[2])
        l4 = self.layer4_rn(feats[3])
        out = self.refinenet4(l4, size=l3.shape[2:])
        out = self.refinenet3(out, l3, size=l2.shape[2:])
        out = self.refinenet2(out, l2, size=l1.shape[2:])
        out = self.refinenet1(out, l1)
        return self.output_conv1(out)


class DPTHead(nn.Module):
    """Dense head over aggregated tokens.

    Args:
        dim_in (int): token width (2 * embed_dim).
        patch_size (int): ViT patch size. Defaults to 14.
        output_dim (int): output channels including confidence (depth 2, points 4).
        activation (str): "exp" (depth) or "inv_log" (points).
        conf_activation (str): "expp1". Defaults to "expp1".
        features (int): fusion width. Defaults to 256.
        out_channels (tuple): projection widths of the 4 taps.
        intermediate_layer_idx (tuple): aggregator layers tapped.
        pos_embed (bool): add the sin/cos embedding. Defaults to True.
        feature_only (bool): return the fused feature map (track head). Defaults to False.
        down_ratio (int): output is (H / down_ratio, W / down_ratio). Defaults to 1.
        head_features_2 (int): width of the last hidden conv. Defaults to 32.
    """

    def __init__(self, dim_in: int, patch_size: int = 14, output_dim: int = 4,
                 activation: str = "inv_log", conf_activation: str = "expp1", features: int = 256,
                 out_channels: Sequence[int] = (256, 512, 1024, 1024),
                 intermediate_layer_idx: Sequence[int] = (4, 11, 17, 23), pos_embed: bool = True,
                 feature_only: bool = False, down_ratio: int = 1, head_features_2: int = 32):
        super().__init__()
        self.patch_size = patch_size
        self.activation = activation
        self.conf_activation = conf_activation
        self.pos_embed = pos_embed
        self.feature_only = feature_only
        self.down_ratio = down_ratio
        self.intermediate_layer_idx = tuple(intermediate_layer_idx)
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, oc, 1, 1, 0) for oc in out_channels)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4, padding=0),
            nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2, padding=0),
            nn.Identity(),
            nn.Conv2d(out_channels[3], out_channels[3], kernel_size=3, stride=2, padding=1),
        ])
        self.scratch = Scratch(out_channels, features, head_features_2, output_dim, feature_only)

    def _add_pos_embed(self, x: torch.Tensor, W: int, H: int, ratio: float = 0.1) -> torch.Tensor:
        pe = position_embedding(x.shape[1], x.shape[2], x.shape[3], W / H, x.dtype, x.device)
        return x + ratio * pe[None]

    def features(self, tokens_list: List[torch.Tensor], images: torch.Tensor,
                 patch_start_idx: int) -> torch.Tensor:
        """Fused feature map ``[B*S, C, H/down_ratio, W/down_ratio]`` (before output_conv2)."""
        B, S, _, H, W = images.shape
        ph, pw = H // self.patch_size, W // self.patch_size
        feats = []
        for k, layer in enumerate(self.intermediate_layer_idx):
            x = tokens_list[layer][:, :, patch_start_idx:]
            x = self.norm(x.reshape(B * S, -1, x.shape[-1]))
            x = x.permute(0, 2, 1).reshape(B * S, x.shape[-1], ph, pw)
            x = self.projects[k](x)
            if self.pos_embed:
                x = self._add_pos_embed(x, W, H)
            feats.append(self.resize_layers[k](x))
        out = self.scratch.fuse(feats)
        size = (int(ph * self.patch_size / self.down_ratio), int(pw * self.patch_size / self.down_ratio))
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=True)
        if self.pos_embed:
            out = self._add_pos_embed(out, W, H)
        return out

    def forward(self, tokens_list: List[torch.Tensor], images: torch.Tensor, patch_start_idx: int,
                frames_chunk_size: Optional[int] = 8):
        """Returns (values ``[B, S, H, W, C-1]``, conf ``[B, S, H, W]``), or features
        ``[B, S, C, H/d, W/d]`` when ``feature_only``. Frames are processed in chunks of
        ``frames_chunk_size`` to bound memory (results are identical)."""
        B, S = images.shape[:2]
        chunk = S if not frames_chunk_size or frames_chunk_size >= S else frames_chunk_size
        outs: List[Tuple[torch.Tensor, ...]] = []
        for start in range(0, S, chunk):
            end = min(start + chunk, S)
            sub_tokens = [t[:, start:end] for t in tokens_list]
            outs.append(self._forward_frames(sub_tokens, images[:, start:end], patch_start_idx))
        if len(outs) == 1:
            return outs[0] if not self.feature_only else outs[0][0]
        joined = tuple(torch.cat(parts, dim=1) for parts in zip(*outs))
        return joined if not self.feature_only else joined[0]

    def _forward_frames(self, tokens_list, images, patch_start_idx) -> Tuple[torch.Tensor, ...]:
        B, S, _, H, W = images.shape
        out = self.features(tokens_list, images, patch_start_idx)
        if self.feature_only:
            return (out.reshape(B, S, *out.shape[1:]),)
        out = self.scratch.output_conv2(out)
        values, conf = activate_dense(out, self.activation, self.conf_activation)
        return values.reshape(B, S, *values.shape[1:]), conf.reshape(B, S, *conf.shape[1:])
