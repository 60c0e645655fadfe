"""Option groups shared by several subcommands (model, threads, output), declared once.

``--out`` means one thing in every command: where its result goes, a FILE when the result is one
file (``export``: .onnx, ``build-engine``: .engine), a DIR otherwise. The output is replaced
whole once the run succeeded (never half-written); an existing DIR only when it is empty or an
earlier output of the same command, anything else is refused before any work unless ``--force``
(``export`` treats an existing FILE the same way). The commands that
work inside a folder (``train`` and ``eval --dataset`` resume there, ``scenes`` adds scene
folders, ``demo`` writes its stages) say so in their help. ``--json FILE`` is only ever an
optional machine-readable copy of a report printed on the terminal (``lint``, ``eval``).
"""
from __future__ import annotations

import argparse

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger
from qvggt_deploy.threads import apply_threads  # noqa: F401  (the commands import it from here)

logger = get_logger(__name__)


def add_preset_arg(parser, default: str = "tiny", help: str = "model architecture preset") -> None:
    """``--preset``, one of the model presets (``parser`` may be an argument group)."""
    from qvggt_deploy.model.presets import PRESETS

    note = " (the embedded, trained model)" if default == "tiny" else ""
    parser.add_argument("--preset", default=default, choices=sorted(PRESETS),
                        help=f"{help}. Defaults to {default}{note}.")


def add_threads_arg(parser, what: str = "torch") -> None:
    """``--threads``: CPU threads of ``what`` (torch, ONNX Runtime); None leaves the library's choice."""
    parser.add_argument("--threads", type=positive_int, default=None,
                        help=f"CPU threads ({what}). Defaults to the library's own choice (all cores).")


#: What ``--out`` is, said the same way in every command's help (see the module docstring).
OUT_KINDS = {
    "file": "the {what} file to write (replaced whole once the run succeeded, never half-written)",
    "folder": "the folder of {what} (created, and replaced whole once the run succeeded; an existing folder only "
              "if it is empty or an earlier one of this kind, unless --force)",
    "workdir": "the folder to write {what} into (created; its files are replaced whole)",
}


def add_out_arg(parser, kind: str, what: str, required: bool = True, extra: str = "") -> None:
    """``--out``: one option for every command's output, a file or a folder (said in the help)."""
    parser.add_argument("--out", required=required, metavar="FILE" if kind == "file" else "DIR",
                        help=OUT_KINDS[kind].format(what=what) + (f"; {extra}" if extra else ""))


def add_deprecated_arg(parser, option: str, instead: str, **kwargs) -> None:
    """An old spelling kept for one release; :func:`warn_deprecated` says what replaces it."""
    parser.add_argument(option, **kwargs, help=f"deprecated, removed in the next release: use {instead}")


def warn_deprecated(option: str, instead: str) -> None:
    logger.warning("%s is deprecated and will be removed in the next release; use %s", option, instead)


def add_model_args(parser: argparse.ArgumentParser, checkpoint_required: bool = False, random_weights: bool = True,
                   when: str = "") -> None:
    """``--preset``, ``--checkpoint`` and (``random_weights``) ``--allow-random-weights``. Without a
    checkpoint the embedded one is used for the ``tiny`` preset; other presets refuse to run on
    random weights unless ``--allow-random-weights`` is given. ``when`` prefixes the help of
    commands where the model is used only in some modes (e.g. "torch: ")."""
    group = parser.add_argument_group("model")
    add_preset_arg(group, help=f"{when}model architecture preset (tiny is trained on generated scenes only; for real "
                               "photos use vggt-1b with --checkpoint facebook/VGGT-1B)")
    add_checkpoint_arg(group, checkpoint_required, when)
    if random_weights:
        group.add_argument("--allow-random-weights", action="store_true",
                           help=f"{when}run a preset without weights on random ones (shapes, memory and speed only: "
                                "the predictions are meaningless); otherwise such a run is refused")


def add_checkpoint_arg(parser, required: bool = False, when: str = "") -> None:
    """``--checkpoint``: a weights file or a Hugging Face model id (``parser`` may be a group)."""
    parser.add_argument("--checkpoint", required=required, default=None,
                        help=f"{when}weights: a file (.safetensors, .pt or .pth) or a Hugging Face model id "
                             "owner/name[@revision] whose model.pt is fetched into the Hugging Face cache "
                             "(e.g. facebook/VGGT-1B for --preset vggt-1b). Defaults to the embedded checkpoint "
                             "for --preset tiny.")


def model_source(args):
    """The model options as :class:`~qvggt_deploy.model.checkpoint.ModelSource`."""
    from qvggt_deploy.model.checkpoint import ModelSource

    return ModelSource(args.preset, args.checkpoint, getattr(args, "allow_random_weights", False))


def add_device_args(parser: argparse.ArgumentParser, dtypes=("fp32", "bf16", "fp16")) -> None:
    group = parser.add_argument_group("device")
    group.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N. Defaults to cpu.")
    group.add_argument("--dtype", default="fp32", choices=list(dtypes),
                       help="autocast dtype for the aggregator (heads always run in fp32). Defaults to fp32.")
    add_threads_arg(group)


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


# ---- option values, checked where they are parsed (argparse reports them as usage errors) ------
PATCH = 14  # every preset's patch size; image sizes must be multiples of it


class OptionValueError(argparse.ArgumentTypeError):
    """A well-formed option whose value is out of range: a user error (exit 1), not a usage error."""


def _number(kind, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise OptionValueError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and value != value or value in (float("inf"), float("-inf")):
        raise OptionValueError(f"{text!r} is not a finite number")
    return value


def at_least(low, kind=int):
    """argparse type: a number >= ``low``."""
    def parse(text: str):
        value = _number(kind, text)
        if value < low:
            raise OptionValueError(f"must be at least {low}, got {text}")
        return value

    parse.__name__ = f"{kind.__name__} >= {low}"
    return parse


positive_int = at_least(1)
nonneg_int = at_least(0)


def in_range(low: float, high: float):
    """argparse type: a float in [low, high]."""
    def parse(text: str) -> float:
        value = _number(float, text)
        if not low <= value <= high:
            raise OptionValueError(f"must be in [{low:g}, {high:g}], got {text}")
        return value

    parse.__name__ = f"number in [{low:g}, {high:g}]"
    return parse


def positive_float(text: str) -> float:
    value = _number(float, text)
    if value <= 0:
        raise OptionValueError(f"must be above 0, got {text}")
    return value


def image_side(text: str) -> int:
    """argparse type: an image side in pixels, a positive multiple of the patch size."""
    value = _number(int, text)
    if value < PATCH or value % PATCH:
        raise OptionValueError(f"must be a positive multiple of the patch size {PATCH}, got {text} "
                                         f"(e.g. {max(PATCH, round(value / PATCH) * PATCH)})")
    return value


def add_force_arg(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--force", action="store_true",
                        help=f"replace --out even if it is not {what} (its content is lost)")


# ---- what an existing output is, so that only our own outputs are ever replaced --------------
def is_qvggt_onnx(path) -> bool:
    """A file `qvggt export` wrote (qvggt.* metadata), or an empty file (nothing to lose)."""
    from pathlib import Path

    path = Path(path)
    if path.stat().st_size == 0:
        return True
    with open(path, "rb") as f:
        if f.read(1) != b"\x08":  # an ONNX ModelProto starts with ir_version (field 1, varint)
            return False
    try:
        from qvggt_deploy.graph.metadata import is_export

        return is_export(path)
    except QvggtError:
        return False
