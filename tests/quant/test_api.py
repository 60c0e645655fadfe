"""quantize_(model, config, filter_fn): RTN config with a filter, recipes, unknown configs."""
import pytest
import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.model import build_model
from qvggt_deploy.quant.api import RTNConfig, quantize_
from qvggt_deploy.quant.fake import QuantLinear
from qvggt_deploy.quant.rtn import rtn_recipe


def test_rtn_config_with_filter(micro, scenes):
    quantize_(micro, RTNConfig("w4a16", 32), lambda m, fqn: fqn.startswith("aggregator."))
    agg = [m for m in micro.aggregator.modules() if isinstance(m, QuantLinear)]
    assert agg and all(m.precision == "w4a16" for m in agg)
    assert not any(isinstance(m, QuantLinear) for m in micro.camera_head.modules())
    with torch.no_grad():
        assert torch.isfinite(micro(scenes[0])["depth"]).all()


def test_recipe_config_matches_apply(scenes):
    model = build_model("micro", seed=0)
    recipe = rtn_recipe(model, "w4a16", 32)
    quantize_(model, recipe)
    rtn = quantize_(build_model("micro", seed=0), RTNConfig("w4a16", 32))
    with torch.no_grad():
        assert torch.equal(model(scenes[0])["depth"], rtn(scenes[0])["depth"])
    with pytest.raises(QvggtError, match="whole"):
        quantize_(build_model("micro", seed=0), recipe, lambda m, n: True)


def test_unknown_config(micro):
    with pytest.raises(QvggtError, match="handler"):
        quantize_(micro, {"precision": "w4a16"})
