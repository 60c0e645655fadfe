"""Benchmark tables (Markdown) and charts (PNG)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence

from qvggt_deploy.fileio import write_figure, write_text


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
    return write_figure(fig, path, dpi=110)


def _mib(x) -> str:
    return "-" if x is None else f"{x / 2**20:.1f}"


def trt_sections(results: Sequence[Dict[str, Any]]) -> str:
    """Per TensorRT variant: end-to-end latency, memory, the slowest layers, tegrastats."""
    parts = []
    for r in results:
        if r.get("backend") != "trt":
            continue
        parts += [f"## TensorRT: {r['label']}", "",
                  f"- latency ({r.get('timing', 'cuda events')}): median {r['median'] * 1e3:.2f} ms, "
                  f"p90 {r['p90'] * 1e3:.2f} ms; end to end with copies: median {r['end_to_end_median'] * 1e3:.2f} ms",
                  f"- memory: activations {_mib(r.get('activation_bytes'))} MiB (device_memory_size_v2), device memory "
                  f"taken by loading {_mib(r.get('device_bytes_engine'))} MiB, after the first run "
                  f"{_mib(r.get('device_bytes_after_first_run'))} MiB, of {_mib(r.get('device_total_bytes'))} MiB; "
                  f"engine files {_mib(r.get('model_bytes'))} MiB"]
        stats = r.get("tegrastats")
        if stats and stats.get("samples"):
            rails = ", ".join(f"{k} mean {v['mean']:.0f} / peak {v['peak']} mW" for k, v in stats["power_mw"].items())
            parts.append(f"- tegrastats ({stats['samples']} samples during the timed runs): RAM peak "
                         f"{stats['ram_peak_mb']} of {stats['ram_total_mb']} MB; {rails or 'no power rails'}")
        layers = r.get("layers")
        if layers:
            parts += [f"- layers: {layers['count']} profiled, {layers['total_ms']:.3f} ms in all (IProfiler, profiled "
                      f"runs); W4A16 plugin layers: {layers['plugin_layers']}, {layers['plugin_share'] * 100:.1f}% "
                      f"of the time", "", "| layer | stage | mean (ms) | share | W4A16 plugin |", "|---|---|---|---|---|"]
            parts += [f"| `{row['layer']}` | {row['stage']} | {row['mean_ms']:.4f} | {row['share'] * 100:.1f}% "
                      f"| {'yes' if row['plugin'] else ''} |" for row in layers["slowest"]]
        parts.append("")
    return "\n".join(parts)


def write_markdown(results: List[Dict[str, Any]], path, title: str, notes: Sequence[str] = (), chart=None) -> Path:
    parts = [f"# {title}", ""] + [f"- {n}" for n in notes] + ["", markdown_table(results)]
    if any(r.get("backend") == "trt" for r in results):
        parts += ["", trt_sections(results)]
    if chart:
        parts += ["", f"![benchmark]({Path(chart).name})", ""]
    write_text(path, "\n".join(parts))
    return Path(path)
