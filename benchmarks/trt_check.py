"""Both TensorRT W4A16 paths side by side from one recipe: build, check against ONNX Runtime, bench.

    python benchmarks/trt_check.py OUT_DIR --profile engines/orin-nx-16gb.yaml \\
        --plugin kernels/build/cmake/trt_plugin/libqvggt_trt_plugin.so --recipe RECIPE \\
        (--checkpoint MODEL | --allow-random-weights) [--onnx-native F --onnx-plugin F] [--resume]

For a machine with TensorRT (a Jetson Orin with JetPack 6, or a desktop GPU) and the project
installed (``pip install -e ".[trt]"`` plus ONNX Runtime). Steps, each one ``qvggt`` command in its
own process (the project's exporter, builder, check and bench; nothing is re-implemented here, and
a step's memory is returned before the next, which matters on a Jetson's shared DRAM):

1. ``env``: GPU, TensorRT, CUDA runtime and driver, JetPack release, torch, ONNX Runtime, commit.
2. ``export-native`` / ``export-plugin``: ``qvggt export --target trt`` of the recipe at the
   profile's image size: INT4 as blocked DequantizeLinear (TensorRT's native INT4 path), and with
   ``--trt-plugin`` as W4A16 plugin nodes. Skipped when ``--onnx-native`` / ``--onnx-plugin`` give them.
3. ``build-native`` / ``build-plugin``: ``qvggt build-engine --split false`` for the profile
   (the plugin engine with ``--plugin``), each with its sidecar.
4. ``check``: ``qvggt check`` of both engines against the float model and, through
   ``--trt-reference native``, against the ONNX Runtime run of the native graph (the plugin
   graph's W4A16 node has no ONNX Runtime kernel); the generated scenes, or ``--images``.
5. ``bench``: ``qvggt bench --backend trt`` of both engines (latency, plugin layers' share,
   activation memory, tegrastats on a Jetson); the native engine is the baseline of the ratios.

``OUT_DIR/trt_check.json`` is replaced whole after every step (status ok, failed, not-run,
skipped-over-budget; a step's budget is its process's timeout), with each step's command, exit
code and the tail of its log (the whole log in ``OUT_DIR/logs/``), and a ``summary`` of both
paths side by side. ``--resume`` keeps the steps of an earlier run whose outputs are still there.
Exit status: 0 when every step ran and the check passed, 1 otherwise, 2 when OUT_DIR holds
something else (it is left alone), 143 on SIGTERM.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from qvggt_deploy.bench.sections import Section, SectionRunner  # noqa: E402

STEPS = ("env", "export-native", "export-plugin", "build-native", "build-plugin", "check", "bench")
DEFAULT_BUDGETS = {"env": 120, "export-native": 3600, "export-plugin": 3600, "build-native": 7200,
                   "build-plugin": 7200, "check": 3600, "bench": 3600}
REPORT = "trt_check.json"
LOG_TAIL = 30

ENV_PROBE = r"""
import json, os, platform, subprocess, sys
out = {"python": sys.version.split()[0], "machine": platform.machine()}
def version(module):
    try:
        return __import__(module).__version__
    except Exception as exc:
        return None
for m in ("tensorrt", "torch", "onnxruntime", "onnx"):
    out[m] = version(m)
try:
    from qvggt_deploy.trt.cuda import get_api
    api = get_api()
    out["device"], out["cuda"] = api.device_info(), api.versions()
except Exception as exc:
    out["cuda_error"] = str(exc)
try:
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=20)
    out["nvidia_smi"] = smi.stdout.strip() or None
except Exception:
    out["nvidia_smi"] = None
try:
    out["jetpack_l4t"] = open("/etc/nv_tegra_release").readline().strip()
except OSError:
    out["jetpack_l4t"] = None
