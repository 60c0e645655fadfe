"""CPU threads of torch for a run (ONNX Runtime sessions take theirs as an option)."""
from __future__ import annotations

from typing import Optional

from qvggt_deploy.errors import QvggtError


def apply_threads(threads: Optional[int]) -> None:
    """Set torch's intra-op threads; None leaves torch's own choice (all cores)."""
    if threads is not None and int(threads) < 1:
        raise QvggtError(f"--threads must be at least 1, got {threads}")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
