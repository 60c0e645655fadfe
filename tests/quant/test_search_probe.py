"""The attention probe joins scenes of one layout into one call and scores what the
scene-by-scene runs score."""
import torch

from qvggt_deploy.quant.search import build_probe, inspected
from qvggt_deploy.quant.stream import CalibStream
from qvggt_deploy.quant.tokens import attention_with_virtual_queries


def _global_unit_inputs(micro, scenes):
    stream = CalibStream(micro, scenes)
    for unit in stream.program:
        if unit.kind == "global":
            return unit, stream.unit_inputs(unit)
        stream.advance(unit)


def test_joined_scenes_equal_scene_by_scene(micro, scenes):
    unit, inputs = _global_unit_inputs(micro, scenes)
    name, mixes = inspected(unit.name, f"{unit.name}.attn.qkv")
    attn = micro.get_submodule(name)
    feats = [micro.get_submodule(unit.name).norm1(i.x) for i in inputs]
    comp = torch.randn(3, feats[0].shape[-1])
    with torch.no_grad():
        probe = build_probe(micro, name, mixes, inputs, feats, comp)
        alone = [attention_with_virtual_queries(attn, f, i.pos, comp) for f, i in zip(feats, inputs)]
    assert len(probe.ref) == 1 and probe.ref[0].shape[0] == sum(f.shape[0] for f in feats)  # one call
    torch.testing.assert_close(probe.ref[0], torch.cat(alone), rtol=1e-5, atol=1e-6)
    assert torch.equal(probe.weights[0][:, -3:], torch.full((len(scenes), 3), inputs[0].frames_per_seq
                                                            * inputs[0].num_special / 3))
