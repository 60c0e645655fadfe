"""``qvggt scenes``: write generated scenes with ground truth to disk (docs/scenes.md)."""
from __future__ import annotations

import argparse

from qvggt_deploy.cli.args import add_out_arg, at_least, nonneg_int, positive_int
from qvggt_deploy.cli.base import Command
from qvggt_deploy.errors import QvggtError


class Scenes(Command):
    """Render procedural multi-view scenes with ground truth into scene folders.

    Each scene goes to OUT/scene_<seed>/ (images/NNN.png, scene.npz, scene.json). Seed ranges by
    --split: train 0 + SEED + i (< 10^6), calib 5*10^8 + SEED + i, eval 10^9 + SEED + i, so the
    eval split equals what 'qvggt eval --scenes N --seed SEED' generates on the fly.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from qvggt_deploy.data.trajectory import TRAJECTORIES

        add_out_arg(parser, "workdir", "the scene_<seed>/ folders",
                    extra="a scene folder there is replaced only if it holds scene.json")
        parser.add_argument("--num", type=positive_int, default=8, help="number of scenes. Defaults to 8.")
        parser.add_argument("--frames", type=positive_int, default=4, help="frames per scene. Defaults to 4.")
        parser.add_argument("--image-size", type=at_least(8), nargs=2, default=(224, 224), metavar=("H", "W"),
                            help="image height and width. Defaults to 224 224.")
        parser.add_argument("--split", default="eval", choices=["train", "calib", "eval"],
                            help="seed range (see above). Defaults to eval.")
        parser.add_argument("--seed", type=nonneg_int, default=0, help="offset within the split's range. Defaults to 0.")
        parser.add_argument("--trajectory", default="mixed", choices=["mixed", *TRAJECTORIES],
                            help="camera path. Defaults to mixed (one of them per scene).")

    def run(self, args: argparse.Namespace) -> int:
        from pathlib import Path

        from qvggt_deploy.data.calib import CALIB_SEED_START
        from qvggt_deploy.data.scene_io import write_scene
        from qvggt_deploy.data.synthetic import EVAL_SEED_START, TRAIN_SEED_LIMIT, SceneConfig, generate_scene
        from qvggt_deploy.log import progress

        from qvggt_deploy.fileio import check_output_dir

        check_output_dir(args.out, replace=False)
        if args.num < 1:
            raise QvggtError(f"--num must be >= 1, got {args.num}")
        start = {"train": 0, "calib": CALIB_SEED_START, "eval": EVAL_SEED_START}[args.split] + args.seed
        if args.split == "train" and start + args.num > TRAIN_SEED_LIMIT:
            raise QvggtError(f"train seeds must stay below {TRAIN_SEED_LIMIT}; lower --seed or --num")
        cfg = SceneConfig(frames=args.frames, image_size=tuple(args.image_size), trajectory=args.trajectory)
        out = Path(args.out)
        for seed in progress(range(start, start + args.num), desc="scenes", total=args.num):
            write_scene(generate_scene(seed, cfg), out / f"scene_{seed}")
        print(f"{args.num} scenes ({args.split} seeds {start}..{start + args.num - 1}) -> {out}")
        return 0
