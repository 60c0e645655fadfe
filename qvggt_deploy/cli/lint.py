"""``qvggt lint``: TensorRT/ORT problems of an exported graph, found before a build."""
from __future__ import annotations

import argparse

from qvggt_deploy.cli.args import nonneg_int
from qvggt_deploy.cli.base import Command


class Lint(Command):
    """Check exported ONNX files for what TensorRT 10.x rejects or silently runs in FP32.

    INT4 with zero points or run-time weights, opset < 21 with INT4, unsupported ops, MatMuls fed
    by DequantizeLinear without the precision casts the plan asks for, Q/DQ pairs with mismatched
    scales, dynamic scales, broken plugin nodes (and MatMulNBits for ORT files). Each finding names
    the node. The target defaults to the file's metadata (trt or ort). Exit 1 if any error.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("models", nargs="+", help="exported .onnx files")
        parser.add_argument("--target", choices=["trt", "ort"], default=None,
                            help="rules to apply. Defaults to the file's qvggt.target metadata, else trt.")
        parser.add_argument("--json", default=None, metavar="FILE",
                            help="also write the findings as JSON (a copy of the printed report; replaced whole)")
        parser.add_argument("--max-findings", type=nonneg_int, default=50, help="findings printed per file. Defaults to 50.")

    def run(self, args: argparse.Namespace) -> int:
        from qvggt_deploy.export.lint import lint_file
        from qvggt_deploy.fileio import check_output_file, write_json

        if args.json:
            check_output_file(args.json, what="JSON report", option="--json")
        results = [lint_file(path, args.target) for path in args.models]
        for r in results:
            status = "PASSED" if r else "FAILED"
            print(f"{r.path}: {status} for {r.target} ({r.nodes} nodes, {len(r.errors)} errors, "
                  f"{len(r.warnings)} warnings)")
            for f in (r.errors + r.warnings)[: args.max_findings]:
                print(f"  {f}")
            hidden = len(r.findings) - args.max_findings
            if hidden > 0:
                print(f"  ... {hidden} more (see --json)")
        if args.json:
            write_json(args.json, {"files": [r.to_dict() for r in results]})
        return 0 if all(results) else 1
