"""The W4A16 dispatch table: per architecture and weight shape, from how many rows M the weights
are dequantised to fp16 and multiplied by cuBLAS instead of running the fused kernel.

One source of truth, ``w4a16_dispatch.json`` beside this module (its ``about`` field states the
rules). Three readers follow it: :func:`cublas_min_m` here (``W4A16Linear``), the C ABI's AUTO
path and the TensorRT plugin, both through ``kernels/w4a16_dispatch_table.h``, which
:func:`render_header` generates (``python -m qvggt_deploy.ops.dispatch --header PATH``; a test
keeps the committed header equal to the rendering of the committed table).
``benchmarks/tune_dispatch.py`` measures a GPU and writes a table with :func:`table_from_timings`.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from qvggt_deploy.errors import QvggtError

TABLE_PATH = Path(__file__).resolve().parent / "w4a16_dispatch.json"
FORMAT = "qvggt-w4a16-dispatch"
VERSION = 1
DEFAULT_MARGIN = 0.02  # cuBLAS must be this much faster to be chosen (the fused path needs no workspace)


def arch_key(sm: int) -> str:
    """``90`` -> ``"sm_90"``."""
    return f"sm_{sm}"


def _arch_sm(key: str) -> int:
    if not key.startswith("sm_") or not key[3:].isdigit():
        raise QvggtError(f"dispatch table: architecture {key!r} is not of the form sm_<major><minor>, e.g. sm_87")
    return int(key[3:])


def validate(table: Mapping, source: str = "dispatch table") -> dict:
    """Check the table's structure; return it. Every problem is a one-line :class:`QvggtError`."""
    if not isinstance(table, Mapping) or table.get("format") != FORMAT:
        raise QvggtError(f"{source}: not a W4A16 dispatch table (format must be {FORMAT!r})")
    if table.get("version") != VERSION:
        raise QvggtError(f"{source}: version {table.get('version')!r}, this reader knows version {VERSION}")
    archs = table.get("archs")
    if not isinstance(archs, Mapping) or not archs:
        raise QvggtError(f"{source}: 'archs' must map at least one sm_XY to its thresholds")
    for key, entry in archs.items():
        _arch_sm(key)
        shapes = entry.get("shapes") if isinstance(entry, Mapping) else None
        if not isinstance(entry.get("source") if isinstance(entry, Mapping) else None, str):
            raise QvggtError(f"{source}: {key} needs a 'source' (how its thresholds were obtained)")
        if not isinstance(shapes, list) or not shapes:
            raise QvggtError(f"{source}: {key} needs a non-empty 'shapes' list")
        seen = set()
        for row in shapes:
            k, n, m = (row.get("k"), row.get("n"), row.get("cublas_min_m")) if isinstance(row, Mapping) else (0, 0, 0)
            if not (isinstance(k, int) and isinstance(n, int) and k > 0 and n > 0):
                raise QvggtError(f"{source}: {key} shape row {row!r} needs positive integers k and n")
            if m is not None and not (isinstance(m, int) and m > 0):
                raise QvggtError(f"{source}: {key} k={k} n={n}: cublas_min_m must be a positive integer or null")
            if (k, n) in seen:
                raise QvggtError(f"{source}: {key} lists k={k} n={n} twice")
            seen.add((k, n))
    return dict(table)


