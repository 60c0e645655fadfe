"""The demo's report: README.md (stages, benchmark, accuracy, figures, lint) and demo.json."""
from __future__ import annotations

import json
from pathlib import Path

from qvggt_deploy.demo.pipeline import Pipeline
from qvggt_deploy.fileio import write_json, write_text

MARK = "demo.json"  # what makes a folder a demo report (the demo writes into it again)


def write_report(out: Path, p: Pipeline, opts, size: int, total: float) -> None:
    """README.md and demo.json of a finished run (``opts``: the run's DemoOptions)."""
    random = p.stages["model"].artifacts.get("random_weights") == "yes" if "model" in p.stages else True
    lines = ["# qvggt demo", ""]
    if random:
        lines += ["> **Random weights.** The embedded tiny checkpoint is not in this build, so the model is "
                  "untrained: accuracy and metrics below describe quantizing a random network, not VGGT.", ""]
    lines += [f"Preset `{opts.preset}` at {size}x{size}, {opts.frames} frames per scene; calibration: "
              f"{opts.method}, {opts.calib_scenes} generated scenes, INT4 group {opts.group}, mixed plan at "
              f"{opts.avg_bits} bits per weight. Total {total:.0f} s.", "", "## Stages", "",
              "| stage | status | seconds | detail |", "|---|---|---|---|"]
    for s in p.stages.values():
        lines.append(f"| {s.name} | {s.status} | {s.seconds:.1f} | {s.detail.replace('|', '/')} |")
    sections = [("Sensitivity (task-loss increase per unit)", "sensitivity.png", "sensitivity"),
                ("Size, latency, peak memory (ONNX Runtime, CPU)", "bench/bench.png", "bench"),
                ("Depth maps", "depth.png", "figures"), ("Point clouds", "points.png", "figures")]
    # Stages delete their earlier outputs when they start (``fresh``), so what exists is this run's.
    if p.ok("bench") or (out / "bench" / "bench.md").exists():
        md = out / "bench" / "bench.md"
        if md.exists():
            table = [l for l in md.read_text(encoding="utf-8").splitlines() if l.startswith("|")]
            lines += ["", "## Benchmark", ""] + table
    check_json = out / "check" / "check.json"
    if check_json.exists():
        doc = json.loads(check_json.read_text(encoding="utf-8"))
        lines += ["", "## Accuracy", "", f"Check {'PASSED' if doc['passed'] else 'FAILED'}; full report: "
                  "[check/check.md](check/check.md).", "",
                  "| runner | AUC@30 (%) | AbsRel | Chamfer |", "|---|---|---|---|"]
        for runner, m in doc.get("metrics_vs_ground_truth", {}).items():
            lines.append(f"| {runner} | {m.get('auc@30', float('nan')):.2f} | {m.get('abs_rel', float('nan')):.4f} "
                         f"| {m.get('chamfer', float('nan')):.4f} |")
        for prior, m in doc.get("camera_priors_vs_ground_truth", {}).items():
            lines.append(f"| prior: {prior} cameras (never sees the images) | {m.get('auc@30', float('nan')):.2f} "
                         f"| - | - |")
    for title, png, stage in sections:
        if (out / png).exists() and p.ok(stage):
            lines += ["", f"## {title}", "", f"![{title}]({png})"]
    lint_json = out / "lint.json"
    if lint_json.exists():
        doc = json.loads(lint_json.read_text(encoding="utf-8"))
        lines += ["", "## Lint", "", "| file | target | errors | warnings |", "|---|---|---|---|"]
        for f in doc["files"]:
            lines.append(f"| {Path(f['path']).name} | {f['target']} | {len(f['errors'])} | {len(f['warnings'])} |")
    write_text(out / "README.md", "\n".join(lines) + "\n")
    write_json(out / MARK, {"seconds": total, "random_weights": random,
                            "stages": [vars(s) for s in p.stages.values()]})
