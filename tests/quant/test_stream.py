"""The calibration stream reproduces the model exactly, block by block."""
import pytest
import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.quant.stream import CalibStream


def test_predictions_equal_model(micro, scenes):
    with torch.no_grad():
        ref = [micro(s) for s in scenes]
    stream = CalibStream(micro, scenes)
    first = stream.predictions()
    for unit in stream.program:
        inputs = stream.unit_inputs(unit)
        assert len(inputs) == len(scenes)
        stream.advance(unit)
    last = stream.predictions()
    for r, a, b in zip(ref, first, last):
        for key in ("pose_enc", "depth", "world_points", "depth_conf"):
            assert torch.equal(r[key], a[key]) and torch.equal(r[key], b[key])


def test_dense_frames_give_the_first_frames_of_the_full_maps(micro, scenes):
    """The task search scores depth and points on a frame prefix: the same maps, cameras of all."""
    stream = CalibStream(micro, scenes)
    for final in (False, True):  # at the start (re-run to the end), then final (cached per prefix)
        if final:
            for unit in stream.program:
                stream.advance(unit)
        full, part = stream.predictions(), stream.predictions(dense_frames=1)
        for f, p in zip(full, part):
            assert p["depth"].shape[1] == 1 and p["pose_enc"].shape == f["pose_enc"].shape
            for key in ("depth", "depth_conf", "world_points", "world_points_conf"):
                torch.testing.assert_close(p[key], f[key][:, :1])
    assert stream.predictions()[0]["depth"].shape[1] == scenes[0].shape[1]  # the cache keeps both


def test_layouts_and_order(micro, scenes):
    stream = CalibStream(micro, scenes)
    kinds = [u.kind for u in stream.units]
    assert kinds[:2] == ["vit", "vit"] and kinds[2:4] == ["frame", "global"] and kinds[-1] == "camera"
    inp = stream.unit_inputs(stream.units[0])[0]
    assert inp.num_special == 5 and inp.tokens_per_frame == 5 + 16 and inp.frames_per_seq == 1
    with pytest.raises(QvggtError, match="step"):
        stream.unit_inputs(stream.units[1])  # not the next step
    with pytest.raises(QvggtError, match="aggregator"):
        stream.unit_inputs(stream.units[-1])  # camera units need the aggregator done
    for unit in stream.program:
        if unit.kind == "global":
            g = stream.unit_inputs(unit)[0]
            assert g.frames_per_seq == 2 and g.x.shape[1] == 2 * g.tokens_per_frame
        stream.advance(unit)
    trunk = stream.unit_inputs(stream.units[-2])[0]
    assert trunk.x.shape == (micro.cfg.camera_iterations, 2, 2 * micro.cfg.embed_dim) and trunk.num_special == 0
