"""Option groups shared by several subcommands (model, device, output), declared once."""
from __future__ import annotations

import argparse

from qvggt_deploy.errors import QvggtError


def add_model_args(parser: argparse.ArgumentParser, checkpoint_required: bool = False) -> None:
    """``--preset`` and ``--checkpoint``. Without a checkpoint the embedded default is used
    for the ``tiny`` preset and random weights (with a warning) for the others."""
    from qvggt_deploy.model.presets import PRESETS

    group = parser.add_argument_group("model")
    group.add_argument("--preset", default="tiny", choices=sorted(PRESETS),
                       help="model architecture preset. Defaults to tiny (the embedded, trained model).")
    group.add_argument("--checkpoint", required=checkpoint_required, default=None,
                       help="weights (.safetensors, .pt or .pth). Defaults to the embedded checkpoint "
                            "for --preset tiny; other presets then get random weights (a warning says so).")


def add_device_args(parser: argparse.ArgumentParser, dtypes=("fp32", "bf16", "fp16")) -> None:
    group = parser.add_argument_group("device")
    group.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N. Defaults to cpu.")
    group.add_argument("--dtype", default="fp32", choices=list(dtypes),
                       help="autocast dtype for the aggregator (heads always run in fp32). Defaults to fp32.")
    group.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads. Defaults to torch's own choice.")


def resolve_device(name: str):
    """Turn ``--device`` into a torch.device, failing clearly when CUDA is asked for and missing."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise QvggtError(f"--device {name!r} is not a device name (use cpu, cuda or cuda:N)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise QvggtError(f"--device {name}: this torch build has no CUDA device available "
                         f"(torch {torch.__version__}); use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise QvggtError(f"--device {name}: only cpu and cuda are supported")
    return device


def apply_threads(threads) -> None:
    if threads:
        import torch

        torch.set_num_threads(int(threads))
