"""Benchmark variants, each in a fresh subprocess (:mod:`.worker`), one after the other."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)


@dataclass
class Variant:
    """One thing to measure: ``backend`` "ort" (``model`` = .onnx), "trt" (``model`` = .engine) or
    "torch" (``preset`` [+ ``recipe``])."""

    label: str
    backend: str
    model: Optional[str] = None
    accuracy_level: int = 0
    mem_arena: bool = True
    arena_extend: str = "power_of_two"
    preset: Optional[str] = None
    checkpoint: Optional[str] = None
    recipe: Optional[str] = None
    allow_random: bool = False
    height: Optional[int] = None
    width: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict)
    trt_args: List[str] = field(default_factory=list)  # worker options of the trt backend

    def argv(self) -> List[str]:
        args = ["--backend", self.backend]
        if self.backend == "ort":
            args += ["--model", str(self.model), "--accuracy-level", str(self.accuracy_level)]
            if not self.mem_arena:
                args.append("--no-arena")
            args += ["--arena-extend", self.arena_extend]
        elif self.backend == "trt":
            args += ["--model", str(self.model), *self.trt_args]
        else:
            args += ["--preset", self.preset, "--height", str(self.height), "--width", str(self.width)]
            if self.checkpoint:
                args += ["--checkpoint", str(self.checkpoint)]
            if self.recipe:
                args += ["--recipe", str(self.recipe)]
            if self.allow_random:
                args.append("--allow-random-weights")
        return args


def measure(variant: Variant, frames: int, warmup: int, runs: int, threads: Optional[int] = None,
            timeout: float = 3600.0) -> Dict[str, Any]:
    """Run the worker for one variant; returns its JSON result plus ``label``."""
    cmd = [sys.executable, "-m", "qvggt_deploy.bench.worker", *variant.argv(), "--frames", str(frames),
           "--warmup", str(warmup), "--runs", str(runs)]
    if threads:
        cmd += ["--threads", str(threads)]
    logger.info("bench %s: %s", variant.label, " ".join(cmd[3:]))
    proc = _run_worker(cmd, f"bench {variant.label}", timeout)
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError) as exc:
        raise QvggtError(f"bench {variant.label}: worker printed no result ({exc})") from exc
    result["label"] = variant.label
    result.update(variant.extra)
    logger.info("bench %s: median %.3f s, p90 %.3f s, peak RSS %.2f GB", variant.label, result["median"],
                result["p90"], result["peak_rss_bytes"] / 1e9)
    return result


def _run_worker(cmd: List[str], what: str, timeout: float) -> subprocess.CompletedProcess:
    """Run a worker process; one-line QvggtError on a timeout or a failure (its last stderr lines)."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise QvggtError(f"{what}: no result within {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise QvggtError(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return proc


def with_ratios(results: List[Dict[str, Any]], baseline: int = 0) -> List[Dict[str, Any]]:
    """Add latency, peak-RSS and size ratios against ``results[baseline]``."""
    base = results[baseline]
    for r in results:
        r["latency_ratio"] = r["median"] / base["median"]
        r["rss_ratio"] = r["peak_rss_bytes"] / base["peak_rss_bytes"]
        r["size_ratio"] = (r["model_bytes"] / base["model_bytes"]) if r.get("model_bytes") and base.get("model_bytes") else None
    return results


def measure_interleaved(variants: List[Variant], frames: int, warmup: int, runs: int,
                        threads: Optional[int] = None, timeout: float = 7200.0) -> Dict[str, Dict[str, Any]]:
    """Latencies of ORT variants timed round-robin in one process (label -> latencies, median,
    p90). On a machine shared with other jobs this keeps the variants' latency *ratios* fair: every
    variant sees the same load, run after run."""
    if any(v.backend != "ort" for v in variants):
        raise QvggtError("interleaved timing is for ort variants")
    cmd = [sys.executable, "-m", "qvggt_deploy.bench.worker", "--backend", "ort", "--interleave",
           *[str(v.model) for v in variants], "--frames", str(frames), "--warmup", str(warmup), "--runs", str(runs),
           "--accuracy-level", str(variants[0].accuracy_level), "--arena-extend", variants[0].arena_extend]
    if not variants[0].mem_arena:
        cmd.append("--no-arena")
    if threads:
        cmd += ["--threads", str(threads)]
    logger.info("bench (interleaved): %s", ", ".join(v.label for v in variants))
    proc = _run_worker(cmd, "interleaved bench", timeout)
    by_path = json.loads(proc.stdout.strip().splitlines()[-1])["interleaved"]
    return {v.label: by_path[str(v.model)] for v in variants}
