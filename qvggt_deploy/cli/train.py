"""``qvggt train``: train a preset on generated scenes (see :mod:`qvggt_deploy.train`)."""
from __future__ import annotations

import argparse

from qvggt_deploy.cli.args import add_out_arg, add_preset_arg, add_threads_arg, apply_threads
from qvggt_deploy.cli.base import Command


class Train(Command):
    """Train a VGGT preset on procedurally generated scenes (CPU is enough for tiny).

    Scenes are rendered on the fly with training seeds (< 10^6; evaluation uses >= 10^9). The
    output folder holds a resumable state.pt, log.jsonl (losses), snapshots and the final
    model.safetensors. Rerunning the same command resumes where it stopped; the result is
    bit-identical to an uninterrupted run.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from qvggt_deploy.train.data import CURRICULA
        from qvggt_deploy.train.losses import ROTATION_LOSSES
        from qvggt_deploy.train.loop import TrainConfig

        d = TrainConfig()
        add_preset_arg(parser, default=d.preset, help="architecture to train")
        add_out_arg(parser, "workdir", "the checkpoints and logs", extra="a run resumes if it holds state.pt")
        parser.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps. Defaults to {d.steps}.")
        parser.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate. Defaults to {d.lr}.")
        parser.add_argument("--weight-decay", type=float, default=d.weight_decay,
                            help=f"AdamW weight decay. Defaults to {d.weight_decay}.")
        parser.add_argument("--warmup", type=int, default=d.warmup, help=f"warmup steps. Defaults to {d.warmup}.")
        parser.add_argument("--grad-clip", type=float, default=d.grad_clip,
                            help=f"gradient-norm clip. Defaults to {d.grad_clip}.")
        parser.add_argument("--seed", type=int, default=d.seed, help=f"run seed. Defaults to {d.seed}.")
        parser.add_argument("--curriculum", default=d.curriculum, choices=sorted(CURRICULA),
                            help=f"resolution/frames/difficulty schedule. Defaults to {d.curriculum}.")
        parser.add_argument("--batch", type=int, default=d.batch,
                            help="scenes per step instead of the curriculum's. Defaults to 0 (the curriculum's).")
        parser.add_argument("--init-from", default=None,
                            help="start from these weights (fresh optimizer and LR schedule): a second stage")
        parser.add_argument("--weight-camera", type=float, default=d.weight_camera,
                            help=f"camera loss weight. Defaults to {d.weight_camera} (VGGT).")
        parser.add_argument("--weight-depth", type=float, default=d.weight_depth,
                            help=f"depth loss weight. Defaults to {d.weight_depth}.")
        parser.add_argument("--weight-point", type=float, default=d.weight_point,
                            help=f"point-map loss weight. Defaults to {d.weight_point}.")
        parser.add_argument("--weight-abs-pose", type=float, default=d.weight_abs_pose,
                            help="weight of the training-only absolute-pose probe on the camera tokens "
                                 f"(generated scenes know each frame's pose in the room). Defaults to {d.weight_abs_pose} (off).")
        parser.add_argument("--weight-translation-direction", type=float, default=d.weight_translation_direction,
                            help="weight of the pairwise translation-direction term (1 - |cos| between predicted "
                                 "and true relative translations, what the official RTE scores). Defaults to "
                                 f"{d.weight_translation_direction} (off).")
        parser.add_argument("--weight-relative-rotation", type=float, default=d.weight_relative_rotation,
                            help="weight of the pairwise relative-rotation term (sin^2 of half the angle between "
                                 "predicted and true relative rotations of every frame pair). Defaults to "
                                 f"{d.weight_relative_rotation} (off).")
        parser.add_argument("--camera-rotation-loss", choices=ROTATION_LOSSES, default=d.camera_rotation_loss,
                            help="how the camera loss scores each frame's rotation: huber (VGGT's, on the four "
                                 "quaternion components) or geodesic (sin^2 of half the rotation angle). "
                                 f"Defaults to {d.camera_rotation_loss}.")
        parser.add_argument("--weight-camera-rotation", type=float, default=d.weight_camera_rotation,
                            help="weight of that rotation term inside the camera loss. Defaults to "
                                 f"{d.weight_camera_rotation}.")
        parser.add_argument("--weight-track", type=float, default=d.weight_track,
                            help="weight of the track-head loss on ground-truth tracks from the generated scenes "
                                 f"(correspondence supervision; builds the model with its track head). Defaults to "
                                 f"{d.weight_track} (off: no track head in training).")
        parser.add_argument("--track-points", type=int, default=d.track_points,
                            help=f"query pixels per sample for --weight-track. Defaults to {d.track_points}.")
        parser.add_argument("--weight-attn-match", type=float, default=d.weight_attn_match,
                            help="weight of the attention-matching loss: head 0 of every global block is pulled "
                                 "towards the true frame-0 patch of a later frame's patch (correspondence "
                                 f"supervision). Defaults to {d.weight_attn_match} (off).")
        parser.add_argument("--attn-match-per-frame", type=int, default=d.attn_match_per_frame,
                            help=f"matched patches per later frame for --weight-attn-match. Defaults to "
                                 f"{d.attn_match_per_frame}.")
        parser.add_argument("--probe-every", type=int, default=d.probe_every,
                            help="log held-out camera figures beside the identity and forward priors every "
                                 "this many steps (16 fixed scenes, 4 frames, 224 px). Defaults to 0 (off).")
        parser.add_argument("--dense-frames", type=int, default=d.dense_frames,
                            help="run the depth and point heads on this many random frames per step (the "
                                 "camera sees all); about 2x cheaper steps at 1. Defaults to 0 (all frames).")
        parser.add_argument("--log-every", type=int, default=d.log_every, help="steps between log lines")
        parser.add_argument("--ckpt-every", type=int, default=d.ckpt_every, help="steps between resumable states")
        parser.add_argument("--snapshot-every", type=int, default=d.snapshot_every,
                            help="steps between weight snapshots")
        parser.add_argument("--stop-after", type=int, default=None,
                            help="stop (resumably) once this step is done; rerun without it to finish")
        parser.add_argument("--no-resume", action="store_true", help="start over even if OUT/state.pt exists")
        parser.add_argument("--device", default="cpu",
                            help="where the model trains: cpu or cuda[:N] (scenes are rendered on the CPU "
                                 "unless --render-device says otherwise). Defaults to cpu.")
        parser.add_argument("--workers", type=int, default=0,
                            help="processes rendering the next batches while a step runs (the same batches), "
                                 "for machines with cores to spare; on 2 cores --threads 1 --workers 1 is as fast "
                                 "as --threads 2 (benchmarks/train_throughput.py). Defaults to 0.")
        parser.add_argument("--render-device", default=None,
                            help="render the scenes on this device (cuda) in the training process instead of "
                                 "on the CPU; not with --workers. Defaults to the CPU.")
        add_threads_arg(parser)

    def run(self, args: argparse.Namespace) -> int:
        from qvggt_deploy.train.loop import TrainConfig, train

        apply_threads(args.threads)
        cfg = TrainConfig(preset=args.preset, steps=args.steps, lr=args.lr, weight_decay=args.weight_decay,
                          warmup=args.warmup, grad_clip=args.grad_clip, seed=args.seed,
                          curriculum=args.curriculum, batch=args.batch, log_every=args.log_every, ckpt_every=args.ckpt_every,
                          snapshot_every=args.snapshot_every, init_from=args.init_from,
                          weight_camera=args.weight_camera, weight_depth=args.weight_depth,
                          weight_point=args.weight_point, weight_abs_pose=args.weight_abs_pose,
                          weight_translation_direction=args.weight_translation_direction,
                          weight_relative_rotation=args.weight_relative_rotation,
                          camera_rotation_loss=args.camera_rotation_loss,
                          weight_camera_rotation=args.weight_camera_rotation,
                          weight_track=args.weight_track, track_points=args.track_points,
                          weight_attn_match=args.weight_attn_match, attn_match_per_frame=args.attn_match_per_frame,
                          probe_every=args.probe_every, dense_frames=args.dense_frames)
        train(cfg, args.out, resume=not args.no_resume, stop_at=args.stop_after, device=args.device,
              workers=args.workers, render_device=args.render_device)
        return 0
