"""Static activation scales: MSE search, percentile, filtered outliers."""
import pytest
import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.quant.activation import calibrate_act_scale, subsample_rows
from qvggt_deploy.quant.fake import fake_quant_activation


def test_mse_scale_no_worse_than_absmax():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 32, generator=g)
    x[0, 0] = 60.0
    s = calibrate_act_scale(x, method="mse")
    absmax = float(x.abs().max()) / 127

    def err(scale):
        return float(((fake_quant_activation(x, 8, "per_tensor", scale) - x) ** 2).sum())
    assert s < absmax and err(s) <= err(absmax)


def test_percentile_and_weights():
    x = torch.cat([torch.full((99, 1), 1.0), torch.full((1, 1), 100.0)])
    assert calibrate_act_scale(x, method="percentile", percentile=50) == pytest.approx(1 / 127)
    w = torch.ones(100)
    w[-1] = 1000.0  # the heavy row dominates the weighted quantile
    assert calibrate_act_scale(x, w, method="percentile", percentile=50) == pytest.approx(100 / 127)


def test_subsample_keeps_heavy_rows_and_total_weight():
    rows = torch.arange(100.0)[:, None]
    w = torch.ones(100)
    w[-3:] = 50.0
    r, ww = subsample_rows(rows, w, 20)
    assert r.shape[0] == 20 and set(r[-3:, 0].tolist()) == {97.0, 98.0, 99.0}
    assert float(ww.sum()) == pytest.approx(float(w.sum()))


def test_errors():
    with pytest.raises(QvggtError):
        calibrate_act_scale(torch.zeros(0, 4))
    with pytest.raises(QvggtError):
        calibrate_act_scale(torch.ones(4, 4), method="max")
