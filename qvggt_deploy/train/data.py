"""Training batches rendered on the fly, with a curriculum.

Every scene seed is a pure function of ``(run seed, step, batch index)`` and lies below
:data:`~qvggt_deploy.data.synthetic.TRAIN_SEED_LIMIT` (10^6), so a resumed run sees exactly the
batches it would have seen, and evaluation seeds (>= 10^9) are never trained on.

A curriculum is a list of phases, each active until a fraction of the total steps: image size
(as a fraction of the preset's native size, so it works for every preset), frame counts to draw
from, batch size, scene difficulty (baseline and rotation ranges) and trajectory kind.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Iterator, Sequence, Tuple

import numpy as np
import torch

from qvggt_deploy.data.synthetic import TRAIN_SEED_LIMIT, SceneConfig, generate_scene
from qvggt_deploy.errors import QvggtError


@dataclass(frozen=True)
class Phase:
    """One curriculum phase (active while ``step < until * total_steps``)."""

    until: float
    size_scale: float = 1.0
    frames: Tuple[int, ...] = (2, 3, 4)
    batch: int = 2
    baseline: Tuple[float, float] = (0.25, 0.9)
    rotation: Tuple[float, float] = (3.0, 15.0)
    trajectory: str = "mixed"


CURRICULA: Dict[str, Tuple[Phase, ...]] = {
    # Half resolution first (4x cheaper steps, geometry is learnt at coarse scale), then the last
    # 15% at native resolution to adapt the heads and position encodings.
    "default": (
        Phase(until=0.08, size_scale=0.5, frames=(2,), batch=2, baseline=(0.15, 0.5), rotation=(2.0, 8.0)),
        Phase(until=0.85, size_scale=0.5, frames=(2, 3, 4), batch=2),
        Phase(until=1.0, size_scale=1.0, frames=(2, 3, 4), batch=2),
    ),
    "native": (Phase(until=1.0, size_scale=1.0, frames=(2, 3, 4), batch=2),),
    # For camera learning on a CPU budget (scenes with the orientation cue): larger batches at half
    # resolution with the full rotation range from the first step (no easy warm-up: 2-8 degrees is
    # sub-patch motion at 112 px), then native resolution with 3-4 frames.
    "geometry": (
        Phase(until=0.7, size_scale=0.5, frames=(2, 3, 4), batch=4, rotation=(5.0, 20.0)),
        Phase(until=1.0, size_scale=1.0, frames=(3, 4), batch=2, rotation=(5.0, 20.0)),
    ),
    # A second stage at native resolution: features that read the cue at 112 px do not carry over
    # to 224 px by themselves (measured: absolute-pose probe
    # median error 10 degrees at 112 px, 74 at 224 px; docs/training.md).
    "geometry-native": (Phase(until=1.0, size_scale=1.0, frames=(3, 4), batch=2, rotation=(5.0, 20.0)),),
    # Random views only: their translation is not implied by where a frame looks (a forward walk
    # moves along its view direction, an orbit sideways), so it has to come from parallax between
    # the frames (about 20 px at 224 px, docs/training.md).
    "random-views": (Phase(until=1.0, size_scale=1.0, frames=(3, 4), batch=2, rotation=(5.0, 20.0),
                           trajectory="random"),),
}


def get_curriculum(name: str) -> Tuple[Phase, ...]:
    try:
        return CURRICULA[name]
    except KeyError:
        raise QvggtError(f"unknown curriculum {name!r}; choose one of {', '.join(CURRICULA)}") from None


def phase_at(curriculum: Sequence[Phase], step: int, total_steps: int) -> Phase:
    frac = step / max(total_steps, 1)
    for phase in curriculum:
        if frac < phase.until:
            return phase
    return curriculum[-1]


def scene_seed(run_seed: int, step: int, index: int) -> int:
    """Training scene seed in [0, 10^6) for one batch element."""
    state = np.random.SeedSequence([int(run_seed), int(step), int(index)]).generate_state(1)[0]
    return int(state) % TRAIN_SEED_LIMIT


def native_size(img_size: int, scale: float, patch: int = 14) -> int:
    return max(patch, int(round(img_size * scale / patch)) * patch)


def make_batch(run_seed: int, step: int, phase: Phase, img_size: int, device=None) -> Dict[str, torch.Tensor]:
    """Render the batch of ``step`` (on ``device``, default the CPU).

    Returns:
        ``images [B,S,3,H,W]``, ``depth [B,S,H,W]``, ``mask [B,S,H,W]``, ``world_points
        [B,S,H,W,3]``, ``extrinsics [B,S,3,4]``, ``intrinsics [B,S,3,3]``, ``scene_extrinsics
        [B,S,3,4]`` (camera-from-room; raw metric ground truth; frames shuffled so any view may be
        the reference).
    """
    rng = np.random.default_rng([int(run_seed), int(step), 7])
    frames = int(rng.choice(phase.frames))
    size = native_size(img_size, phase.size_scale)
    cfg = SceneConfig(frames=frames, image_size=(size, size), baseline=phase.baseline, rotation=phase.rotation,
                      trajectory=phase.trajectory)
    scenes = []
    for b in range(phase.batch):
        scene = generate_scene(scene_seed(run_seed, step, b), cfg, device=device)
        scenes.append(scene.subset(rng.permutation(frames)))
    keys = ("images", "depth", "mask", "world_points", "extrinsics", "intrinsics", "scene_extrinsics")
    return {k: torch.stack([getattr(s, k) for s in scenes]) for k in keys}


class _StepBatches(torch.utils.data.Dataset):
    """Batch ``step`` of a run as a dataset item, so worker processes can render ahead."""

    def __init__(self, run_seed: int, curriculum: Sequence[Phase], total_steps: int, img_size: int,
                 batch: int = 0, device=None):
        self.run_seed, self.curriculum, self.total_steps = run_seed, tuple(curriculum), total_steps
        self.img_size, self.batch, self.device = img_size, batch, device

    def __len__(self) -> int:
        return self.total_steps

    def __getitem__(self, step: int) -> Dict[str, torch.Tensor]:
        phase = phase_at(self.curriculum, step, self.total_steps)
        if self.batch > 0:
            phase = replace(phase, batch=self.batch)
        return make_batch(self.run_seed, step, phase, self.img_size, self.device)


def iterate_batches(run_seed: int, curriculum: Sequence[Phase], total_steps: int, img_size: int,
                    start: int, end: int, batch: int = 0, workers: int = 0, pin_memory: bool = False,
                    render_device=None) -> Iterator[Dict[str, torch.Tensor]]:
    """The batches of steps ``start .. end - 1`` in order.

    With ``workers`` > 0 they are rendered ahead in that many processes (one thread each): a batch
    is a pure function of its step, so the result is the same batches, and a training step no
    longer waits for its scenes (rendering is about half of a 224-px step on one CPU thread; the
    workers pay where cores are to spare, e.g. beside a GPU).
    ``render_device`` (a GPU) renders them in this process instead, where the batches then are.
    ``batch`` > 0 replaces each phase's scenes per step.
    """
    on_cpu = render_device is None or torch.device(render_device).type == "cpu"
    if workers > 0 and not on_cpu:
        raise QvggtError(f"scenes rendered on {render_device} are rendered in the training process; "
                         f"use no rendering workers with it")
    dataset = _StepBatches(run_seed, curriculum, total_steps, img_size, batch, None if on_cpu else render_device)
    if workers <= 0:
        for step in range(start, end):
            item = dataset[step]
            yield {k: v.pin_memory() for k, v in item.items()} if pin_memory and on_cpu else item
        return
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, sampler=range(start, end), num_workers=workers,
                                         prefetch_factor=2, pin_memory=pin_memory)
    yield from loader