def load_table(path: Optional[Path] = None) -> dict:
    """The table at ``path`` (default: the committed one), validated."""
    path = Path(path) if path is not None else TABLE_PATH
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise QvggtError(f"cannot read the dispatch table {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise QvggtError(f"dispatch table {path} is not JSON: {exc}") from exc
    return validate(table, str(path))


def resolve_arch(table: Mapping, sm: int) -> str:
    """The table's architecture for a device of compute capability ``sm`` (e.g. 86): itself if
    listed; else the nearest listed one of the same major (ties: the older); else the newest
    older one; else the oldest listed."""
    known = sorted(_arch_sm(key) for key in table["archs"])
    if sm in known:
        return arch_key(sm)
    same_major = [s for s in known if s // 10 == sm // 10]
    if same_major:
        return arch_key(min(same_major, key=lambda s: (abs(s - sm), s)))
    older = [s for s in known if s < sm]
    return arch_key(max(older) if older else known[0])


def _distance(k: int, n: int, row: Mapping) -> float:
    return abs(math.log2(k / row["k"])) + abs(math.log2(n / row["n"]))


def lookup(table: Mapping, sm: int, k: int, n: int) -> Tuple[str, Mapping]:
    """``(architecture key, shape row)`` that decides a ``[N, K]`` weight on ``sm``: the exact
    ``(k, n)`` row, else the nearest by :func:`_distance` (ties: the first listed)."""
    key = resolve_arch(table, sm)
    rows = table["archs"][key]["shapes"]
    best = min(range(len(rows)), key=lambda i: (_distance(k, n, rows[i]), i))
    return key, rows[best]


def cublas_min_m(sm: int, k: int, n: int, table: Optional[Mapping] = None) -> Optional[int]:
    """Rows from which dequantise + cuBLAS runs for a ``[N=n, K=k]`` weight on ``sm`` (None: never)."""
    return lookup(table if table is not None else default_table(), sm, k, n)[1]["cublas_min_m"]


_default: Optional[dict] = None


def default_table() -> dict:
    """The committed table (read once)."""
    global _default
    if _default is None:
        _default = load_table()
    return _default


# ------------------------------------------------------------------------------------ writing


def threshold_from_timings(points: Iterable[Mapping], margin: float = DEFAULT_MARGIN) -> Optional[int]:
    """Smallest measured M from which dequantise + cuBLAS beats the fused kernel by ``margin``
    at that M and at every larger measured M; None when it never does (or loses at the top)."""
    rows = sorted(points, key=lambda p: p["m"])
    threshold = None
    for p in reversed(rows):
        if p["cublas_s"] * (1 + margin) < p["fused_s"]:
            threshold = p["m"]
        else:
            break
    return threshold


def table_from_timings(timings: Iterable[Mapping], sm: int, device: str, source: str,
                       base: Optional[Mapping] = None, margin: float = DEFAULT_MARGIN) -> dict:
    """A table whose ``sm_XY`` entry comes from ``timings`` (rows ``{"k", "n", "m", "fused_s",
    "cublas_s"}``, seconds per call); the other architectures are kept from ``base``."""
    by_shape: Dict[Tuple[int, int], List[Mapping]] = {}
    for row in timings:
        for field in ("k", "n", "m", "fused_s", "cublas_s"):
            if field not in row:
                raise QvggtError(f"timing row {dict(row)!r} lacks {field!r}")
        by_shape.setdefault((int(row["k"]), int(row["n"])), []).append(row)
    if not by_shape:
        raise QvggtError("no timings to build a dispatch table from")
    base = base if base is not None else default_table()
    table = {key: value for key, value in base.items() if key != "archs"}
    table["archs"] = {key: value for key, value in base["archs"].items() if key != arch_key(sm)}
    table["archs"][arch_key(sm)] = {
        "source": source,
        "device": device,
        "shapes": [{"k": k, "n": n, "cublas_min_m": threshold_from_timings(points, margin)}
                   for (k, n), points in by_shape.items()],
    }
    table["archs"] = dict(sorted(table["archs"].items(), key=lambda item: _arch_sm(item[0])))
    return validate(table)


def dumps(table: Mapping) -> str:
    """JSON text of a table with one shape row per line (diff-friendly)."""
    text = json.dumps(table, indent=2)
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        if lines[i].strip() == "{" and i + 4 < len(lines) and lines[i + 1].strip().startswith('"k"'):
            end = i + 4  # "{", k, n, cublas_min_m, "}" (with or without comma)
            body = " ".join(s.strip() for s in lines[i + 1:end])
            out.append(lines[i][:len(lines[i]) - 1] + "{" + body + lines[end].strip())
            i = end + 1
        else:
            out.append(lines[i])
            i += 1
    return "\n".join(out) + "\n"


def write_table(path: Path, table: Mapping) -> None:
    """Validate and write ``table`` atomically."""
    from qvggt_deploy.fileio import write_text

    write_text(path, dumps(validate(table)))


def render_header(table: Mapping) -> str:
    """``kernels/w4a16_dispatch_table.h``: the table as C++ constants (0 = never cuBLAS)."""
    validate(table)
    lines = [
        "// GENERATED from qvggt_deploy/ops/w4a16_dispatch.json by",
        "//   python -m qvggt_deploy.ops.dispatch --header kernels/w4a16_dispatch_table.h",
        "// Do not edit: change the JSON (or run benchmarks/tune_dispatch.py) and regenerate.",
        "// Rules (nearest architecture, nearest shape): the JSON's \"about\"; w4a16_gemm.cu implements them.",
        "#pragma once",
        "",
        "namespace qvggt {",
        "namespace dispatch {",
        "",
        "struct ShapeRow {",
        "    int k, n;",
        "    int cublas_min_m;  // 0: never",
        "};",
        "",
        "struct ArchRows {",
        "    int sm;",
        "    const ShapeRow* rows;",
        "    int count;",
        "};",
        "",
    ]
    archs = sorted(table["archs"].items(), key=lambda item: _arch_sm(item[0]))
    for key, entry in archs:
        lines.append(f"// {key}: {entry['source']}" + (f" ({entry['device']})" if entry.get("device") else ""))
        lines.append(f"constexpr ShapeRow k_{key}[] = {{")
        for row in entry["shapes"]:
            lines.append(f"    {{{row['k']}, {row['n']}, {row['cublas_min_m'] or 0}}},")
        lines.append("};")
    lines.append("")
    lines.append("constexpr ArchRows kArchs[] = {")
    for key, entry in archs:
        lines.append(f"    {{{_arch_sm(key)}, k_{key}, {len(entry['shapes'])}}},")
    lines.append("};")
    lines.append(f"constexpr int kNumArchs = {len(archs)};")
    lines.append("")
    lines.append("}  // namespace dispatch")
    lines.append("}  // namespace qvggt")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qvggt_deploy.ops.dispatch",
                                     description="Render the W4A16 dispatch table as the C++ header the "
                                                 "kernel library and the TensorRT plugin compile in.")
    parser.add_argument("--table", type=Path, default=TABLE_PATH, help="dispatch table JSON (default: the "
                        "committed qvggt_deploy/ops/w4a16_dispatch.json)")
    parser.add_argument("--header", type=Path, required=True, help="header to write, normally "
                        "kernels/w4a16_dispatch_table.h")
    args = parser.parse_args(argv)
    from qvggt_deploy.fileio import write_text

    write_text(args.header, render_header(load_table(args.table)))
    print(f"wrote {args.header}")


if __name__ == "__main__":
    main()
