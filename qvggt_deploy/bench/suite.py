"""A benchmark end to end, as ``qvggt bench`` and the demo run it: the variants of the options
(checked before any is timed), their measurements (:mod:`.run`), and the report (JSON, Markdown,
PNG; :mod:`.report`)."""
from __future__ import annotations

import dataclasses
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from qvggt_deploy.bench.run import Variant
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger
from qvggt_deploy.model.checkpoint import ModelSource

logger = get_logger(__name__)

REPORT_MARK = "bench.json"  # what makes a folder a bench report (replaced by a new one)


@dataclass(frozen=True)
class BenchOptions:
    """What to time: ``backend`` ort (``models``: (name, .onnx)), trt (``engines``: (name,
    .engine)) or torch (the float ``model`` plus one fake-quantized variant per ``recipes``)."""

    backend: str
    models: Sequence[Tuple[str, Path]] = ()
    engines: Sequence[Tuple[str, Path]] = ()
    recipes: Sequence[Tuple[str, Path]] = ()
    model: ModelSource = field(default_factory=ModelSource)
    height: Optional[int] = None  # torch: None = the preset's size
    width: Optional[int] = None
    frames: int = 2
    warmup: int = 1
    runs: int = 5
    threads: Optional[int] = None
    accuracy_level: int = 0  # ort
    mem_arena: bool = True  # ort
    arena_extend: str = "power_of_two"  # ort
    interleave: bool = False  # ort
    cuda_graph: bool = False  # trt
    layers: int = 20  # trt
    tegrastats: str = "auto"  # trt
    plugin: Optional[str] = None  # trt
    title: Optional[str] = None

    def __post_init__(self):
        if self.backend not in ("ort", "torch", "trt"):
            raise QvggtError(f"unknown bench backend {self.backend!r}; choose ort, torch or trt")
        if self.runs < 1 or self.warmup < 0 or self.frames < 1:
            raise QvggtError("--runs and --frames must be at least 1, --warmup at least 0")


@dataclass
class BenchReport:
    title: str
    machine: str
    settings: Dict[str, Any]
    results: List[Dict[str, Any]]
    notes: List[str]


def variants(opts: BenchOptions) -> List[Variant]:
    """The variants to time, every file and option checked first."""
    if opts.backend == "trt":
        return _trt_variants(opts)
    if opts.engines:
        raise QvggtError("--engine is for --backend trt")
    found = _ort_variants(opts) if opts.backend == "ort" else _torch_variants(opts)
    if not found:
        raise QvggtError("nothing to benchmark: pass --model (ort), --engine (trt) or use --backend torch")
    return found


def _trt_variants(opts: BenchOptions) -> List[Variant]:
    from qvggt_deploy.lazy import is_available
    from qvggt_deploy.trt.sidecar import sidecar_path

    if opts.models or opts.recipes or opts.interleave:
        raise QvggtError("--backend trt takes --engine files (not --model, --recipe or --interleave)")
    if not is_available("tensorrt"):
        from qvggt_deploy.trt.builder import NO_TENSORRT

        raise QvggtError(NO_TENSORRT)
    trt_args = ["--layers", str(opts.layers), "--tegrastats", opts.tegrastats]
    trt_args += ["--cuda-graph"] if opts.cuda_graph else []
    trt_args += ["--plugin", str(opts.plugin)] if opts.plugin else []
    out = []
    for name, path in opts.engines:
        if not path.is_file() and not sidecar_path(path).is_file():  # a split build has only the sidecar
            raise QvggtError(f"--engine {name}: file not found: {path}")
        out.append(Variant(name, "trt", model=str(path), trt_args=trt_args))
    if not out:
        raise QvggtError("nothing to benchmark: pass --model (ort), --engine (trt) or use --backend torch")
    return out


def _ort_variants(opts: BenchOptions) -> List[Variant]:
    from qvggt_deploy.export.validate import load_checked

    if opts.recipes:
        raise QvggtError("--recipe is for --backend torch; export the recipe and pass --model")
    out, shapes = [], {}
    for name, path in opts.models:
        if not path.is_file():
            raise QvggtError(f"--model {name}: file not found: {path}")
        _, meta = load_checked(path, require_metadata=("preset", "height", "width"))
        shapes[name] = (meta.get("preset"), meta.get("height"), meta.get("width"))
        out.append(Variant(name, "ort", model=str(path), accuracy_level=opts.accuracy_level,
                           mem_arena=opts.mem_arena, arena_extend=opts.arena_extend))
    if len(set(shapes.values())) > 1:  # ratios between different workloads mean nothing
        raise QvggtError("the --model files were exported for different presets or sizes: "
                         + ", ".join(f"{n} {p} {h}x{w}" for n, (p, h, w) in shapes.items()))
    return out


