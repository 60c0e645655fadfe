"""The ablation's statistics, acceptance checks, Markdown and chart.

Every difference is paired: the same held-out scenes are scored by every row, so a row is
compared with its reference scene by scene (``d_i = row_i - ref_i``) and the mean difference is
reported with its standard error ``sd(d) / sqrt(n)``. That removes the scene-to-scene spread
(which dominates AUC@30) from the comparison. Intervals are ``mean +- 2 SE`` (about 95% for the
hundreds of scenes the ablation uses).

References of a row: FP32, and the AWQ row of equal bits (``awq+mp`` for mixed rows, ``awq``
otherwise); its marginal effect is the paired difference to the row it adds to
(:attr:`~qvggt_deploy.quant.ablation.Row.prev`). A pair whose average bits differ is flagged
(``equal_bits: false``), never silently compared.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

from qvggt_deploy.log import get_logger
from qvggt_deploy.quant.ablation import FP32, ROWS, SETTINGS

logger = get_logger(__name__)

PAIRED_METRICS = ("auc@30", "abs_rel", "chamfer")
BITS_TOLERANCE = 1e-6
INTERVAL = "mean +- 2 SE"

# Done-means of the ablation (issue 13).
W4_MAX_BITS = 4.6
W4_MAX_AUC_DROP = 1.0
W4_MAX_ABS_REL = 0.03
W4_MAX_CHAMFER = 0.05
AHEAD_SE = 2.0


def paired(rows: Sequence[Dict], refs: Sequence[Dict], key: str) -> Optional[Dict[str, float]]:
    """Mean and standard error of ``row - ref`` over the scenes both scored (matched by seed,
    NaN/None skipped); None with fewer than two such scenes."""
    by_seed = {r.get("seed"): r.get(key) for r in refs}
    d = []
    for r in rows:
        a, b = r.get(key), by_seed.get(r.get("seed"))
        if a is not None and b is not None and not (math.isnan(a) or math.isnan(b)):
            d.append(a - b)
    return mean_se(d) if len(d) >= 2 else None


def mean_se(values: Sequence[float]) -> Dict[str, float]:
    """Mean, its standard error (NaN for one value) and the mean +- 2 SE interval."""
    n = len(values)
    mean = sum(values) / n
    se = math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1) / n) if n > 1 else float("nan")
    return {"mean": mean, "se": se, "n": n, "lo": mean - 2 * se, "hi": mean + 2 * se}


def equal_bits(a: Dict, b: Dict) -> bool:
    return abs(a["avg_bits"] - b["avg_bits"]) <= BITS_TOLERANCE


def compare(row: Dict, ref: Dict, per_scene: str = "per_scene") -> Dict:
    """Paired differences of ``row`` against ``ref`` on :data:`PAIRED_METRICS`."""
    return {"ref": ref["name"], "equal_bits": equal_bits(row, ref), "ref_avg_bits": ref["avg_bits"],
            "metrics": {k: paired(row[per_scene], ref["per_scene"], k) for k in PAIRED_METRICS}}


def analyse(result: Dict) -> Dict:
    """Add to every row ``paired`` (vs FP32, vs the AWQ row of equal bits) and ``marginal`` (vs
    the row it adds to), and to fp16-activation results their differences to the same row with
    fp32 activations and to FP32; returns ``result``."""
    rows = {r["name"]: r for r in result["rows"]}
    spec = {r.key: r for r in ROWS}
    fp = rows.get(FP32)
    for r in result["rows"]:
        if r["name"] == FP32:
            continue
        row = spec[r["row"]]
        r["paired"] = {"vs_fp32": compare(r, fp) if fp else None, "vs_awq": None}
        ref = rows.get(f"{r['setting']}/{row.reference}")
        if ref is not None and ref is not r:
            r["paired"]["vs_awq"] = compare(r, ref)
            if not r["paired"]["vs_awq"]["equal_bits"]:
                logger.warning("ablation: %s (%.4f bits) and %s (%.4f bits) differ in average bits", r["name"],
                               r["avg_bits"], ref["name"], ref["avg_bits"])
        prev = rows.get(f"{r['setting']}/{row.prev}") if row.prev else None
        r["marginal"] = {"prev": prev["name"], **compare(r, prev)} if prev else None
        if r["marginal"]:
            del r["marginal"]["ref"]
        act = r.get("fp16_activations")
        if act:
            act["vs_fp32_activations"] = {k: paired(act["per_scene"], r["per_scene"], k) for k in PAIRED_METRICS}
            act["vs_fp32"] = ({k: paired(act["per_scene"], fp["per_scene"], k) for k in PAIRED_METRICS}
                              if fp else None)
    return result


def _stat(r: Dict, ref: str, key: str) -> Optional[Dict]:
    p = (r.get("paired") or {}).get(ref)
    return p["metrics"].get(key) if p else None


def acceptance(result: Dict) -> List[Dict]:
    """The done-means as checks with their numbers (``passed`` None: the rows are not there)."""
    rows = {r["name"]: r for r in result["rows"]}
    fp = rows.get(FP32)
    settings = {s.kind: s.with_group(g) for s in SETTINGS for g in {r["options"]["group"] for r in result["rows"]
                                                                     if r.get("options")}}
    out = []
    w4 = settings.get("w4")
    cands = []
    for key in ("qvggt", "qvggt-nomp"):
        r = rows.get(f"{w4.name}/{key}") if w4 else None
        if r is None or fp is None:
            continue
        auc, rel, ch = (_stat(r, "vs_fp32", k) for k in PAIRED_METRICS)
        nums = {"row": r["name"], "avg_bits": r["avg_bits"],
                "d_auc@30": auc and auc["mean"], "d_auc@30_se": auc and auc["se"],
                "abs_rel_rel": rel and rel["mean"] / fp["metrics"]["abs_rel"],
                "chamfer_rel": ch and ch["mean"] / fp["metrics"]["chamfer"]}
        ok = (auc is not None and rel is not None and ch is not None and r["avg_bits"] <= W4_MAX_BITS
              and auc["mean"] >= -W4_MAX_AUC_DROP and nums["abs_rel_rel"] <= W4_MAX_ABS_REL
              and nums["chamfer_rel"] <= W4_MAX_CHAMFER)
        cands.append({**nums, "passed": ok})
    out.append({"criterion": f"QVGGT at {w4.name if w4 else 'W4 g128'} within {W4_MAX_AUC_DROP} AUC@30 point "
                             f"(paired), {100 * W4_MAX_ABS_REL:.0f}% AbsRel and {100 * W4_MAX_CHAMFER:.0f}% "
                             f"Chamfer of FP32 at <= {W4_MAX_BITS} average bits",
                "passed": any(c["passed"] for c in cands) if cands else None, "rows": cands})
    cands = []
    hard = [settings[k].name if k in settings else k for k in ("w3", "w4a8")]
    for kind in ("w3", "w4a8"):
        s = settings.get(kind)
        for key in ("qvggt", "qvggt-nomp"):
            r = rows.get(f"{s.name}/{key}") if s else None
            p = (r.get("paired") or {}).get("vs_awq") if r else None
            if not p or p["metrics"]["auc@30"] is None:
                continue
            auc = p["metrics"]["auc@30"]
            cands.append({"row": r["name"], "vs": p["ref"], "avg_bits": r["avg_bits"], "equal_bits": p["equal_bits"],
                          "d_auc@30": auc["mean"], "d_auc@30_se": auc["se"],
                          "passed": p["equal_bits"] and auc["mean"] > AHEAD_SE * auc["se"]})
    out.append({"criterion": f"QVGGT ahead of AWQ at equal bits on the camera (AUC@30) by more than "
                             f"{AHEAD_SE:g} SE at {' or '.join(hard)}",
                "passed": any(c["passed"] for c in cands) if cands else None, "rows": cands})
    return out


# ---- Markdown ----------------------------------------------------------------------------------

def _pm(st: Optional[Dict], scale: float = 1.0, fmt: str = "{:+.2f} +- {:.2f}") -> str:
    return "-" if st is None else fmt.format(st["mean"] * scale, st["se"] * scale)


def _rel(st: Optional[Dict], base: Optional[float]) -> str:
    return "-" if st is None or not base else f"{100 * st['mean'] / base:+.2f}% +- {100 * st['se'] / base:.2f}"


def _flag(p: Optional[Dict]) -> str:
    return "" if p is None or p["equal_bits"] else " (bits differ!)"


def format_markdown(result: Dict, settings: Dict) -> str:
    rows = result["rows"]
    fp = next((r for r in rows if r["name"] == FP32), None)
    fpm = fp["metrics"] if fp else {}
    lines = [f"# QVGGT ablation ({settings.get('preset')}, {settings.get('checkpoint')})", "",
             f"Calibration: {settings.get('calib')}. Evaluation: {settings.get('eval')}. "
             f"Checkpoint sha256 {_sha(settings.get('checkpoint_sha256'))}; {settings.get('threads')} "
             f"thread(s); CPU {settings.get('cpu', {}).get('capability')}.", "",
             "Paired differences: mean over scenes of (row - reference), +- its standard error; AbsRel and "
             "Chamfer as % of FP32's mean. Reference AWQ = the AWQ row of equal average bits (`awq+mp` for "
             "mixed rows, `awq` otherwise). fp16 act: the same recipe evaluated with fp16 activations (the "
             "W4A16 kernel's and TensorRT's arithmetic); its difference is to the row with fp32 activations.", ""]
    if fp:
        lines += [f"FP32: AUC@30 {fpm['auc@30']:.2f}, AbsRel {fpm['abs_rel']:.4f}, Chamfer {fpm['chamfer']:.4f}, "
                  f"delta<1.25 {fpm.get('delta_1.25', float('nan')):.2f}, consistency "
                  f"{fpm.get('consistency', float('nan')):.4f}; {fp['avg_bits']:.0f} bits.", ""]
    for sname in dict.fromkeys(r["setting"] for r in rows if r["setting"]):
        sel = [r for r in rows if r["setting"] == sname]
        kind = next((s for s in SETTINGS if s.with_group(sel[0]["options"]["group"]).name == sname), None)
        plan = (result.get("plans") or {}).get(sname)
        lines += [f"## {sname}: {kind.title if kind else ''}, group {sel[0]['options']['group']}", ""]
        if plan:
            own = f"w{kind.wbits}a{kind.abits or 16}" if kind else None
            raised = [f"{u.replace('aggregator.', '')} {p}" for u, p in plan["units"].items() if p != own]
            lines += [f"Mixed rows: plan of {plan['avg_bits']:.3f} bits/weight (budget {kind.budget if kind else '?'}); "
                      f"above the setting's precision: {', '.join(raised) or 'none'}.", ""]
        act16 = any(r.get("fp16_activations") for r in sel)
        head = ("| row | adds | avg bits | AUC@30 | dAUC vs FP32 | dAUC vs AWQ | dAbsRel vs FP32 | dAbsRel vs AWQ "
                "| dChamfer vs FP32 | dChamfer vs AWQ |" + (" AUC@30 fp16 act | dAUC fp16-fp32 act |" if act16 else "")
                + " calib s | eval s |")
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        for r in sel:
            p32, pa = (r.get("paired") or {}).get("vs_fp32"), (r.get("paired") or {}).get("vs_awq")
            m = r["metrics"]
            cells = [r["row"], r["adds"], f"{r['avg_bits']:.3f}", f"{m['auc@30']:.2f}",
                     _pm(p32 and p32["metrics"]["auc@30"]), _pm(pa and pa["metrics"]["auc@30"]) + _flag(pa),
                     _rel(p32 and p32["metrics"]["abs_rel"], fpm.get("abs_rel")),
                     _rel(pa and pa["metrics"]["abs_rel"], fpm.get("abs_rel")),
                     _rel(p32 and p32["metrics"]["chamfer"], fpm.get("chamfer")),
                     _rel(pa and pa["metrics"]["chamfer"], fpm.get("chamfer"))]
            if act16:
                a = r.get("fp16_activations")
                cells += [f"{a['metrics']['auc@30']:.2f}" if a else "-",
                          _pm(a["vs_fp32_activations"]["auc@30"]) if a else "-"]
            cells += [f"{r['calib_seconds']:.0f}", f"{r['eval_seconds']:.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        marg = [r for r in sel if r.get("marginal")]
        if marg:
            lines += [f"Marginal effect of each step (row minus the row it adds to; interval {INTERVAL}):", "",
                      "| step | from | dAUC@30 [interval] | dAbsRel [interval] | dChamfer [interval] | equal bits |",
                      "|---|---|---|---|---|---|"]
            for r in marg:
                mm = r["marginal"]["metrics"]
                lines.append(f"| {r['row']} | {r['marginal']['prev'].split('/')[-1]} | "
                             f"{_iv(mm['auc@30'])} | {_iv(mm['abs_rel'], fpm.get('abs_rel'))} | "
                             f"{_iv(mm['chamfer'], fpm.get('chamfer'))} | "
                             f"{'yes' if r['marginal']['equal_bits'] else 'no (' + format(r['marginal']['ref_avg_bits'], '.3f') + ' -> ' + format(r['avg_bits'], '.3f') + ')'} |")
            lines.append("")
    if result.get("acceptance"):
        lines += ["## Acceptance (issue 13's done-means)", ""]
        for c in result["acceptance"]:
            mark = {True: "x", False: " ", None: "?"}[c["passed"]]
            lines.append(f"- [{mark}] {c['criterion']}" + (" (rows not run)" if c["passed"] is None else ""))
            for d in c["rows"]:
                if "vs" in d:
                    lines.append(f"  - {d['row']} vs {d['vs']}: dAUC@30 {d['d_auc@30']:+.2f} +- {d['d_auc@30_se']:.2f}"
                                 f" at {d['avg_bits']:.3f} bits{'' if d['equal_bits'] else ' (bits differ!)'}: "
                                 f"{'pass' if d['passed'] else 'fail'}")
                else:
                    lines.append(f"  - {d['row']}: dAUC@30 {_num(d['d_auc@30'], '+.2f')} +- "
                                 f"{_num(d['d_auc@30_se'], '.2f')}, AbsRel {_num(d['abs_rel_rel'], '+.2%')}, "
                                 f"Chamfer {_num(d['chamfer_rel'], '+.2%')} at {d['avg_bits']:.3f} bits: "
                                 f"{'pass' if d['passed'] else 'fail'}")
        lines.append("")
    return "\n".join(lines) + "\n"


def _sha(sha: Optional[str]) -> str:
    return f"`{sha[:16]}`" if sha else "none (random weights)"


def _num(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _iv(st: Optional[Dict], base: Optional[float] = None) -> str:
    if st is None:
        return "-"
    if base:
        return f"{100 * st['mean'] / base:+.2f}% [{100 * st['lo'] / base:+.2f}, {100 * st['hi'] / base:+.2f}]"
    return f"{st['mean']:+.2f} [{st['lo']:+.2f}, {st['hi']:+.2f}]"


# ---- chart -------------------------------------------------------------------------------------

def write_chart(result: Dict, path) -> Optional[str]:
    """One PNG: per setting, each row's paired dAUC@30 vs FP32 with its +-2 SE bar (fp16-activation
    results beside). Returns the path, or None (with a warning) without matplotlib."""
    try:
        import matplotlib.pyplot as plt  # the backend is the caller's (the CLI picks Agg)
    except ImportError:
        logger.warning("matplotlib is not installed: no ablation chart (pip install matplotlib)")
        return None
    from qvggt_deploy.fileio import write_figure

    names = list(dict.fromkeys(r["setting"] for r in result["rows"] if r["setting"]))
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4), squeeze=False, sharey=True)
    for ax, sname in zip(axes[0], names):
        sel = [r for r in result["rows"] if r["setting"] == sname and (r.get("paired") or {}).get("vs_fp32")]
        for i, r in enumerate(sel):
            st = r["paired"]["vs_fp32"]["metrics"]["auc@30"]
            if st:
                ax.errorbar(i - 0.12, st["mean"], yerr=2 * st["se"], fmt="o", color="C0", capsize=3,
                            label="fp32 activations" if i == 0 else None)
            act = r.get("fp16_activations")
            st16 = act and act.get("vs_fp32") and act["vs_fp32"]["auc@30"]
            if st16:
                ax.errorbar(i + 0.12, st16["mean"], yerr=2 * st16["se"], fmt="s", color="C1", capsize=3,
                            label="fp16 activations" if i == 0 else None)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xlim(-0.5, max(len(sel), 1) - 0.5)
        ax.set_xticks(range(len(sel)), [r["row"] for r in sel], rotation=45, ha="right", fontsize=8)
        ax.set_title(sname)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("AUC@30 - FP32 (paired, +-2 SE)")
    if any(ax.get_legend_handles_labels()[0] for ax in axes[0]):
        axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    write_figure(fig, path)
    return str(path)