print(json.dumps(out))
"""


def git_commit() -> Dict[str, Optional[str]]:
    try:
        proc = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if proc.returncode == 0:
            return {"commit": proc.stdout.strip(), "source": "git"}
    except (OSError, subprocess.SubprocessError):
        pass
    env = os.environ.get("QVGGT_GIT_COMMIT")
    return {"commit": env, "source": "QVGGT_GIT_COMMIT" if env else "unknown"}


class StepFailed(Exception):
    """A step's command exited non-zero or timed out (the section records it)."""


def run_command(cmd: Sequence[str], log_path: Path, timeout: float) -> Dict:
    """Run ``cmd``, its output streamed to stderr and to ``log_path``; killed at ``timeout``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                cwd=str(REPO), bufsize=1)
        timed_out = threading.Event()

        def kill():
            timed_out.set()
            proc.kill()

        timer = threading.Timer(max(timeout, 1.0), kill)
        timer.start()
        tail: List[str] = []
        try:
            for line in proc.stdout:
                log.write(line)
                sys.stderr.write(line)
                tail = (tail + [line.rstrip("\n")])[-LOG_TAIL:]
            code = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:  # interrupted (SIGTERM) while the step ran: do not leave it behind
                proc.kill()
                proc.wait()
    return {"command": list(cmd), "exit_code": code, "timed_out": timed_out.is_set(), "log": str(log_path),
            "log_tail": tail}


class Plan:
    """The files of one run under ``out`` and the commands that make them."""

    def __init__(self, args):
        self.args = args
        self.out = Path(args.out)
        self.python = [sys.executable, "-m", "qvggt_deploy"]
        given = {"native": args.onnx_native, "plugin": args.onnx_plugin}
        self.onnx = {k: Path(v) if v else self.out / f"{k}.onnx" for k, v in given.items()}
        self.given = {k: bool(v) for k, v in given.items()}
        self.engine = {k: self.out / f"{k}.engine" for k in ("native", "plugin")}
        self.check_dir = self.out / "check"
        self.bench_json = self.out / "bench.json"

    def model_args(self) -> List[str]:
        a = self.args
        out = ["--preset", a.preset]
        out += ["--checkpoint", a.checkpoint] if a.checkpoint else []
        out += ["--allow-random-weights"] if a.allow_random_weights else []
        return out

    def export(self, kind: str, height: int, width: int) -> List[str]:
        return (self.python + ["export", *self.model_args(), "--recipe", self.args.recipe, "--target", "trt",
                               "--height", str(height), "--width", str(width), "--out", str(self.onnx[kind])]
                + (["--trt-plugin"] if kind == "plugin" else []))

    def build(self, kind: str) -> List[str]:
        return (self.python + ["build-engine", "--profile", self.args.profile, "--onnx", str(self.onnx[kind]),
                               "--out", str(self.engine[kind]), "--split", "false"]
                + (["--plugin", self.args.plugin] if kind == "plugin" else []))

    def check(self, engines: Sequence[str]) -> List[str]:
        a = self.args
        cmd = self.python + ["check", *self.model_args(), "--recipe", a.recipe, "--onnx", f"native={self.onnx['native']}"]
        for kind in engines:
            cmd += ["--trt", f"{kind}={self.engine[kind]}"]
        cmd += ["--trt-reference", "native", "--frames", str(a.frames), "--out", str(self.check_dir)]
        cmd += ["--images", a.images, "--max-frames", str(a.frames)] if a.images else ["--scenes", str(a.scenes)]
        for gate in a.gate:
            cmd += ["--gate", gate]
        return cmd

    def bench(self, engines: Sequence[str]) -> List[str]:
        a = self.args
        cmd = self.python + ["bench", "--backend", "trt"]
        for kind in engines:
            cmd += ["--engine", f"{kind}={self.engine[kind]}"]
        return cmd + ["--frames", str(a.frames), "--warmup", str(a.warmup), "--runs", str(a.runs),
                      "--json", str(self.bench_json)]


def _file_facts(path: Path) -> Dict:
    return {"path": str(path), "bytes": path.stat().st_size if path.is_file() else None}


def _still_there(*keys: str) -> Callable[[Dict], bool]:
    """Resume test: the files a step recorded under ``keys`` exist with the recorded size."""
    def keep(data: Dict) -> bool:
        for key in keys:
            facts = (data or {}).get(key) or {}
            path = Path(facts.get("path", ""))
            if not facts.get("path") or not path.exists() or (path.is_file() and path.stat().st_size != facts.get("bytes")):
                return False
        return True
    return keep


def make_sections(args, runner_ref: Dict, command: Callable = run_command) -> List[Section]:
    """The steps as sections; ``command(cmd, log, timeout) -> dict`` runs one (tests replace it)."""
    plan = Plan(args)
    budgets = dict(DEFAULT_BUDGETS)
    for text in args.budget:
        name, _, seconds = text.partition("=")
        budgets[name] = float(seconds)
    skip = set(args.skip)

    def step(name: str, cmd: List[str], ctx) -> Dict:
        result = command(cmd, plan.out / "logs" / f"{name}.log", ctx.left())
        ctx.save(result)
        if result["timed_out"]:
            raise StepFailed(f"{name}: no result within {ctx.budget_s:.0f} s (killed); see {result['log']}")
        if result["exit_code"] != 0:
            raise StepFailed(f"{name}: exit {result['exit_code']}: {' | '.join(result['log_tail'][-3:])}")
        return result

    def env(ctx) -> Dict:
        result = command([sys.executable, "-c", ENV_PROBE], plan.out / "logs" / "env.log", ctx.left())
        doc = {"git": git_commit(), "host": platform.node(), "probe_exit_code": result["exit_code"]}
        lines = [line for line in result["log_tail"] if line.startswith("{")]
        if lines:
            doc.update(json.loads(lines[-1]))
        if result["exit_code"] != 0 or not lines:
            raise StepFailed(f"env probe failed: {' | '.join(result['log_tail'][-3:])}")
        return doc

    def image_size():
        from qvggt_deploy.trt.profiles import load_profile

        profile = load_profile(args.profile)
        return profile.model.height, profile.model.width

    def export(kind: str):
        def run(ctx) -> Dict:
            height, width = image_size()
            result = step(f"export-{kind}", plan.export(kind, height, width), ctx)
            return {**result, "onnx": _file_facts(plan.onnx[kind]), "height": height, "width": width}
        return run

    def build(kind: str):
        def run(ctx) -> Dict:
            result = step(f"build-{kind}", plan.build(kind), ctx)
            doc = {**result, "engine": _file_facts(plan.engine[kind])}
            sidecar = plan.engine[kind].with_name(plan.engine[kind].name + ".json")
            if sidecar.is_file():
                doc["sidecar"] = json.loads(sidecar.read_text())
            return doc
        return run

    def built() -> List[str]:
        runner = runner_ref["runner"]
        return [k for k in ("native", "plugin") if runner.status(f"build-{k}") == "ok"]

    def check(ctx) -> Dict:
        engines = built()
        if not engines:
            raise StepFailed("no engine was built")
        if plan.check_dir.exists():  # an earlier attempt of this step: ours only if it holds a check.json
            if not (plan.check_dir / "check.json").is_file():
                raise StepFailed(f"{plan.check_dir} exists and is not an earlier check report; it is left alone")
            shutil.rmtree(plan.check_dir)
        result = command(plan.check(engines), plan.out / "logs" / "check.log", ctx.left())
        ctx.save(result)
        report = plan.check_dir / "check.json"
        if result["timed_out"] or not report.is_file():  # exit 1 with a report = a gate failed, a result
            raise StepFailed(f"check: exit {result['exit_code']}, no report: {' | '.join(result['log_tail'][-3:])}")
        doc = json.loads(report.read_text())
        return {**result, "engines": engines, "report": {"path": str(report), "bytes": report.stat().st_size},
                "passed": doc.get("passed"), "comparisons": doc.get("comparisons")}

    def bench(ctx) -> Dict:
        engines = built()
        if not engines:
            raise StepFailed("no engine was built")
        result = step("bench", plan.bench(engines), ctx)
        doc = json.loads(plan.bench_json.read_text())
        return {**result, "engines": engines, "report": {"path": str(plan.bench_json),
                                                         "bytes": plan.bench_json.stat().st_size},
                "results": doc.get("results")}

    def given(kind: str):
        return f"--onnx-{kind} given" if plan.given[kind] else None

    def reason(name: str, default: Optional[str] = None) -> Optional[str]:
        return f"--skip {name}" if name in skip else default

    def fresh(*deps: str) -> Callable[[str], Callable[[Dict], bool]]:
        """Keep a step on --resume only if its files are there and the steps it used were kept too."""
        def make(*keys: str):
            files = _still_there(*keys)

            def keep(data: Dict) -> bool:
                runner = runner_ref["runner"]
                return files(data) and all(runner.report["sections"][d].get("resumed") or
                                           runner.report["sections"][d].get("reason", "").endswith("given")
                                           for d in deps)
            return keep
        return make

    return [
        Section("env", env, budgets["env"]),
        Section("export-native", export("native"), budgets["export-native"],
                skip=reason("export-native", given("native")), keep=fresh()("onnx")),
        Section("export-plugin", export("plugin"), budgets["export-plugin"],
                skip=reason("export-plugin", given("plugin")), keep=fresh()("onnx")),
        Section("build-native", build("native"), budgets["build-native"], skip=reason("build-native"),
                needs=() if plan.given["native"] else ("export-native",),
                keep=fresh("export-native")("engine")),
        Section("build-plugin", build("plugin"), budgets["build-plugin"], skip=reason("build-plugin"),
                needs=() if plan.given["plugin"] else ("export-plugin",),
                keep=fresh("export-plugin")("engine")),
        Section("check", check, budgets["check"], skip=reason("check"),
                keep=fresh("build-native", "build-plugin")("report")),
        Section("bench", bench, budgets["bench"], skip=reason("bench"),
                keep=fresh("build-native", "build-plugin")("report")),
    ]


def summarize(report: Dict) -> Dict:
    """Both paths side by side: engine size, build time, latency, plugin share, accuracy vs ORT."""
    out = {}
    bench = {r.get("label"): r for r in (report.get("bench") or {}).get("results") or []}
    comparisons = (report.get("check") or {}).get("comparisons") or []
    for kind in ("native", "plugin"):
        built = report.get(f"build-{kind}") or {}
        sidecar = built.get("sidecar") or {}
        r = bench.get(kind) or {}
        out[kind] = {
            "engine_bytes": (built.get("engine") or {}).get("bytes"),
            "build_s": (sidecar.get("build") or {}).get("seconds"),
            "latency_median_s": r.get("median"), "latency_p90_s": r.get("p90"),
            "end_to_end_median_s": r.get("end_to_end_median"), "latency_ratio_vs_native": r.get("latency_ratio"),
            "vs_onnxruntime": next(({k: c.get(k) for k in ("outputs", "metrics_vs_reference", "passed")}
                                    for c in comparisons
                                    if c.get("candidate") == f"trt-{kind}" and c.get("reference") == "ort-native"), None),
        }
    return {"summary": out}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="output folder (trt_check.json, ONNX files, engines, check/, bench.json, logs/)")
    parser.add_argument("--profile", required=True, help="deployment profile, e.g. engines/orin-nx-16gb.yaml")
    parser.add_argument("--plugin", required=True, help="the W4A16 TensorRT plugin library (.so)")
    parser.add_argument("--recipe", required=True, help="the W4A16 recipe folder both graphs are exported from")
    parser.add_argument("--preset", default="vggt-1b", help="model preset. Defaults to vggt-1b.")
    parser.add_argument("--checkpoint", default=None, help="model weights (a file or a Hugging Face id)")
    parser.add_argument("--allow-random-weights", action="store_true",
                        help="random weights where no --checkpoint is given (latency and agreement only)")
    parser.add_argument("--onnx-native", default=None, help="an existing native-INT4 export of --recipe (skips export)")
    parser.add_argument("--onnx-plugin", default=None, help="an existing plugin export of --recipe (skips export)")
    parser.add_argument("--frames", type=int, default=2, help="frames per check sample and bench run. Defaults to 2.")
    parser.add_argument("--scenes", type=int, default=1, help="generated check scenes. Defaults to 1.")
    parser.add_argument("--images", default=None, help="check on these photos instead of generated scenes")
    parser.add_argument("--gate", action="append", default=[], metavar="METRIC=BOUND", help="passed to qvggt check")
    parser.add_argument("--warmup", type=int, default=3, help="bench warm-up runs. Defaults to 3.")
    parser.add_argument("--runs", type=int, default=20, help="bench timed runs. Defaults to 20.")
    parser.add_argument("--skip", action="append", default=[], choices=STEPS[1:], help="a step not to run (repeatable)")
    parser.add_argument("--budget", action="append", default=[], metavar="STEP=SECONDS",
                        help="a step's timeout (defaults: " + ", ".join(f"{k} {v}" for k, v in DEFAULT_BUDGETS.items()) + ")")
    parser.add_argument("--resume", action="store_true",
                        help="keep the steps of OUT/trt_check.json that ended ok and whose files are still there")
    args = parser.parse_args(argv)
    for text in args.budget:
        name, sep, seconds = text.partition("=")
        try:
            float(seconds)
        except ValueError:
            sep = ""
        if not sep or name not in DEFAULT_BUDGETS:
            parser.error(f"--budget {text!r}: expected STEP=SECONDS with STEP one of {', '.join(DEFAULT_BUDGETS)}")
    if not args.checkpoint and not args.allow_random_weights:
        parser.error("give --checkpoint, or --allow-random-weights for latency and agreement only")
    for flag in ("onnx_native", "onnx_plugin"):
        if getattr(args, flag) and not Path(getattr(args, flag)).is_file():
            parser.error(f"--{flag.replace('_', '-')} {getattr(args, flag)}: file not found")
    # The steps run from the repository root: paths given relative to here are made absolute.
    for flag in ("out", "profile", "plugin", "recipe", "onnx_native", "onnx_plugin", "images"):
        if getattr(args, flag):
            setattr(args, flag, str(Path(getattr(args, flag)).absolute()))
    if args.checkpoint and Path(args.checkpoint).exists():  # else a Hugging Face model id
        args.checkpoint = str(Path(args.checkpoint).absolute())
    return args


def main(argv=None, command: Callable = run_command) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / REPORT).is_file())):
        print(f"trt_check: {out} exists and is not a trt_check folder (no {REPORT}); it is left alone "
              f"(choose another folder)", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    previous = None
    if args.resume and (out / REPORT).is_file():
        previous = json.loads((out / REPORT).read_text())
    header = {"schema": 1, "command": " ".join(["trt_check.py"] + list(argv if argv is not None else sys.argv[1:])),
              "profile": args.profile, "recipe": args.recipe, "preset": args.preset,
              "weights": args.checkpoint or "random (--allow-random-weights): latency and agreement only"}
    runner_ref: Dict = {}
    runner = SectionRunner(out / REPORT, header, derive=summarize, previous=previous,
                           log=lambda msg: print(f"trt_check: {msg}", file=sys.stderr, flush=True))
    runner_ref["runner"] = runner
    report = runner.run(make_sections(args, runner_ref, command))
    statuses = [e["status"] for e in report["sections"].values() if not e.get("reason")]
    code = 0 if all(s == "ok" for s in statuses) and (report.get("check") or {}).get("passed") is not False else 1
    report["exit_code"] = code
    runner.write()
    for name, entry in report["sections"].items():
        print(f"  {name:14s} {entry['status']:20s} {entry.get('reason') or entry.get('error') or ''}", file=sys.stderr)
    print(f"trt_check: exit {code}; report in {out / REPORT}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
