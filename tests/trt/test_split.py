import numpy as np
import onnx
import pytest
import torch

from qvggt_deploy.graph.io import OUTPUT_NAMES
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.model import build_model, get_preset
from qvggt_deploy.trt.split import HeadsPart, export_split, plan_split, split_model


def test_plan_vggt_1b():
    plan = plan_split(get_preset("vggt-1b"), 350, 518)
    assert plan.layers == (4, 11, 17, 23) and plan.camera_layer == 23
    assert plan.boundary_shape(8) == (4, 1, 8, 930, 2048)
    assert plan.bytes_per_frame == 4 * 930 * 2048 * 4  # 30.5 MB per frame in fp32
    assert plan.to_dict()["tensor"] == "tokens"


def test_plan_adds_the_camera_layer_when_not_tapped():
    cfg = get_preset("tiny").replace(intermediate_layer_idx=(0, 1, 2, 3))
    assert plan_split(cfg, 224, 224).layers == (0, 1, 2, 3, 5)
    with pytest.raises(QvggtError, match="not a multiple of the patch size"):
        plan_split(cfg, 225, 224)


@pytest.fixture(scope="module")
def micro():
    return build_model(get_preset("micro").replace(enable_track=False))


def test_parts_compose_to_the_model(micro):
    plan, agg, heads = split_model(micro, 56, 56)
    images = torch.rand(3, 3, 56, 56)
    with torch.no_grad():
        ref = micro(images)
        tokens = agg(images)
        outs = heads(tokens, images)
    assert tuple(tokens.shape) == plan.boundary_shape(3) and tokens.dtype == torch.float32
    for name, out in zip(OUTPUT_NAMES, outs):
        torch.testing.assert_close(out, ref[name], rtol=0, atol=0)


def test_heads_refuse_a_plan_without_the_taps(micro):
    with pytest.raises(QvggtError, match="the heads need aggregator layers"):
        HeadsPart(micro, (0, 1))


def test_export_and_chain_in_onnxruntime(micro, tmp_path):
    import onnxruntime as ort

    plan, agg_path, heads_path = export_split(micro, tmp_path, 56, 56, frames=2, metadata={"qvggt.preset": "micro"})
    meta = {p.key: p.value for p in onnx.load(str(heads_path)).metadata_props}
    assert meta["qvggt.part"] == "heads" and '"layers": [0, 1, 2, 3]' in meta["qvggt.split"]
    agg, heads = ort.InferenceSession(str(agg_path)), ort.InferenceSession(str(heads_path))
    assert [i.name for i in heads.get_inputs()] == ["tokens", "images"]
    assert [o.name for o in heads.get_outputs()] == list(OUTPUT_NAMES)
    for frames in (1, 3):  # the frame axis is dynamic
        images = torch.rand(frames, 3, 56, 56)
        tokens = agg.run(None, {"images": images.numpy()})[0]
        outs = heads.run(None, {"tokens": tokens, "images": images.numpy()})
        with torch.no_grad():
            ref = micro(images)
        for name, out in zip(OUTPUT_NAMES, outs):
            np.testing.assert_allclose(out, ref[name].numpy(), rtol=1e-4, atol=1e-5, err_msg=name)
