"""Graph passes (onnx-graphsurgeon), one per file; see :mod:`.registry`."""
from qvggt_deploy.passes.registry import get_pass, list_passes, register_pass

__all__ = ["get_pass", "list_passes", "register_pass"]
