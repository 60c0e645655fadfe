"""Paired comparison of two ablation rows from different runs (e.g. one calibration option changed),
or of a row and a ``qvggt eval --json`` report.

``qvggt ablate`` compares the rows of one run; an option it does not vary (``--task-dense-frames``,
``--top-m``) is compared by running the row again into another folder and pairing the two here,
scene by scene on the held-out scenes both runs scored (matched by seed), with standard errors:

    python benchmarks/compare_rows.py A/ablation.json:w4g128/qvggt B/ablation.json:w4g128/qvggt \\
        --json benchmarks/results/task_dense_frames.json

Prints a Markdown table (B minus A) and writes the numbers as JSON with ``--json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qvggt_deploy.errors import QvggtError  # noqa: E402
from qvggt_deploy.quant.ablation_report import PAIRED_METRICS, paired  # noqa: E402


def load_row(spec: str) -> dict:
    """``FILE:ROW`` (a row of an ablation JSON) or ``FILE`` (a ``qvggt eval --json`` report) -> a row
    with its per-scene results and where it came from."""
    path, sep, name = spec.partition(":")
    result = json.loads(Path(path).read_text())
    if not sep and "per_scene" in result:  # qvggt eval --json: one model on one set of scenes
        return {"file": path, "name": Path(path).stem, "avg_bits": None, "metrics": result["mean"],
                "per_scene": result["per_scene"], "settings": result.get("settings", {})}
    if not sep or not name:
        raise QvggtError(f"{spec}: expected FILE:ROW (e.g. benchmarks/results/ablation_tiny/ablation.json:w4g128/qvggt) "
                         f"or a qvggt eval --json FILE")
    rows = {r["name"]: r for r in result["rows"]}
    if name not in rows:
        raise QvggtError(f"{path} has no row {name}; it has {', '.join(rows)}")
    return {"file": path, "settings": result.get("settings", {}), **rows[name]}


def _side(row: dict) -> dict:
    fp16 = row.get("fp16_activations")
    return {"file": row["file"], "row": row["name"], "options": row.get("options"), "avg_bits": row["avg_bits"],
            "calib_seconds": row.get("calib_seconds"), "metrics": row["metrics"],
            "metrics_fp16_activations": fp16["metrics"] if fp16 else None}


def compare(a: dict, b: dict) -> dict:
    """B minus A per metric (mean, SE, n), with fp32 and, where both have them, fp16 activations."""
    out = {"a": _side(a), "b": _side(b), "b_minus_a": {}}
    fa, fb = a.get("fp16_activations"), b.get("fp16_activations")
    for label, ra, rb in (("fp32", a, b), ("fp16", fa, fb)):
        if ra and rb:
            out["b_minus_a"][label] = {k: paired_with_means(rb["per_scene"], ra["per_scene"], k) for k in PAIRED_METRICS}
    return out


def paired_with_means(b_scenes, a_scenes, key: str):
    """``paired(b, a)`` plus each side's mean over the scenes both scored (the rows' own means
    can be over different scene sets)."""
    d = paired(b_scenes, a_scenes, key)
    if d is not None:
        common = {r["seed"] for r in b_scenes} & {r["seed"] for r in a_scenes}
        for side, scenes in (("a_mean", a_scenes), ("b_mean", b_scenes)):
            vals = [r[key] for r in scenes if r["seed"] in common and r.get(key) is not None]
            d[side] = sum(vals) / len(vals)
    return d


def markdown(c: dict) -> str:
    def side(label: str, x: dict) -> str:
        about = [f"{x['avg_bits']:.3f} bits" if x["avg_bits"] is not None else None,
                 f"calibration {x['calib_seconds']:.0f} s" if x.get("calib_seconds") is not None else None]
        about = ", ".join(a for a in about if a)
        return f"{label}: `{x['file']}` {x['row']}" + (f" ({about})" if about else "")

    lines = [side("A", c["a"]), side("B", c["b"]), "",
             "| activations | metric | A (paired scenes) | B (paired scenes) | B - A (paired) | n |", "|---|---|---|---|---|---|"]
    for label, diffs in c["b_minus_a"].items():
        for metric, d in diffs.items():
            if d is not None:
                lines.append(f"| {label} | {metric} | {d['a_mean']:.4f} | {d['b_mean']:.4f} | {d['mean']:+.3g} +- "
                             f"{d['se']:.2g} | {d['n']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="FILE:ROW (ablation JSON) or FILE (qvggt eval --json), the baseline")
    parser.add_argument("b", help="FILE:ROW or FILE, compared with it")
    parser.add_argument("--json", help="write the comparison here")
    args = parser.parse_args(argv)
    try:
        result = compare(load_row(args.a), load_row(args.b))
    except (QvggtError, OSError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown(result), end="")
    if args.json:
        from qvggt_deploy.fileio import write_json

        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
