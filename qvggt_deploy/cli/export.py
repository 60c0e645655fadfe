"""``qvggt export``: VGGT to ONNX (float, or a recipe folded in as QDQ) for ONNX Runtime or TensorRT."""
from __future__ import annotations

import argparse

from qvggt_deploy.cli.args import add_out_arg, add_threads_arg, add_force_arg, add_model_args, apply_threads, image_side, is_qvggt_onnx, positive_int
from qvggt_deploy.cli.base import Command
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)


class Export(Command):
    """Export VGGT to ONNX at a fixed input size with a dynamic frame count.

    Without --recipe: a float graph (Linears in --float-precision). With --recipe: the calibrated
    plan folded in as QDQ (INT4 blocked DequantizeLinear on constant weights at opset 21, INT8 Q/DQ
    on activations where the plan quantizes them, special tokens bypassing activation quantizers).
    --target trt: strongly typed QDQ with fp16 Casts around the quantized/fp16 layers (optionally
    the W4A16 plugin). --target ort: exact fp32 emulation, INT4 as MatMulNBits (accuracy level 0),
    the DPT heads' full-resolution tail in row bands; --ort-int8-activations for the fast,
    approximate W8A8 mode (INT4 weights re-gridded to int8, dynamic per-tensor int8 activations,
    special tokens bypassing the int8 GEMM; --ort-int8-kernel matmulnbits: W4A8 with dynamic
    per-block activations). Weights go to one external .data file above ~1.8 GB.
    The recipe digest and the passes applied are recorded in the file's metadata (qvggt.*).
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_model_args(parser)
        parser.add_argument("--recipe", default=None, help="quantization recipe folder to fold in")
        add_out_arg(parser, "file", ".onnx", extra="only an earlier qvggt export there is replaced; weights past "
                    "~1.8 GB go to OUT.data beside it")
        add_force_arg(parser, "a qvggt ONNX export")
        parser.add_argument("--height", type=image_side, default=None, help="input height (multiple of 14). Defaults to the preset's size.")
        parser.add_argument("--width", type=image_side, default=None, help="input width (multiple of 14). Defaults to the preset's size.")
        parser.add_argument("--frames", type=positive_int, default=1,
                            help="frames of the tracing input (the exported frame dimension is dynamic). Defaults to 1.")
        parser.add_argument("--target", choices=["ort", "trt"], default="ort", help="graph flavour. Defaults to ort.")
        parser.add_argument("--float-precision", choices=["fp32", "fp16"], default="fp32",
                            help="precision of Linears outside the recipe. Defaults to fp32.")
        parser.add_argument("--conv-precision", choices=["fp32", "fp16"], default="fp32",
                            help="DPT head conv weights stored in fp16 (computed in fp32). Defaults to fp32.")
        parser.add_argument("--ort-int8-activations", action="store_true",
                            help="ort: INT4 layers with dynamic int8 activations, faster and not exact: "
                                 "W8A8 with per-tensor activations (qgemm kernel) or W4A8 with per-block "
                                 "activations (matmulnbits); see --ort-int8-kernel")
        parser.add_argument("--ort-int8-kernel", choices=["qgemm", "matmulnbits"], default=None,
                            help="ort, with --ort-int8-activations: qgemm = W8A8, dynamic per-tensor activations "
                                 "(DynamicQuantizeMatMul on the INT4 weights re-gridded to int8 per channel, file "
                                 "~1.7x larger; special tokens of the blocks bypass it through the exact INT4 "
                                 "MatMul); matmulnbits = W4A8, dynamic per-block activations (MatMulNBits "
                                 "accuracy_level 4). Defaults to qgemm.")
        parser.add_argument("--ort-int4", choices=["matmulnbits", "qdq"], default="matmulnbits",
                            help="ort: INT4 as MatMulNBits or left as QDQ (fused by ORT at load). Defaults to matmulnbits.")
        parser.add_argument("--dense-loop", action="store_true",
                            help="ort: run the DPT heads frame by frame in an ONNX Loop (experimental: on ORT 1.32 "
                                 "it raised VGGT-1B's peak RSS at 2 frames; see docs/export.md)")
        parser.add_argument("--trt-plugin", action="store_true", help="trt: INT4 GEMMs as W4A16 plugin nodes")
        parser.add_argument("--calibration-graph", action="store_true",
                            help="ort: float activations plus one <layer>.calib_input output per token-filtered layer "
                                 "(special rows replaced by the recipe's compensation rows; docs/method.md)")
        parser.add_argument("--external-data", choices=["auto", "always", "never"], default="auto",
                            help="weights in one <out>.data file: auto = above ~1.8 GB. Defaults to auto.")
        add_threads_arg(parser)

    def run(self, args: argparse.Namespace) -> int:
        from qvggt_deploy.backends.limits import check_fits, forward_bytes
        from qvggt_deploy.export.onnx import export_onnx
        from qvggt_deploy.export.options import ExportOptions
        from qvggt_deploy.lazy import import_or_raise
        from qvggt_deploy.model.checkpoint import load_model
        from qvggt_deploy.model.presets import get_preset

        for package in ("onnx", "onnx_graphsurgeon"):  # the [onnx] extra, named before any work
            import_or_raise(package)
        if args.ort_int8_kernel and not args.ort_int8_activations:
            raise QvggtError("--ort-int8-kernel chooses the kernel of --ort-int8-activations; add that flag")
        cfg = get_preset(args.preset)
        options = ExportOptions(
            height=args.height or cfg.img_size, width=args.width or cfg.img_size, target=args.target,
            frames=args.frames, float_precision=args.float_precision, conv_precision=args.conv_precision,
            ort_int8_activations=args.ort_int8_activations, ort_int8_kernel=args.ort_int8_kernel or "qgemm",
            ort_int4=args.ort_int4, trt_plugin=args.trt_plugin, calibration_graph=args.calibration_graph,
            external_data=args.external_data, dense_loop=args.dense_loop,
            free_weights=True)  # the model is loaded for this export only
        options.check_model(cfg.patch_size, has_recipe=bool(args.recipe))
        check_outputs(args)
        apply_threads(args.threads)
        h, w = options.height, options.width
        check_fits(2 * forward_bytes(cfg, h, w, args.frames), f"tracing {args.frames} frame(s) at {h}x{w}",
                   "trace fewer --frames (the exported frame dimension is dynamic)")
        model = load_model(args.preset, args.checkpoint, allow_random=args.allow_random_weights)
        recipe = None
        if args.recipe:
            from qvggt_deploy.quant.recipe import load_recipe

            recipe = load_recipe(args.recipe)
        result = export_onnx(model, args.out, options, recipe=recipe)
        files = f"{result.path}" + (f" + {result.data_path.name}" if result.data_path else "")
        print(f"{files}: {result.bytes / 1e6:.1f} MB, {sum(result.op_counts.values())} nodes, "
              f"recipe {result.metadata.recipe_digest}, passes {','.join(result.passes)}, {result.seconds:.1f} s")
        return 0


def check_outputs(args) -> None:
    """--out (and its external-data file) before the export: only an earlier qvggt export is replaced."""
    from pathlib import Path

    from qvggt_deploy.fileio import check_output_file

    out = check_output_file(args.out, ours=is_qvggt_onnx, what="qvggt ONNX export (no qvggt.* metadata)",
                            force=args.force)
    data = out.with_name(f"{out.name}.data")
    if data.is_dir():
        raise QvggtError(f"--out {out}: {data} is a folder, where the export's external-data file goes")
    if data.exists() and not args.force and not (out.is_file() and is_qvggt_onnx(out)):
        raise QvggtError(f"--out {out}: {data} exists and does not belong to a qvggt export at {out}; it is "
                         f"left alone (choose another name, or pass --force)")
    if Path(out).suffix.lower() != ".onnx":
        logger.warning("--out %s does not end in .onnx", out)
