"""Benchmark tables (Markdown) and charts (PNG)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence

from qvggt_deploy.fileio import atomic_path, write_text


def _gb(x) -> str:
    return "-" if x is None else f"{x / 1e9:.2f}"


def _ratio(x) -> str:
    return "-" if x is None else f"{x:.2f}x"


def markdown_table(results: Sequence[Dict[str, Any]]) -> str:
    head = ("| variant | backend | model (GB) | size vs base | load (s) | median (s) | p90 (s) | latency vs base "
            "| peak RSS (GB) | RSS vs base |")
    lines = [head, "|" + "---|" * 10]
    for r in results:
        lines.append(f"| {r['label']} | {r['backend']} | {_gb(r.get('model_bytes'))} | {_ratio(r.get('size_ratio'))} "
                     f"| {r['load_seconds']:.1f} | {r['median']:.3f} | {r['p90']:.3f} | {_ratio(r.get('latency_ratio'))} "
                     f"| {_gb(r['peak_rss_bytes'])} | {_ratio(r.get('rss_ratio'))} |")
    return "\n".join(lines) + "\n"


def write_chart(results: Sequence[Dict[str, Any]], path, title: str = "") -> Path:
    """Three panels: median latency (p90 whisker), peak RSS, model size."""
    import matplotlib.pyplot as plt  # the backend is the caller's (the CLI picks Agg)

    labels = [r["label"] for r in results]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    med = [r["median"] for r in results]
    p90 = [max(r["p90"] - r["median"], 0) for r in results]
    axes[0].bar(labels, med, yerr=[[0] * len(med), p90], color="#4c72b0", capsize=3)
    axes[0].set_title("latency (s, median; p90 whisker)")
    axes[1].bar(labels, [r["peak_rss_bytes"] / 1e9 for r in results], color="#dd8452")
    axes[1].set_title("peak RSS (GB)")
    sizes = [(r.get("model_bytes") or 0) / 1e9 for r in results]
    axes[2].bar(labels, sizes, color="#55a868")
    axes[2].set_title("model size (GB)")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=20)
        for lab in ax.get_xticklabels():
            lab.set_ha("right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def write_markdown(results: List[Dict[str, Any]], path, title: str, notes: Sequence[str] = (), chart=None) -> Path:
    parts = [f"# {title}", ""] + [f"- {n}" for n in notes] + ["", markdown_table(results)]
    if chart:
        parts += ["", f"![benchmark]({Path(chart).name})", ""]
    write_text(path, "\n".join(parts))
    return Path(path)
