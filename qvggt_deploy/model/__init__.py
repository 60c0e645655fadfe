"""VGGT in PyTorch: a clean re-implementation that loads the official VGGT-1B checkpoint strictly.

Entry points: :func:`build_model`, :func:`load_checkpoint`, :class:`VGGT`, :data:`PRESETS`.
"""
from qvggt_deploy.model.presets import PRESETS, VGGTConfig, get_preset
from qvggt_deploy.model.vggt import VGGT, build_model
from qvggt_deploy.model.checkpoint import load_checkpoint, save_checkpoint

__all__ = ["PRESETS", "VGGTConfig", "get_preset", "VGGT", "build_model", "load_checkpoint",
           "save_checkpoint"]
