"""AWQ scale and clip search beat RTN on a planted outlier channel; trials restore the model."""
import torch
from torch import nn

from qvggt_deploy.quant import quantizer
from qvggt_deploy.quant.awq import search_clip, search_scale, smoothing_factors
from qvggt_deploy.quant.search import Probe, UnitSpec, trial_error


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 32)


def planted():
    g = torch.Generator().manual_seed(0)
    model = Toy()
    with torch.no_grad():
        model.fc.weight.copy_(torch.randn(32, 64, generator=g) * 0.05)
    x = torch.randn(512, 64, generator=g)
    x[:, 5] *= 40.0  # an outlier input channel: its weights matter most
    return model, x


def probe_for(model, x):
    def run():
        return [model.fc(x)]
    probe = Probe(run, [torch.ones(x.shape[0])], x, torch.ones(x.shape[0]))
    probe.ref = run()
    return probe


def test_scale_search_improves_block_mse_over_rtn():
    model, x = planted()
    before = model.fc.weight.clone()
    probe = probe_for(model, x)
    spec = UnitSpec("w4a16", 32)
    choice = search_scale(model, probe, "fc", spec, n_grid=20)
    rtn = trial_error(model, probe, "fc", spec, None)
    assert abs(choice.losses[0] - rtn) <= 1e-6 * rtn  # a = 0 is RTN
    assert choice.a > 0 and min(choice.losses) < 0.7 * rtn
    assert isinstance(model.fc, nn.Linear) and torch.equal(model.fc.weight, before)  # restored


def test_smoothing_factors_normalised():
    s = smoothing_factors(torch.tensor([0.1, 1.0, 10.0]), 0.5)
    assert abs(float(s.max() * s.min()) - 1.0) < 1e-5


def test_clip_search_reduces_layer_error():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(16, 64, generator=g)
    w[:, 3] *= 8  # a weight outlier per row: clipping it helps the other 31 weights of the group
    x = torch.randn(256, 64, generator=g)
    ratios = search_clip(w, x, torch.ones(256), 4, 32)
    assert ratios.shape == (16, 2) and bool((ratios <= 1).all()) and bool((ratios >= 0.5).all())

    def err(clip):
        return float(((x @ (quantizer.fake_quantize(w, 4, 32, clip=clip) - w).T) ** 2).mean())
    assert err(ratios) < err(1.0)


def test_clip_search_never_worse_than_no_clip_on_biased_inputs():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(8, 128, generator=g)
    x = torch.randn(400, 128, generator=g).abs() + 1.0  # positive mean, like GELU outputs
    ratios = search_clip(w, x, torch.ones(400), 4, 32)

    def err(clip):
        return float(((x @ (quantizer.fake_quantize(w, 4, 32, clip=clip) - w).T) ** 2).mean())
    assert err(ratios) <= err(1.0)


def test_clip_search_inside_a_layer_clip_never_loses_to_that_clip():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(8, 128, generator=g)
    x = torch.randn(400, 128, generator=g).abs() + 1.0
    base = 0.9
    ratios = search_clip(w, x, torch.ones(400), 4, 32, base=base)

    def err(clip):
        return float(((x @ (quantizer.fake_quantize(w, 4, 32, clip=clip) - w).T) ** 2).mean())
    assert err(base * ratios) <= err(base)
    assert not torch.equal(ratios, search_clip(w, x, torch.ones(400), 4, 32))  # tuned for the clip it runs in


def _clip_search_by_definition(w, x, weights, bits, group, n_grid=20, max_shrink=0.5, sweeps=2):
    """Coordinate descent written out: each group's ratio minimises the weighted squared whole-
    channel error given the other groups' current picks (what search_clip computes faster)."""
    N, K = w.shape
    G = K // group
    wt = weights / weights.sum()
    steps = [1.0 - i / n_grid for i in range(int(max_shrink * n_grid))]
    errs = torch.stack([torch.einsum("tgk,ngk->tng", x.reshape(-1, G, group),
                                     (quantizer.fake_quantize(w, bits, group, clip=r) - w).reshape(N, G, group))
                        for r in steps])  # [R, T, N, G]
    pick = torch.zeros(N, G, dtype=torch.long)
    for _ in range(sweeps):
        for g in range(G):
            for n in range(N):
                others = sum(errs[pick[n, h], :, n, h] for h in range(G) if h != g)
                losses = [float((((others + errs[r, :, n, g]) ** 2) * wt).sum()) for r in range(len(steps))]
                pick[n, g] = min(range(len(steps)), key=losses.__getitem__)
    return torch.tensor(steps)[pick]


def test_clip_search_matches_its_definition():
    g = torch.Generator().manual_seed(4)
    w = torch.randn(12, 96, generator=g)
    w[:, 5] *= 6
    x = torch.randn(300, 96, generator=g).abs() + 0.5
    weights = torch.rand(300, generator=g)
    fast = search_clip(w, x, weights, 4, 32, max_rows=300)
    assert torch.equal(fast, _clip_search_by_definition(w, x, weights, 4, 32))