def _torch_variants(opts: BenchOptions) -> List[Variant]:
    from qvggt_deploy.model.presets import get_preset

    if opts.models:
        raise QvggtError("--model is for --backend ort")
    if opts.interleave:
        raise QvggtError("--interleave is for --backend ort (torch variants are timed each in its own process)")
    size = get_preset(opts.model.preset).img_size
    common = {"preset": opts.model.preset, "checkpoint": opts.model.checkpoint, "allow_random": opts.model.allow_random,
              "height": opts.height or size, "width": opts.width or size}
    out = [Variant("torch-fp32", "torch", **common)]
    for name, path in opts.recipes:
        out.append(Variant(f"torch-{name}", "torch", recipe=str(path), **common))
    return out


def run_bench(opts: BenchOptions) -> BenchReport:
    """Time every variant (each in a fresh process, or ort ones round-robin with ``interleave``)."""
    from qvggt_deploy.bench.run import measure, measure_interleaved, with_ratios

    todo = variants(opts)
    if opts.interleave:
        results = [measure(v, opts.frames, 0, 1, opts.threads) for v in todo]  # RSS, load, size
        timing = measure_interleaved(todo, opts.frames, opts.warmup, opts.runs, opts.threads)
        for r in results:
            r["rss_run_latency"] = r["median"]
            r.update(timing[r["label"]])
            r["timing"] = "interleaved"
    else:
        results = [measure(v, opts.frames, opts.warmup, opts.runs, opts.threads) for v in todo]
    results = with_ratios(results)
    r0 = results[0]
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"
    title = opts.title or f"qvggt bench ({opts.backend}, {opts.frames} frames at {r0['height']}x{r0['width']})"
    if opts.backend == "trt":
        machine += f"; GPU: {results[0].get('device', {}).get('name', '?')}"
    notes = [f"machine: {machine}; threads: {opts.threads or 'all'}; warm-up {opts.warmup}, {opts.runs} timed runs"
             + ("; ORT memory arena off" if opts.backend == "ort" and not opts.mem_arena else "")
             + (f"; ORT arena extend: {opts.arena_extend}" if opts.backend == "ort" else ""),
             "peak RSS = ru_maxrss of a fresh process per variant (runtime + model + runs)"
             + ("; latencies timed round-robin in one process (each variant under the same machine load)"
                if opts.interleave else "; each variant timed in its own process"),
             f"ratios against `{r0['label']}`"]
    if opts.backend == "trt":
        notes.append("trt latency: CUDA events around the engine's enqueue" + (" (CUDA-graph replay)" if opts.cuda_graph
                     else "") + ", copies excluded; end to end (copies included) in the TensorRT section")
    if opts.backend == "torch" and opts.model.allow_random and not opts.model.checkpoint:
        notes.append(f"random weights (--allow-random-weights): {opts.model.preset} timed without its checkpoint")
    return BenchReport(title, machine, settings(opts), results, notes)


def settings(opts: BenchOptions) -> Dict[str, Any]:
    """The options as JSON values (paths as strings, (name, path) pairs as NAME=PATH)."""
    doc = dataclasses.asdict(opts)
    for key in ("models", "engines", "recipes"):
        doc[key] = [f"{n}={p}" for n, p in getattr(opts, key)]
    return doc


def write_bench(report: BenchReport, json_path, md_path, png_path) -> Path:
    """The report as JSON, a Markdown table and a PNG chart; returns the chart's path."""
    from qvggt_deploy.bench.report import write_chart, write_markdown
    from qvggt_deploy.fileio import write_json

    write_json(json_path, {"title": report.title, "machine": report.machine, "settings": report.settings,
                           "results": report.results})
    chart = write_chart(report.results, png_path, report.title)
    write_markdown(report.results, md_path, report.title, report.notes, chart)
    return chart


def report_paths(folder) -> Tuple[Path, Path, Path]:
    """bench.json, bench.md and bench.png in ``folder`` (``qvggt bench --out``)."""
    folder = Path(folder)
    return folder / "bench.json", folder / "bench.md", folder / "bench.png"
