"""One TensorRT engine timed on its GPU (``qvggt bench --backend trt``), run inside the bench worker.

- latency: CUDA events around the engine's enqueue (``execute_async_v3`` of each stage, or one
  CUDA-graph launch of them) after warm-up runs; the host-to-device and back copies are timed
  separately, end to end, with the wall clock (``TrtRunner.infer``).
- per-layer times: TensorRT's ``IProfiler`` on extra runs after the timed ones (profiling slows
  execution), mean per layer, slowest first; layers of the W4A16 plugin marked.
- memory: the engine's activation memory (``device_memory_size_v2``) and the device memory taken by
  loading the engine and by the first inference (``cudaMemGetInfo`` before and after).
- on a Jetson: ``tegrastats`` samples (RAM, power rails) while the timed runs go.

TensorRT 10.x and cuda-bindings are imported on use; PyCUDA is not used here.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

import numpy as np

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)

TEGRASTATS = "tegrastats"
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)mW/(\d+)mW")


def make_profiler(trt):
    """A ``trt.IProfiler`` collecting every ``report_layer_time`` call (layer -> list of ms)."""

    class LayerProfiler(trt.IProfiler):
        def __init__(self):
            trt.IProfiler.__init__(self)
            self.times: Dict[str, List[float]] = defaultdict(list)
            self.order: List[str] = []

        def report_layer_time(self, layer_name, ms):
            if layer_name not in self.times:
                self.order.append(layer_name)
            self.times[layer_name].append(float(ms))

    return LayerProfiler()


def plugin_layer_names(trt, engine, onnx_file: Optional[str] = None) -> Set[str]:
    """Names of the W4A16 plugin layers: from the engine inspector where the engine was built with
    detailed profiling verbosity (``LayerType`` Plugin*), and from the plugin nodes of the ONNX file
    the sidecar names, where that file is here (TensorRT names layers after ONNX nodes)."""
    from qvggt_deploy.ops.plugin_contract import OP_TYPE

    names: Set[str] = set()
    inspector = engine.create_engine_inspector()
    for i in range(engine.num_layers):
        text = inspector.get_layer_information(i, trt.LayerInformationFormat.JSON)
        try:
            info = json.loads(text)
        except (TypeError, ValueError):
            continue
        if isinstance(info, dict) and "plugin" in str(info.get("LayerType", "")).lower():
            names.add(str(info.get("Name")))
    if onnx_file and Path(onnx_file).is_file():
        import onnx

        graph = onnx.load(str(onnx_file), load_external_data=False).graph
        names.update(n.name for n in graph.node if n.op_type == OP_TYPE and n.name)
    return names


def is_plugin_layer(name: str, plugins: Set[str]) -> bool:
    """A layer is the plugin's when it is, or TensorRT fused it with (``a + b``), a plugin node."""
    return name in plugins or any(part.strip() in plugins for part in name.split(" + "))


def parse_tegrastats(line: str) -> Optional[Dict[str, Any]]:
    """One tegrastats line -> ``{"ram_mb", "ram_total_mb", "power_mw": {rail: mW}}`` (None if no RAM)."""
    ram = _RAM.search(line)
    if not ram:
        return None
    return {"ram_mb": int(ram[1]), "ram_total_mb": int(ram[2]),
            "power_mw": {rail: int(now) for rail, now, _ in _RAIL.findall(line)}}


