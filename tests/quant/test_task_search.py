"""Candidate scoring of the task-aware search, with planted head outcomes: which candidate wins
must follow the head weights when one candidate is better on the camera and another on depth."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from qvggt_deploy.quant.awq import smoothing_factors, weighted_abs_mean
from qvggt_deploy.quant.objective import TaskWeights, reference, task_loss
from qvggt_deploy.quant.search import Probe, UnitSpec
from qvggt_deploy.quant.task_search import Candidate, TaskSearchOptions, score_finalists, search_group


def _cand(a, rec, dtask):
    return Candidate(a, 1.0, torch.ones(1), rec, dtask=dtask)


def test_score_is_relative_to_rtn():
    rtn, rec_good, task_good = _cand(0.0, 1.0, 1.0), _cand(0.5, 0.5, 1.2), _cand(0.75, 0.9, 0.3)
    pick = score_finalists([rtn, rec_good, task_good], rtn, TaskSearchOptions())
    assert pick is task_good
    assert [c.score for c in (rtn, rec_good, task_good)] == pytest.approx([2.0, 1.7, 1.2])
    assert score_finalists([rtn, rec_good, task_good], rtn, TaskSearchOptions(w_task=0.0)) is rec_good
    assert score_finalists([rtn, rec_good, task_good], rtn, TaskSearchOptions(w_rec=0.0)) is task_good


def test_heads_blind_to_the_group_leave_reconstruction_to_decide():
    rtn, rec_good, task_good = _cand(0.0, 1.0, 0.0), _cand(0.5, 0.5, 0.0), _cand(0.75, 0.9, -0.1)
    assert score_finalists([rtn, rec_good, task_good], rtn, TaskSearchOptions(w_rec=0.0)) is rec_good
    assert rec_good.score == pytest.approx(0.5)


EXPONENTS = (0.0, 0.25, 0.5, 0.75)
# per candidate exponent: (camera error, log-depth error) the heads will show
PLANTED = {0.0: (0.03, 0.03), 0.25: (0.04, 0.04), 0.5: (0.001, 0.05), 0.75: (0.05, 0.001)}


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(32, 16)


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = _Toy()
    x = torch.randn(64, 32) * torch.linspace(0.1, 4.0, 32)  # uneven channels: exponents differ
    probe = Probe(run=lambda: [model.lin(x)], weights=[torch.ones(64)], rows=x, row_weights=torch.ones(64))
    probe.ref = probe.run()
    x_mean = weighted_abs_mean(x, torch.ones(64))
    factors = {a: smoothing_factors(x_mean, a) for a in EXPONENTS}
    fp = {"pose_enc": torch.zeros(1, 2, 9), "depth": torch.ones(1, 2, 4, 4, 1)}
    refs = reference([fp])
    return model, probe, factors, fp, refs


def _task(model, factors, fp, refs, weights):
    """The task loss of the planted predictions of whichever candidate is installed."""
    def task() -> float:
        inv_s = model.lin.inv_s
        a = min(factors, key=lambda k: float((1.0 / factors[k] - inv_s).abs().max()))
        cam, dep = PLANTED[a]
        pred = {"pose_enc": fp["pose_enc"] + cam, "depth": fp["depth"] * math.exp(dep)}
        return task_loss([pred], refs, weights)["task"]
    return task


@pytest.mark.parametrize("weights, expected", [
    (TaskWeights(camera=1.0, depth=0.1), 0.5),   # camera matters: the camera-good candidate
    (TaskWeights(camera=0.1, depth=1.0), 0.75),  # depth matters: the depth-good candidate
])
def test_head_weights_decide_between_candidates(setup, weights, expected):
    model, probe, factors, fp, refs = setup
    opts = TaskSearchOptions(grid=len(EXPONENTS), top_m=len(EXPONENTS), w_rec=0.0)
    pick, finalists = search_group(model, probe, "lin", UnitSpec("w4a16", 16), opts,
                                   task=_task(model, factors, fp, refs, weights), task_float=0.0)
    assert pick.a == expected
    assert sorted(c.a for c in finalists) == list(EXPONENTS)
    for c in finalists:
        cam, dep = PLANTED[c.a]
        assert c.dtask == pytest.approx(weights.camera * cam + weights.depth * dep, rel=1e-4)
    assert isinstance(model.lin, nn.Linear)  # trials restored the float layer


def test_reconstruction_weight_can_overrule_the_heads(setup):
    model, probe, factors, fp, refs = setup
    opts = TaskSearchOptions(grid=len(EXPONENTS), top_m=len(EXPONENTS), w_rec=1.0, w_task=0.0)
    pick, finalists = search_group(model, probe, "lin", UnitSpec("w4a16", 16), opts,
                                   task=_task(model, factors, fp, refs, TaskWeights()), task_float=0.0)
    assert pick is min(finalists, key=lambda c: c.rec)


@pytest.mark.parametrize("rtn_finalist", [True, False])
def test_rtn_wins_only_while_it_is_a_finalist(monkeypatch, rtn_finalist):
    """Heads that favour RTN (a = 0) pick it only while it is a finalist; off, it is still run on
    the heads, because every finalist's task term is relative to RTN's."""
    torch.manual_seed(0)
    model = _Toy()
    scale = torch.ones(32)
    scale[:4] = 30.0  # salient channels: smoothing lowers the reconstruction error, as in AWQ
    x = torch.randn(256, 32) * scale
    probe = Probe(run=lambda: [model.lin(x)], weights=[torch.ones(256)], rows=x, row_weights=torch.ones(256))
    probe.ref = probe.run()
    factors = {a: smoothing_factors(weighted_abs_mean(x, torch.ones(256)), a) for a in EXPONENTS}
    fp = {"pose_enc": torch.zeros(1, 2, 9), "depth": torch.ones(1, 2, 4, 4, 1)}
    monkeypatch.setitem(PLANTED, 0.0, (0.0005, 0.0005))  # RTN is best on the heads
    opts = TaskSearchOptions(grid=len(EXPONENTS), top_m=2, w_rec=0.0, rtn_finalist=rtn_finalist)
    pick, finalists = search_group(model, probe, "lin", UnitSpec("w4a16", 16), opts,
                                   task=_task(model, factors, fp, reference([fp]), TaskWeights()), task_float=0.0)
    top = finalists[:2]
    assert all(c.a > 0 for c in top) and all(c.dtask is not None for c in finalists)
    if rtn_finalist:
        assert len(finalists) == 3 and pick.a == 0.0
    else:
        assert len(finalists) == 2 and pick in top
        assert pick.score == pytest.approx(pick.dtask / 0.001, rel=1e-3)  # relative to RTN's dtask
