"""VGGT: images in, cameras + depth maps + point maps (+ tracks) out, in one forward pass.

Reference: Wang et al., "VGGT: Visual Geometry Grounded Transformer", CVPR 2025 (arXiv 2503.11651).
"""
from __future__ import annotations

from typing import Dict, Optional, Union

import torch
from torch import nn

from qvggt_deploy.model.aggregator import Aggregator
from qvggt_deploy.model.heads.camera_head import CameraHead
from qvggt_deploy.model.heads.dpt_head import DPTHead
from qvggt_deploy.model.presets import VGGTConfig, get_preset


class VGGT(nn.Module):
    """The full model; submodules (in the official registration order): ``aggregator``,
    ``camera_head``, ``point_head``, ``depth_head``, ``track_head`` (a disabled head is ``None``)."""

    def __init__(self, cfg: VGGTConfig):
        super().__init__()
        self.cfg = cfg
        dim_in = 2 * cfg.embed_dim
        self.aggregator = Aggregator(cfg)
        self.camera_head = (CameraHead(dim_in, cfg.camera_trunk_depth, cfg.camera_num_heads, cfg.mlp_ratio,
                                       cfg.aa_init_values, cfg.camera_iterations)
                            if cfg.enable_camera else None)
        dpt = dict(patch_size=cfg.patch_size, features=cfg.dpt_features, out_channels=cfg.dpt_out_channels,
                   intermediate_layer_idx=cfg.intermediate_layer_idx, head_features_2=cfg.dpt_head_features_2)
        self.point_head = (DPTHead(dim_in, output_dim=4, activation="inv_log", conf_activation="expp1", **dpt)
                           if cfg.enable_point else None)
        self.depth_head = (DPTHead(dim_in, output_dim=2, activation="exp", conf_activation="expp1", **dpt)
                           if cfg.enable_depth else None)
        if cfg.enable_track:
            from qvggt_deploy.model.heads.track_head import TrackHead

            self.track_head = TrackHead(cfg)
        else:
            self.track_head = None

    def forward(self, images: torch.Tensor, query_points: Optional[torch.Tensor] = None,
                dense_frames: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Run the model.

        Args:
            images (Tensor): ``[S, 3, H, W]`` or ``[B, S, 3, H, W]``, RGB in [0, 1]; H and W
                multiples of the patch size (14). B: batch, S: frames.
            query_points (Tensor, optional): ``[N, 2]`` or ``[B, N, 2]`` pixel (x, y) in frame 0,
                for the track head.
            dense_frames (Tensor, optional): frame indices for the depth and point heads, which
                then predict those frames only (training on a subset: the dense heads are most of
                a step's time). The camera head always sees every frame.

        Returns:
            dict with ``pose_enc`` [B,S,9] (and ``pose_enc_list``), ``depth`` [B,S,H,W,1],
            ``depth_conf`` [B,S,H,W], ``world_points`` [B,S,H,W,3], ``world_points_conf``
            [B,S,H,W], ``images`` [B,S,3,H,W] in eval mode, and with query points ``track``
            [B,S,N,2], ``vis`` [B,S,N], ``conf`` [B,S,N]. Keys of disabled heads are absent.
        """
        if images.dim() == 4:
            images = images.unsqueeze(0)
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be [S, 3, H, W] or [B, S, 3, H, W], got {tuple(images.shape)}")
        if query_points is not None and query_points.dim() == 2:
            query_points = query_points.unsqueeze(0)

        tokens_list, patch_start_idx = self.aggregator(images)
        predictions: Dict[str, torch.Tensor] = {}
        # Heads run in fp32 even when the caller autocasts the aggregator (as the official model).
        with torch.autocast(device_type=images.device.type, enabled=False):
            tokens_fp32 = [t.float() for t in tokens_list]
            images_fp32 = images.float()
            if self.camera_head is not None:
                pose_enc_list = self.camera_head(tokens_fp32)
                predictions["pose_enc"] = pose_enc_list[-1]
                predictions["pose_enc_list"] = pose_enc_list
            if dense_frames is not None:
                tokens_fp32 = [t[:, dense_frames] for t in tokens_fp32]
                images_fp32 = images_fp32[:, dense_frames]
            if self.depth_head is not None:
                depth, depth_conf = self.depth_head(tokens_fp32, images_fp32, patch_start_idx)
                predictions["depth"] = depth
                predictions["depth_conf"] = depth_conf
            if self.point_head is not None:
                points, points_conf = self.point_head(tokens_fp32, images_fp32, patch_start_idx)
                predictions["world_points"] = points
                predictions["world_points_conf"] = points_conf
        if self.track_head is not None and query_points is not None:
            track_list, vis, conf = self.track_head(tokens_list, images, patch_start_idx, query_points)
            predictions["track"] = track_list[-1]
            if self.training:  # every refinement round, for the loss
                predictions["track_list"] = track_list
            predictions["vis"] = vis
            predictions["conf"] = conf
        if not self.training:
            predictions["images"] = images
        return predictions


def init_weights(model: VGGT) -> None:
    """Random initialisation in the spirit of the official model (timm/DINOv2 style): linear
    weights truncated normal std 0.02 with zero bias, positional table std 0.02, special tokens
    std 1e-6, LayerNorm (1, 0). Convolutions keep PyTorch's default init."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    agg = model.aggregator
    nn.init.trunc_normal_(agg.patch_embed.pos_embed, std=0.02)
    for p in (agg.patch_embed.cls_token, agg.patch_embed.register_tokens, agg.camera_token, agg.register_token):
        nn.init.normal_(p, std=1e-6)
    nn.init.zeros_(agg.patch_embed.mask_token)
    if model.track_head is not None and hasattr(model.track_head, "reset_parameters"):
        model.track_head.reset_parameters()


def build_model(preset: Union[str, VGGTConfig], seed: Optional[int] = 0,
                device: Union[str, torch.device] = "cpu") -> VGGT:
    """Build a VGGT for a named preset (or config), randomly initialised and in eval mode.

    Args:
        preset: preset name (see :data:`qvggt_deploy.model.presets.PRESETS`) or a config.
        seed: seed of the random init (deterministic). Defaults to 0. ``None`` leaves the global RNG.
        device: where to allocate. ``"meta"`` allocates nothing (for loading a checkpoint with
            ``assign=True`` without holding two copies of the weights). Defaults to ``"cpu"``.
    """
    cfg = preset if isinstance(preset, VGGTConfig) else get_preset(preset)
    device = torch.device(device)
    if device.type == "meta":
        with torch.device("meta"):
            model = VGGT(cfg)
        return model.eval()
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        with torch.device(device):
            model = VGGT(cfg)
        init_weights(model)
    return model.eval()
