"""Method B against method A over several calibration sets: is the difference larger than what
changing the calibration scenes alone does?

A paired comparison of two rows (``compare_rows.py``, the ablation's vs-AWQ columns) has a
standard error over the evaluation scenes only; it says nothing about how much the same method
moves when it is calibrated on other scenes. Given each method calibrated with several seeds
(``qvggt calibrate --seed S``, every recipe scored on the same held-out scenes), this prints per
seed B - A (paired over scenes, +- SE), the mean of those differences over seeds with the standard
error between seeds (which holds both sources of noise), and how far each method moves between
its own seeds:

    python benchmarks/calibration_seeds.py --a A_SEED0 A_SEED1 ... --b B_SEED0 B_SEED1 ... \\
        [--metric auc@30] [--json OUT.json]

Each run is ``FILE:ROW`` (a row of an ablation JSON) or ``FILE`` (a ``qvggt eval --json``
report); ``--a`` and ``--b`` are paired by position, so give them in the same seed order.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from compare_rows import load_row, paired_with_means  # noqa: E402

from qvggt_deploy.errors import QvggtError  # noqa: E402
from qvggt_deploy.quant.ablation_report import mean_se  # noqa: E402


def across_seeds(a_rows: List[dict], b_rows: List[dict], key: str = "auc@30") -> dict:
    """Per-seed paired B - A, their mean with the SE between seeds, and each method's seed spread
    (means over the evaluation scenes every run scored)."""
    if len(a_rows) != len(b_rows) or not a_rows:
        raise QvggtError(f"--a and --b need the same number of runs (one per calibration seed), got "
                         f"{len(a_rows)} and {len(b_rows)}")
    common = set.intersection(*({r["seed"] for r in row["per_scene"]} for row in [*a_rows, *b_rows]))
    if len(common) < 2:
        raise QvggtError("the runs share fewer than two evaluation scenes")
    per_seed = []
    for a, b in zip(a_rows, b_rows):
        d = paired_with_means([r for r in b["per_scene"] if r["seed"] in common],
                              [r for r in a["per_scene"] if r["seed"] in common], key)
        per_seed.append({"a_mean": d.pop("a_mean"), "b_mean": d.pop("b_mean"), "b_minus_a": d})
    spread = {}
    for side in ("a", "b"):
        means = [s[f"{side}_mean"] for s in per_seed]
        spread[side] = {**mean_se(means), "range": max(means) - min(means)}
    return {"metric": key, "scenes": len(common), "per_seed": per_seed,
            "b_minus_a_over_seeds": mean_se([s["b_minus_a"]["mean"] for s in per_seed]), "spread": spread}


def markdown(result: dict, a_label: str = "A", b_label: str = "B") -> str:
    key = result["metric"]
    lines = [f"{key} on {result['scenes']} evaluation scenes; per seed B - A is paired over those scenes (+- SE).", "",
             f"| seed | {a_label} | {b_label} | B - A (paired) |", "|---|---|---|---|"]
    for i, s in enumerate(result["per_seed"]):
        d = s["b_minus_a"]
        lines.append(f"| {i} | {s['a_mean']:.2f} | {s['b_mean']:.2f} | {d['mean']:+.2f} +- {d['se']:.2f} |")
    o, sa, sb = result["b_minus_a_over_seeds"], result["spread"]["a"], result["spread"]["b"]
    lines += [f"| mean over {o['n']} seeds | {sa['mean']:.2f} | {sb['mean']:.2f} | {o['mean']:+.2f} +- {o['se']:.2f} "
              f"(SE between seeds) |", "",
              f"Range between seeds: {a_label} {sa['range']:.2f}, {b_label} {sb['range']:.2f}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", nargs="+", required=True, help="runs of the baseline, one per calibration seed")
    parser.add_argument("--b", nargs="+", required=True, help="runs of the method, in the same seed order")
    parser.add_argument("--metric", default="auc@30", help="per-scene metric. Defaults to auc@30.")
    parser.add_argument("--labels", default="A,B", help="names of the two methods in the table. Defaults to A,B.")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args(argv)
    try:
        result = across_seeds([load_row(x) for x in args.a], [load_row(x) for x in args.b], args.metric)
    except (QvggtError, OSError, json.JSONDecodeError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result["a_runs"], result["b_runs"] = args.a, args.b
    print(markdown(result, *args.labels.split(",", 1)), end="")
    if args.json:
        from qvggt_deploy.fileio import write_json

        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