def summarize_tegrastats(samples: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Peak and mean RAM, mean and peak power per rail, over the samples."""
    if not samples:
        return {"samples": 0}
    rails = sorted({r for s in samples for r in s["power_mw"]})
    ram = [s["ram_mb"] for s in samples]
    return {"samples": len(samples), "ram_peak_mb": max(ram), "ram_mean_mb": float(np.mean(ram)),
            "ram_total_mb": samples[0]["ram_total_mb"],
            "power_mw": {r: {"mean": float(np.mean([s["power_mw"][r] for s in samples if r in s["power_mw"]])),
                             "peak": max(s["power_mw"][r] for s in samples if r in s["power_mw"])} for r in rails}}


def on_jetson() -> bool:
    return Path("/etc/nv_tegra_release").is_file() and shutil.which(TEGRASTATS) is not None


class Tegrastats:
    """``tegrastats --interval MS`` in the background; its parsed lines in ``samples``."""

    def __init__(self, interval_ms: int = 100):
        self.interval_ms = interval_ms
        self.samples: List[Dict[str, Any]] = []
        self._proc = None
        self._thread = None

    def __enter__(self):
        exe = shutil.which(TEGRASTATS)
        if exe is None:
            raise QvggtError("tegrastats is not on PATH (it comes with JetPack); use --tegrastats off")
        self._proc = subprocess.Popen([exe, "--interval", str(self.interval_ms)], stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        deadline = time.perf_counter() + max(3.0, 5 * self.interval_ms / 1e3)
        while not self.samples and self._proc.poll() is None and time.perf_counter() < deadline:
            time.sleep(0.01)  # the first line before the timed runs: a short run still gets samples
        return self

    def _read(self):
        for line in self._proc.stdout:
            sample = parse_tegrastats(line)
            if sample is not None:
                sample["t"] = time.perf_counter()
                self.samples.append(sample)

    def __exit__(self, *exc):
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._thread.join(timeout=5)
        return False


def measure_engine(engine_path, frames: int, warmup: int, runs: int, *, cuda_graph: bool = False,
                   layers: int = 20, tegrastats: str = "auto", tegrastats_interval_ms: int = 100,
                   plugin_library=None) -> Dict[str, Any]:
    """Time ``engine_path`` (a split build's ``.engine`` works too) on ``frames`` random frames.

    Args:
        frames, warmup, runs: frames per inference, untimed runs, timed runs.
        cuda_graph: capture the enqueue once in a CUDA graph and time its launches.
        layers: report the slowest N layers (IProfiler over ``runs`` extra runs); 0 skips profiling.
        tegrastats: "auto" (on a Jetson), "on" or "off".
        plugin_library: the plugin .so (defaults to the sidecar's).

    Returns:
        the bench worker's result fields (latencies in seconds) plus the TensorRT ones.
    """
    from qvggt_deploy.graph.io import INPUT_NAME
    from qvggt_deploy.backends.trt.runner import TrtRunner, _engine_paths
    from qvggt_deploy.trt.builder import require_tensorrt, trt
    from qvggt_deploy.trt.cuda import get_api
    from qvggt_deploy.trt.sidecar import read_sidecar

    require_tensorrt()
    path = Path(engine_path)
    if tegrastats not in ("auto", "on", "off"):
        raise QvggtError(f"tegrastats must be auto, on or off, got {tegrastats!r}")
    sample_power = tegrastats == "on" or (tegrastats == "auto" and on_jetson())
    cuda = get_api("cuda-bindings")
    device = cuda.device_info()
    free0, total = cuda.mem_info()
    start = time.perf_counter()
    runner = TrtRunner(path, plugin_library=plugin_library, cuda="cuda-bindings")
    runner.activate()
    try:
        load_seconds = time.perf_counter() - start
        free1, _ = cuda.mem_info()
        shape = runner.get_input_metadata()[INPUT_NAME].shape
        height, width = int(shape[2]), int(shape[3])
        images = np.random.default_rng(0).random((frames, 3, height, width), dtype=np.float32)
        e2e = []
        for _ in range(max(1, warmup)):  # sets every shape and address; allocates the I/O buffers
            runner.infer({INPUT_NAME: images})
        free2, _ = cuda.mem_info()
        stream = runner.stream

        def enqueue():
            for stage in runner.stages:
                if not stage.context.execute_async_v3(stream):
                    raise QvggtError("TensorRT execution failed (its log above says why)")

        graph = None
        launch = enqueue
        if cuda_graph:
            enqueue()  # TensorRT applies deferred shape updates on the first enqueue, outside a capture
            cuda.stream_synchronize(stream)
            cuda.capture_begin(stream)
            enqueue()
            graph = cuda.capture_end(stream)
            launch = lambda: cuda.graph_launch(graph[1], stream)  # noqa: E731
        for _ in range(warmup):
            launch()
        cuda.stream_synchronize(stream)
        ev_start, ev_end = cuda.event_create(), cuda.event_create()
        times = []
        sampler = Tegrastats(tegrastats_interval_ms) if sample_power else None
        if sampler:
            sampler.__enter__()
        try:
            for _ in range(runs):
                cuda.event_record(ev_start, stream)
                launch()
                cuda.event_record(ev_end, stream)
                times.append(cuda.event_elapsed_ms(ev_start, ev_end) / 1e3)
        finally:
            if sampler:
                sampler.__exit__(None, None, None)
        cuda.event_destroy(ev_start)
        cuda.event_destroy(ev_end)
        if graph is not None:
            cuda.graph_destroy(*graph)
        for _ in range(runs):
            t = time.perf_counter()
            runner.infer({INPUT_NAME: images})
            e2e.append(time.perf_counter() - t)
        layer_rows = profile_layers(trt, runner, enqueue, runs, layers, path, read_sidecar) if layers else None
        stages = [s.engine for s in runner.stages]
        activation = [int(e.device_memory_size_v2) for e in stages]
    finally:
        runner.deactivate()
    engine_files = _engine_paths(path)
    result = {
        "backend": "trt", "model": str(path), "device": device, "frames": frames, "height": height, "width": width,
        "load_seconds": load_seconds, "latencies": times, "median": float(np.median(times)),
        "p90": float(np.percentile(times, 90)), "timing": "cuda events" + (" (CUDA graph)" if cuda_graph else ""),
        "end_to_end_latencies": e2e, "end_to_end_median": float(np.median(e2e)),
        "model_bytes": sum(p.stat().st_size for p in engine_files),
        "activation_bytes": max(activation) if len(activation) > 1 else activation[0],
        "activation_bytes_per_stage": activation,
        "device_bytes_engine": free0 - free1, "device_bytes_after_first_run": free0 - free2,
        "device_total_bytes": total, "cuda_graph": cuda_graph, "layers": layer_rows,
        "tegrastats": summarize_tegrastats(sampler.samples) if sampler else None,
    }
    return result


def profile_layers(trt, runner, enqueue, runs: int, top: int, path: Path, read_sidecar) -> Dict[str, Any]:
    """Mean time per layer over ``runs`` profiled runs: the ``top`` slowest (plugin layers marked),
    the total and the plugin layers' share of it."""
    profilers = []
    for stage in runner.stages:
        profilers.append(make_profiler(trt))
        stage.context.profiler = profilers[-1]
    for _ in range(max(1, runs)):
        enqueue()
        runner.cuda.stream_synchronize(runner.stream)
    onnx_file = ((read_sidecar(path) or {}).get("onnx") or {}).get("file")
    plugins: Set[str] = set()
    rows = []
    for index, (stage, profiler) in enumerate(zip(runner.stages, profilers)):
        plugins |= plugin_layer_names(trt, stage.engine, onnx_file)
        for name in profiler.order:
            ms = profiler.times[name]
            rows.append({"layer": name, "stage": index, "mean_ms": float(np.mean(ms)), "runs": len(ms)})
    total = sum(r["mean_ms"] for r in rows)
    for r in rows:
        r["share"] = r["mean_ms"] / total if total else 0.0
        r["plugin"] = is_plugin_layer(r["layer"], plugins)
    rows.sort(key=lambda r: -r["mean_ms"])
    return {"count": len(rows), "total_ms": total, "plugin_layers": sum(r["plugin"] for r in rows),
            "plugin_share": sum(r["share"] for r in rows if r["plugin"]), "slowest": rows[:top]}
