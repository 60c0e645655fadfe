"""Block-by-block execution of VGGT over calibration scenes.

Calibration quantizes one unit at a time (llm-awq's ``run_awq`` loop) and needs (a) each unit's
inputs as the model quantized so far produces them and (b) the rest of the model from a unit on,
to score candidates on the heads. :class:`CalibStream` keeps, per scene, the running state of the
aggregator program

    ViT block 0 .. V-1 -> final norm, drop CLS/registers, add camera/register tokens
    -> frame block 0, global block 0, ..., frame block D-1, global block D-1 -> heads

and only the aggregator layers the heads read (DPT taps and the last layer), so each block runs
once per scene per pass. The camera head loops over its trunk, so its units (trunk blocks and the
Linears around them) get their inputs from hooks during a camera-head forward instead.

The program mirrors ``Aggregator.embed``/``forward`` and ``VGGT.forward``; the tests check that
:meth:`CalibStream.predictions` equals ``model(images)`` exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.model.aggregator import IMAGENET_MEAN, IMAGENET_STD, special_tokens_for_frames
from qvggt_deploy.model.layers.rope import patch_positions
from qvggt_deploy.quant.capture import capture_inputs
from qvggt_deploy.quant.fake import QuantLinear
from qvggt_deploy.quant.targets import Unit, quant_units


@dataclass
class BlockInput:
    """Input of one block for one scene, with the token layout token filtering needs.

    ``x [B', T, C]``; token t is special iff ``t % tokens_per_frame < num_special``
    (``num_special`` 0: none, as in the camera head); ``frames_per_seq`` frames share one
    sequence (S in global blocks, 1 elsewhere).
    """

    x: torch.Tensor
    pos: Optional[torch.Tensor] = None
    tokens_per_frame: int = 0
    num_special: int = 0
    frames_per_seq: int = 1


@dataclass
class SceneState:
    images: torch.Tensor  # [B, S, 3, H, W]
    x: torch.Tensor  # input of the next aggregator block
    pos: Optional[torch.Tensor] = None  # [B*S, N, 2] once past the ViT
    frame_out: Optional[torch.Tensor] = None  # [B, S, N, C] between frame and global block
    outputs: Dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [B, S, N, 2C]
    # frames scored -> depth/point predictions, kept once the aggregator is final
    dense: Dict[int, Dict[str, torch.Tensor]] = field(default_factory=dict)


class CalibStream:
    """Per-scene block-by-block state of ``model`` over ``scenes`` (each ``[B, S, 3, H, W]``).

    Args:
        model: a VGGT (float, or partly quantized: it runs whatever modules it holds).
        scenes: calibration images, one tensor per scene, already on the model's device.
    """

    def __init__(self, model: nn.Module, scenes: Sequence[torch.Tensor]):
        self.model = model
        self.units: List[Unit] = quant_units(model)
        self.program: List[Unit] = [u for u in self.units if u.kind != "camera"]
        agg = model.aggregator
        self.vit_depth = len(agg.patch_embed.blocks)
        self.keep = set(model.cfg.intermediate_layer_idx) | {agg.depth - 1}
        self.position = 0
        self.states = [self._begin(s if s.dim() == 5 else s.unsqueeze(0)) for s in scenes]

    # ---- the aggregator program ---------------------------------------------------------------
    def _begin(self, images: torch.Tensor) -> SceneState:
        B, S, _, H, W = images.shape
        mean = images.new_tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)
        std = images.new_tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)
        x = ((images - mean) / std).reshape(B * S, 3, H, W)
        return SceneState(images=images, x=self.model.aggregator.patch_embed.prepare_tokens(x))

    def _step(self, state: SceneState, p: int, block: nn.Module) -> None:
        """Run program step ``p`` (its block is ``block``) on ``state`` and move it on."""
        agg = self.model.aggregator
        B, S, _, H, W = state.images.shape
        _set_tokens_per_frame(block, state.x.shape[1] if p < self.vit_depth else state.pos.shape[1])
        if p < self.vit_depth:
            state.x = block(state.x)
            if p == self.vit_depth - 1:
                vit = agg.patch_embed
                patches = vit.norm(state.x)[:, 1 + vit.num_register_tokens:]
                state.x = torch.cat([special_tokens_for_frames(agg.camera_token, B, S).to(patches.dtype),
                                     special_tokens_for_frames(agg.register_token, B, S).to(patches.dtype),
                                     patches], dim=1)
                state.pos = patch_positions(B * S, H // agg.patch_size, W // agg.patch_size,
                                            agg.patch_start_idx, device=state.x.device)
            return
        layer, is_global = divmod(p - self.vit_depth, 2)
        N, C = state.pos.shape[1], state.x.shape[-1]
        if not is_global:
            out = block(state.x, pos=state.pos)
            state.frame_out = out.reshape(B, S, N, C)
            state.x = out.reshape(B, S * N, C)
            return
        out = block(state.x, pos=state.pos.reshape(B, S * N, 2))
        if layer in self.keep:
            state.outputs[layer] = torch.cat([state.frame_out, out.reshape(B, S, N, C)], dim=-1)
        state.frame_out = None
        state.x = out.reshape(B * S, N, C)

    def block_input(self, state: SceneState, p: int) -> BlockInput:
        if p < self.vit_depth:
            vit = self.model.aggregator.patch_embed
            return BlockInput(state.x, None, state.x.shape[1], 1 + vit.num_register_tokens, 1)
        B, S = state.images.shape[:2]
        N = state.pos.shape[1]
        n_special = self.model.aggregator.patch_start_idx
        if (p - self.vit_depth) % 2 == 0:
            return BlockInput(state.x, state.pos, N, n_special, 1)
        return BlockInput(state.x, state.pos.reshape(B, S * N, 2), N, n_special, S)

    # ---- heads --------------------------------------------------------------------------------
    def _tokens_list(self, state: SceneState) -> List[torch.Tensor]:
        """The aggregator's output list as the heads index it; layers no head reads are empty
        ``[B, S, 0, 2C]`` placeholders (the DPT head slices every entry by frames)."""
        empty = next(iter(state.outputs.values()))[:, :, :0]
        return [state.outputs.get(i, empty) for i in range(self.model.aggregator.depth)]

    def _dense(self, state: SceneState, frames: int = 0) -> Dict[str, torch.Tensor]:
        """Depth and point maps of the first ``frames`` frames (0: all; the DPT heads run per frame,
        so a prefix costs its share and gives the same maps as the full run)."""
        m, out = self.model, {}
        tokens, start = self._tokens_list(state), self.model.aggregator.patch_start_idx
        images = state.images
        if 0 < frames < images.shape[1]:
            tokens, images = [t[:, :frames] for t in tokens], images[:, :frames]
        if m.depth_head is not None:
            out["depth"], out["depth_conf"] = m.depth_head(tokens, images, start)
        if m.point_head is not None:
            out["world_points"], out["world_points_conf"] = m.point_head(tokens, images, start)
        return out

    def _camera(self, state: SceneState) -> Dict[str, torch.Tensor]:
        if self.model.camera_head is None:
            return {}
        return {"pose_enc": self.model.camera_head(self._tokens_list(state))[-1]}

    # ---- what calibration uses ----------------------------------------------------------------
    def index(self, unit: Unit) -> int:
        """Program step of an aggregator unit."""
        for p, u in enumerate(self.program):
            if u.name == unit.name:
                return p
        raise QvggtError(f"unit {unit.name} is not a step of the aggregator program")

    @torch.no_grad()
    def unit_inputs(self, unit: Unit) -> List[BlockInput]:
        """Inputs of ``unit`` for every scene, as the model now computes them.

        Aggregator units must be the next step (``advance`` moves on). Camera units need the
        aggregator finished; their inputs are hooked from a camera-head forward: a trunk block
        gets ``[B*iterations, S, 2C]`` (one sequence per refinement round); a camera-head unit that
        is not a block gets ``BlockInput``s of its first Linear only, use :meth:`linear_inputs`
        for all of them.
        """
        if unit.kind != "camera":
            p = self.index(unit)
            if p != self.position:
                raise QvggtError(f"unit {unit.name} is step {p}, the stream is at step {self.position}")
            return [self.block_input(s, p) for s in self.states]
        target = unit.name if unit.is_block else unit.linears[0]
        return [BlockInput(torch.cat(xs, dim=0)) for xs in self._camera_capture([target])[target]]

    @torch.no_grad()
    def linear_inputs(self, names: Sequence[str]) -> Dict[str, List[torch.Tensor]]:
        """Camera-head Linears' inputs, per scene (all refinement rounds concatenated)."""
        got = self._camera_capture(list(names))
        return {n: [torch.cat(xs, dim=0) for xs in got[n]] for n in names}

    def _camera_capture(self, names: List[str]) -> Dict[str, List[List[torch.Tensor]]]:
        if self.position != len(self.program):
            raise QvggtError("camera-head units need the aggregator calibrated first")
        modules = {n: self.model.get_submodule(n) for n in names}
        out: Dict[str, List[List[torch.Tensor]]] = {n: [] for n in names}
        for state in self.states:
            with capture_inputs(modules) as got:
                self._camera(state)
            for n in names:
                out[n].append(got[n])
        return out

    @torch.no_grad()
    def advance(self, unit: Unit) -> None:
        """Run ``unit`` (as the model now holds it) on every scene: the next unit's inputs."""
        if unit.kind == "camera":
            return
        p = self.index(unit)
        if p != self.position:
            raise QvggtError(f"unit {unit.name} is step {p}, the stream is at step {self.position}")
        block = self.model.get_submodule(unit.name)
        for state in self.states:
            self._step(state, p, block)
        self.position += 1

    @torch.no_grad()
    def predictions(self, scenes: Optional[Sequence[int]] = None,
                    dense_frames: int = 0) -> List[Dict[str, torch.Tensor]]:
        """Predictions (``pose_enc``, ``depth``, ``world_points`` and confidences) per scene,
        running the model as it now is from the stream's position to the end (earlier blocks
        are not re-run: their outputs are the stream's state). ``dense_frames`` > 0: depth and
        points of the first that many frames only (cameras of all)."""
        results = []
        for i in (range(len(self.states)) if scenes is None else scenes):
            state = self.states[i]
            if self.position < len(self.program):
                state = replace(state, outputs=dict(state.outputs))
                for q in range(self.position, len(self.program)):
                    self._step(state, q, self.model.get_submodule(self.program[q].name))
                dense = self._dense(state, dense_frames)
            else:  # the aggregator is final: its dense predictions are computed once and kept
                if dense_frames not in state.dense:
                    state.dense[dense_frames] = self._dense(state, dense_frames)
                dense = state.dense[dense_frames]
            results.append({**dense, **self._camera(state)})
        return results


def _set_tokens_per_frame(block: nn.Module, tokens_per_frame: int) -> None:
    """What the aggregator's layout hook does in a full forward (the stream runs blocks alone)."""
    for m in block.modules():
        if isinstance(m, QuantLinear):
            m.tokens_per_frame = tokens_per_frame
