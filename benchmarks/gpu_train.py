"""Continue the embedded tiny model on a CUDA machine within one device call, then join its weights.

    timeout 570 python3 benchmarks/gpu_train.py train OUT [--budget-s 380] [--batch 2] [--lr 1e-4]
                         [--workers 14] [--init-from CKPT] [--seed 20] [--work DIR]
    python benchmarks/gpu_train.py join OUT MODEL.safetensors

Why: on the 2-core CPU a 224-px step over 2 scenes takes about 2.2 s, and the camera gains a few
AUC points per 1,500 such steps (docs/training.md). A GPU runs the model far faster; scenes
rendered on the CPU (``--workers`` processes) then bound the rate, so the GPU can render them too.

``train`` runs from the repository root, with torch, numpy and safetensors (no onnx): ``env``
(GPU, driver, CUDA, torch, commit); a throughput probe for each place the scenes can be rendered
(CPU worker processes; on a GPU also the GPU): a short run into ``WORK/probe/MODE``, its steps
timed after the first 20; then one run of stage 7's loss on the GPU, rendering where the probe
was faster, with the step count that fills ``--budget-s`` at the probed rate (so the LR schedule
ends inside the call; its states and snapshots stay in ``WORK/run``). ``OUT`` gets only what
comes back from a device call (five files under 16 MiB): the final weights in two shards,
``log.jsonl``, ``config.json`` and ``gpu_train.json`` (environment, probes, chosen mode and
steps, wall times; rewritten after each part).
``join`` rebuilds one checkpoint from the shards and checks that it loads strictly into ``tiny``.
Without CUDA, ``train`` (``--device cuda``, the default) exits 2 and writes nothing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402

from qvggt_deploy.errors import QvggtError  # noqa: E402
from qvggt_deploy.fileio import atomic_path, write_json  # noqa: E402
from qvggt_deploy.model.checkpoint import EMBEDDED_CHECKPOINTS  # noqa: E402

SHARDS = ("model.part0.safetensors", "model.part1.safetensors")
PROBE_STEPS, PROBE_TIMED_FROM = 40, 20
ASSET = EMBEDDED_CHECKPOINTS["tiny"]


def stage7_config(**overrides):
    """Stage 7's training configuration (docs/training.md) with the given fields replaced."""
    from qvggt_deploy.train import TrainConfig

    fields = dict(preset="tiny", curriculum="geometry-native", weight_camera=10.0, camera_rotation_loss="geodesic",
                  weight_camera_rotation=10.0, weight_translation_direction=10.0, weight_abs_pose=1.0,
                  dense_frames=1, log_every=10, snapshot_every=10 ** 9)
    fields.update(overrides)
    return TrainConfig(**fields)


def split_checkpoint(path: Path, out: Path) -> list:
    """The checkpoint's tensors in two safetensors files of about equal size."""
    from safetensors.torch import load_file

    from qvggt_deploy.model import save_checkpoint

    tensors = load_file(str(path))
    names = sorted(tensors, key=lambda k: -tensors[k].numel())
    parts, sizes = ({}, {}), [0, 0]
    for name in names:  # largest first, each to the lighter part
        i = 0 if sizes[0] <= sizes[1] else 1
        parts[i][name] = tensors[name]
        sizes[i] += tensors[name].numel() * tensors[name].element_size()
    for name, part in zip(SHARDS, parts):
        save_checkpoint(part, out / name)
    return sizes


def join_checkpoint(shard_dir: Path, dest: Path) -> Path:
    """One checkpoint from the two shards, refused unless it loads strictly into ``tiny``."""
    from safetensors.torch import load_file

    from qvggt_deploy.model import build_model, load_checkpoint, save_checkpoint

    state = {}
    for name in SHARDS:
        state.update(load_file(str(shard_dir / name)))
    tmp = dest.with_name(dest.name + ".joined.safetensors")
    save_checkpoint(state, tmp, metadata={"preset": "tiny", "joined_from": ",".join(SHARDS)})
    try:
        load_checkpoint(tmp, build_model("tiny"))  # strict: raises on a missing or extra tensor
    except Exception:
        tmp.unlink()
        raise
    tmp.replace(dest)
    return dest


