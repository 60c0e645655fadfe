"""What ``qvggt check`` runs: the runners a set of exported files needs (from their metadata),
how they pair, which pairs are gated, and the inputs (generated scenes or the user's photos).

An exported file is compared with the PyTorch model it must equal: the float model, or the model
fake-quantized by the recipe whose digest the file carries, with the DPT convs rounded as the
file's ``conv_precision``. ORT files in exact mode (accuracy level 0, no int8 activations, fp32)
are gated to float tolerance; everything else (int8 activations, TensorRT) is reported against
the float model, gated only by the metric gates given.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from qvggt_deploy.check.compare import Comparison
from qvggt_deploy.errors import QvggtError

REQUIRED_METADATA = ("height", "width", "preset", "recipe_digest", "target")  # what `qvggt export` writes


def parse_named(values: Sequence[str], what: str) -> List[Tuple[str, Path]]:
    """``NAME=PATH`` or ``PATH`` (name = file stem) -> [(name, path)], names unique."""
    out, seen = [], set()
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep:
            name, path = Path(value).stem, value
        if name in seen:
            raise QvggtError(f"{what}: name {name!r} given twice")
        seen.add(name)
        out.append((name, Path(path)))
    return out


def read_export_metadata(files: Sequence[Tuple[str, Path]], preset: str) -> Tuple[Dict[str, Dict[str, str]], Tuple[int, int]]:
    """Each file's qvggt metadata (checked: made by ``qvggt export`` for ``preset``) and their
    common input size (H, W)."""
    from qvggt_deploy.export.validate import load_checked

    metas = {}
    for name, path in files:
        meta = load_checked(path)[1]
        missing = [k for k in REQUIRED_METADATA if k not in meta]
        if missing:
            raise QvggtError(f"{path}: not a qvggt export (metadata qvggt.{missing[0]} missing); "
                             f"make it with `qvggt export`")
        if not (meta["height"].isdigit() and meta["width"].isdigit()):
            raise QvggtError(f"{path}: bad qvggt.height/width metadata {meta['height']!r}x{meta['width']!r}")
        if meta.get("preset") != preset:
            raise QvggtError(f"{path} was exported from preset {meta.get('preset')!r}, not --preset {preset}")
        metas[name] = meta
    sizes = {(int(m["height"]), int(m["width"])) for m in metas.values()}
    if len(sizes) != 1:
        raise QvggtError(f"the --onnx files were exported for different sizes: {sorted(sizes)}")
    return metas, sizes.pop()


def is_exact(meta: Mapping[str, str]) -> bool:
    """An ORT file that computes what its PyTorch reference computes, up to fp32 reassociation."""
    return (meta["target"] == "ort" and meta.get("ort_accuracy_level", "0") in ("0", "session")
            and meta.get("ort_int8_kernel", "none") == "none" and meta.get("float_precision", "fp32") == "fp32")


@dataclass
class CheckPlan:
    """Runners (PyTorch references first), comparisons, and pairs whose metrics must agree."""

    runners: List[Any]
    comparisons: List[Comparison]
    agree: List[Tuple[str, str]]
    height: int
    width: int
    metas: Dict[str, Dict[str, str]] = field(default_factory=dict)


def plan_check(files: Sequence[Tuple[str, Path]], engines: Sequence[Tuple[str, Path]] = (), *, preset: str,
               checkpoint=None, recipes: Optional[Mapping[str, Any]] = None, threads: Optional[int] = None,
               allow_random: bool = False, gates: Optional[Mapping[str, float]] = None,
               engine_reference: Optional[str] = None) -> CheckPlan:
    """The runners and pairs that check ``files`` (exported .onnx) and ``engines``.

    Args:
        files: (name, path) of exported ONNX files; at least one (it fixes the input size).
        engines: (name, path) of TensorRT engines, compared with the float model.
        preset, checkpoint, allow_random: the PyTorch model (see ``load_model``).
        recipes: digest -> Recipe, for the files exported with a recipe.
        threads: CPU threads of torch and ORT.
        gates: metric -> bound applied to every non-exact pair (see :data:`compare.GATES`).
        engine_reference: the name of one of ``files``: every engine is also compared with that
            file's ONNX Runtime run (an engine against the graph it was built from, or for a
            plugin engine, against the native-INT4 graph of the same recipe). Defaults to None.
    """
    from qvggt_deploy.backends import get_backend
    from qvggt_deploy.backends.onnxrt.loader import SessionFromOnnx
    from qvggt_deploy.backends.torch.loader import ModelFromPreset

    if not files:
        raise QvggtError("give at least one --onnx file to check")
    recipes = dict(recipes or {})
    gates = dict(gates or {})
    if engine_reference is not None and engine_reference not in [name for name, _ in files]:
        raise QvggtError(f"engine reference {engine_reference!r} is not the name of an --onnx file "
                         f"(names: {', '.join(name for name, _ in files)})")
    metas, (height, width) = read_export_metadata(files, preset)
    TorchRunner, OrtRunner = get_backend("torch"), get_backend("ort")
    references: Dict[tuple, Any] = {}

    def reference(digest: str, conv: str):
        key = (digest, conv)
        if key not in references:
            rec = None
            if digest != "none":
                if digest not in recipes:
                    raise QvggtError(f"a file was exported with recipe {digest}; pass that recipe with --recipe "
                                     f"(given: {', '.join(recipes) or 'none'})")
                rec = recipes[digest]
            label = "torch-fp32" if rec is None else f"torch-{rec.path.name if rec.path else rec.method.get('name', 'recipe')}"
            label += "" if conv == "fp32" else f"-conv{conv}"
            references[key] = TorchRunner(ModelFromPreset(preset, checkpoint, rec, conv, threads, allow_random=allow_random),
                                          name=label, height=height, width=width)
        return references[key]

    float_ref = reference("none", "fp32")
    runners, comparisons, agree = [], [], []
    for name, path in files:
        meta = metas[name]
        ref = reference(meta["recipe_digest"], meta.get("conv_precision", "fp32"))
        exact = is_exact(meta)
        runner = OrtRunner(SessionFromOnnx(path, accuracy_level=0, threads=threads), name=f"ort-{name}")
        runners.append(runner)
        comparisons.append(Comparison(runner.name, ref.name, "exact") if exact
                           else Comparison(runner.name, ref.name, "approx", gates))
        if exact:
            agree.append((runner.name, ref.name))
        if ref is not float_ref:
            comparisons.append(Comparison(runner.name, float_ref.name, "approx"))
    for name, path in engines:
        runner = get_backend("trt")(str(path), name=f"trt-{name}")
        runners.append(runner)
        comparisons.append(Comparison(runner.name, float_ref.name, "approx", gates))
        if engine_reference is not None:
            comparisons.append(Comparison(runner.name, f"ort-{engine_reference}", "approx", gates))
    for ref in references.values():
        if ref is not float_ref:
            comparisons.append(Comparison(ref.name, float_ref.name, "approx"))
    return CheckPlan(list(references.values()) + runners, comparisons, agree, height, width, metas)


@dataclass
class Inputs:
    """What the runners see: feeds, and for generated scenes their ground truth; for photos the
    names and where each photo lies in the input (for the figures)."""

    feeds: List[Dict[str, Any]]
    ground_truth: Optional[List[Any]] = None
    names: List[str] = field(default_factory=list)
    valid: Optional[Any] = None  # [S, H, W] bool per feed (photos): pixels that show the photo
    description: str = ""


def scene_inputs(scenes: int, frames: int, seed: int, height: int, width: int) -> Inputs:
    """Held-out generated scenes with ground truth."""
    from qvggt_deploy.metrics.evaluate import eval_scenes

    data = list(eval_scenes(scenes, frames=frames, seed=seed, image_size=(height, width)))
    return Inputs([{"images": s.images.numpy()} for s in data], data,
                  description=f"{len(data)} held-out generated scene(s) of {frames} frame(s) (seed offset {seed})")


def photo_inputs(folder, height: int, width: int, max_frames: Optional[int] = None, mode: str = "crop",
                 patch: int = 14) -> Inputs:
    """The user's photos as one sequence at the files' input size, as ``qvggt infer`` feeds them
    (no ground truth: runners are compared with each other)."""
    import numpy as np

    from qvggt_deploy.data.images import list_images, load_placed_images

    files = list_images(folder)
    if max_frames:
        files = files[:max_frames]
    target = width if mode == "crop" else min(height, width)
    images, placements = load_placed_images(files, mode, target, patch, (height, width))
    valid = np.stack([p.valid_mask(height, width) for p in placements])
    return Inputs([{"images": np.ascontiguousarray(images.numpy())}], None, [f.name for f in files], [valid],
                  description=f"{len(files)} photo(s) from {folder} as one sequence ({mode} to {height}x{width}); "
                              f"no ground truth: runners against each other")
