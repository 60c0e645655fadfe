"""Mixed-precision allocation: within budget, optimal (vs brute force), budgets, errors."""
import itertools
import random

import pytest

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.quant.mixed import allocate, budget_from, make_plan, unit_costs
from qvggt_deploy.quant.targets import quant_units


def brute_force(costs, values, budget):
    units = list(costs)
    best = None
    for combo in itertools.product(*[list(costs[u]) for u in units]):
        c = sum(costs[u][o] for u, o in zip(units, combo))
        v = sum(values[u][o] for u, o in zip(units, combo))
        if c <= budget and (best is None or v < best[0] - 1e-12):
            best = (v, c)
    return best


@pytest.mark.parametrize("seed", range(12))
def test_allocate_matches_brute_force_and_budget(seed):
    rng = random.Random(seed)
    opts = ["fp16", "w8a16", "w4a16"]
    costs, values = {}, {}
    for u in range(6):
        base = rng.randint(5, 40)
        costs[f"u{u}"] = {"fp16": 4 * base, "w8a16": 2 * base + rng.randint(0, 3), "w4a16": base}
        values[f"u{u}"] = {"fp16": 0.0, "w8a16": rng.random() * 0.1, "w4a16": rng.random()}
    cheapest = sum(min(c.values()) for c in costs.values())
    budget = cheapest + rng.randint(0, 3 * cheapest)
    choice, cost, value = allocate(costs, values, budget)
    assert cost <= budget
    assert set(choice) == set(costs) and all(choice[u] in opts for u in choice)
    assert cost == sum(costs[u][choice[u]] for u in choice)
    assert value == pytest.approx(brute_force(costs, values, budget)[0], abs=1e-12)


def test_allocate_within_budget_when_frontier_is_thinned():
    rng = random.Random(1)
    costs = {f"u{i}": {"a": rng.randint(1, 10 ** 6), "b": rng.randint(1, 10 ** 6)} for i in range(10)}
    values = {u: {"a": rng.random(), "b": rng.random()} for u in costs}
    budget = sum(max(c.values()) for c in costs.values()) // 2 + 10 ** 6
    choice, cost, _ = allocate(costs, values, budget, max_states=4)
    assert cost <= budget


def test_infeasible_budget_raises():
    with pytest.raises(QvggtError, match="budget"):
        allocate({"u": {"w4a16": 10}}, {"u": {"w4a16": 1.0}}, 9)


def test_budget_arguments():
    assert budget_from(4.0, None, 1000) == 500
    assert budget_from(None, 2.5, 0) == 2_500_000
    for bad in [(None, None), (4.0, 1.0), (-1.0, None), (None, 0.0)]:
        with pytest.raises(QvggtError):
            budget_from(*bad, 1000)


def test_make_plan_on_micro_prefers_sensitive_units(micro):
    units = quant_units(micro)
    costs = unit_costs(micro, units, ["fp16", "w8a16", "w4a16"], 32)
    # every Linear of a unit whose input width 32 divides is quantized; embed_pose (9 inputs) stays fp16
    assert costs["camera_head.pose_branch"]["w4a16"] > 0
    assert costs["camera_head.embed_pose"]["w4a16"] == costs["camera_head.embed_pose"]["fp16"]
    sens = {u.name: {"w8a16": 0.001, "w4a16": 0.01} for u in units}
    sens[units[3].name]["w4a16"] = 10.0
    all_w4 = sum(c["w4a16"] for c in costs.values())
    plan = make_plan(micro, units, sens, all_w4 + costs[units[3].name]["w8a16"] - costs[units[3].name]["w4a16"], 32)
    assert plan.units[units[3].name] != "w4a16"
    assert plan.bytes <= plan.budget
    assert 4.0 < plan.avg_bits < 16.0


def test_make_plan_needs_measurements(micro):
    units = quant_units(micro)
    with pytest.raises(QvggtError, match="no sensitivity"):
        make_plan(micro, units, {}, 10 ** 9, 32)


def test_costs_of_a_float_option_are_its_own_bytes(micro):
    """A Linear the group does not divide falls back to fp16 under a quantized option only; under
    fp32 it is stored fp32, and the knapsack must pay for that."""
    units = [u for u in quant_units(micro) if u.name == "camera_head.embed_pose"]
    costs = unit_costs(micro, units, ["fp32", "fp16", "w4a16"], 32)["camera_head.embed_pose"]
    assert costs["fp32"] == 2 * costs["fp16"] and costs["w4a16"] == costs["fp16"]