def run_train(args) -> int:
    from qvggt_deploy.train.loop import logged_seconds_per_step, train, training_device

    try:
        on_gpu = training_device(args.device).type == "cuda"
    except QvggtError as exc:
        print(f"gpu_train: {exc}; nothing written", file=sys.stderr)
        return 2
    from gpu_check import run_env

    torch.set_num_threads(2)  # the other cores render
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    report = {"env": run_env() if on_gpu else {"device": "cpu"}, "args": {k: str(v) for k, v in vars(args).items()}}
    write_json(out / "gpu_train.json", report)
    common = dict(batch=args.batch, lr=args.lr, seed=args.seed, init_from=str(args.init_from))

    # Where scenes are rendered bounds the rate: probe CPU workers and, on a GPU, the GPU itself.
    modes = {"cpu-workers": dict(workers=args.workers)}
    if on_gpu:
        modes["gpu-render"] = dict(workers=0, render_device=args.device)
    report["probe"] = {}
    for mode, where in modes.items():
        t0 = time.perf_counter()
        probe_cfg = stage7_config(steps=PROBE_STEPS, warmup=PROBE_STEPS, **common)
        train(probe_cfg, work / "probe" / mode, resume=False, device=args.device, **where)
        step_s = logged_seconds_per_step(work / "probe" / mode / "log.jsonl", PROBE_TIMED_FROM)
        report["probe"][mode] = {"steps": PROBE_STEPS, "timed_from": PROBE_TIMED_FROM, "seconds_per_step": step_s,
                                 "scenes_per_second": args.batch / step_s, "wall_s": time.perf_counter() - t0}
        write_json(out / "gpu_train.json", report)
    mode = min(report["probe"], key=lambda m: report["probe"][m]["seconds_per_step"])
    steps = max(50, int(args.budget_s / report["probe"][mode]["seconds_per_step"]))
    report["run"] = {"mode": mode, "steps": steps, "warmup": max(13, steps // 40), "status": "running"}
    write_json(out / "gpu_train.json", report)

    t1 = time.perf_counter()
    cfg = stage7_config(steps=steps, warmup=report["run"]["warmup"], probe_every=max(1, steps // 4),
                      ckpt_every=max(50, steps // 10), **common)
    train(cfg, work / "run", resume=False, device=args.device, **modes[mode])
    report["run"].update(status="done", wall_s=time.perf_counter() - t1,
                         seconds_per_step=logged_seconds_per_step(work / "run" / "log.jsonl", 10),
                         shard_bytes=split_checkpoint(work / "run" / "model.safetensors", out))
    for name in ("log.jsonl", "config.json"):
        with atomic_path(out / name) as tmp:
            tmp.write_bytes((work / "run" / name).read_bytes())
    write_json(out / "gpu_train.json", report)
    print(json.dumps({k: report[k] for k in ("probe", "run")}, indent=1))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="the timed run on a CUDA machine")
    tr.add_argument("out", help="folder for the shards, log, config and gpu_train.json")
    tr.add_argument("--budget-s", type=float, default=380.0,
                    help="seconds the run's steps should take at the probed rate. Defaults to 380.")
    tr.add_argument("--work", default="/tmp/qvggt_gpu_train",
                    help="folder for the probes' and the run's states. Defaults to /tmp/qvggt_gpu_train.")
    tr.add_argument("--batch", type=int, default=2,
                    help="scenes per step. Defaults to 2 (at equal scenes, 8 trained worse: docs/training.md).")
    tr.add_argument("--lr", type=float, default=1e-4, help="peak learning rate. Defaults to 1e-4 (stage 7's).")
    tr.add_argument("--workers", type=int, default=14, help="rendering processes. Defaults to 14.")
    tr.add_argument("--seed", type=int, default=20, help="run seed. Defaults to 20.")
    tr.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run of the flow. Defaults to cuda.")
    tr.add_argument("--init-from", type=Path, default=ASSET, help="start weights. Defaults to the embedded model.")
    jo = sub.add_parser("join", help="one checkpoint from the returned shards")
    jo.add_argument("shards", type=Path, help="folder holding the two shards")
    jo.add_argument("dest", type=Path, help="the checkpoint to write")
    args = parser.parse_args(argv)
    if args.cmd == "train":
        return run_train(args)
    print(join_checkpoint(args.shards, args.dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
