"""The W4A16 dispatch table (qvggt_deploy/ops/dispatch.py): reader, architecture fallback,
threshold choice, the tuner's writer, the generated C++ header, and W4A16Linear's use of it."""
import json
from pathlib import Path

import pytest
import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.ops import dispatch
from qvggt_deploy.ops.linear import W4A16Linear

HEADER = Path(__file__).resolve().parents[2] / "kernels" / "w4a16_dispatch_table.h"


def planted(**archs):
    return {"format": dispatch.FORMAT, "version": dispatch.VERSION, "about": "test",
            "archs": {key: {"source": "planted", "device": None, "shapes": rows} for key, rows in archs.items()}}


def rows(*triples):
    return [{"k": k, "n": n, "cublas_min_m": m} for k, n, m in triples]


def test_committed_table_is_valid_and_says_its_defaults_are_guesses():
    table = dispatch.load_table()
    assert {"sm_87", "sm_90"} <= set(table["archs"])
    for key in ("sm_87", "sm_90"):
        entry = table["archs"][key]
        if entry.get("device") is None:
            assert "default, not measured" in entry["source"]
        shapes = {(r["k"], r["n"]) for r in entry["shapes"]}
        # VGGT-1B aggregator and camera-head Linear shapes
        assert {(1024, 3072), (1024, 1024), (1024, 4096), (4096, 1024), (2048, 8192), (8192, 2048)} <= shapes


def test_committed_header_is_the_rendering_of_the_committed_table():
    assert HEADER.read_text() == dispatch.render_header(dispatch.load_table()), \
        "regenerate: python -m qvggt_deploy.ops.dispatch --header kernels/w4a16_dispatch_table.h"


@pytest.mark.parametrize("sm,expected", [
    (87, "sm_87"), (90, "sm_90"),
    (80, "sm_87"), (86, "sm_87"), (89, "sm_87"),  # Ampere/Ada: the listed sm_8x
    (100, "sm_90"), (120, "sm_90"),               # newer: the newest older one
    (75, "sm_87"),                                 # older than anything listed: the oldest
])
def test_unknown_architectures_fall_back(sm, expected):
    assert dispatch.resolve_arch(dispatch.load_table(), sm) == expected


def test_same_major_ties_go_to_the_older():
    table = planted(sm_80=rows((64, 16, 1)), sm_86=rows((64, 16, 2)), sm_90=rows((64, 16, 3)))
    assert dispatch.resolve_arch(table, 83) == "sm_80"
    assert dispatch.resolve_arch(table, 84) == "sm_86"
    assert dispatch.resolve_arch(table, 89) == "sm_86"  # same major beats the nearer sm_90


def test_shape_lookup_exact_then_nearest_in_log_space():
    table = planted(sm_90=rows((1024, 1024, 2000), (1024, 4096, 1000), (4096, 1024, 900), (2048, 8192, None)))
    assert dispatch.cublas_min_m(90, 1024, 4096, table) == 1000
    assert dispatch.cublas_min_m(90, 4096, 1024, table) == 900     # k and n are not interchangeable
    assert dispatch.cublas_min_m(90, 1024, 3072, table) == 1000    # log2 distance 0.415 vs 1.585
    assert dispatch.cublas_min_m(90, 1024, 512, table) == 2000
    assert dispatch.cublas_min_m(90, 2048, 6144, table) is None    # nearest is "never"
    assert dispatch.cublas_min_m(90, 2048, 2048, table) == 2000    # ties (1 + 1 each): the first listed


def test_threshold_is_where_cublas_wins_from_then_on():
    def points(wins):
        return [{"m": m, "fused_s": 1.0, "cublas_s": 0.5 if win else 1.5} for m, win in wins]

    assert dispatch.threshold_from_timings(points([(256, False), (1024, True), (4096, True)])) == 1024
    # a win at 256 that does not hold at 512 is noise, not a threshold
    assert dispatch.threshold_from_timings(points([(256, True), (512, False), (1024, True), (4096, True)])) == 1024
    assert dispatch.threshold_from_timings(points([(256, True), (1024, True), (4096, False)])) is None
    assert dispatch.threshold_from_timings(points([(1, True), (16, True)])) == 1
    # within the margin the fused kernel keeps the job (it needs no workspace)
    close = [{"m": 2048, "fused_s": 1.0, "cublas_s": 0.99}]
    assert dispatch.threshold_from_timings(close) is None
    assert dispatch.threshold_from_timings(close, margin=0.0) == 2048


def test_table_from_planted_timings_replaces_one_arch_and_round_trips(tmp_path):
    base = planted(sm_87=rows((1024, 1024, 3000)), sm_90=rows((1024, 1024, 2000)))
    timings = []
    for (k, n), cross in {(1024, 1024): 2048, (1024, 4096): 512, (4096, 1024): None}.items():
        for m in (16, 512, 2048, 8192):
            wins = cross is not None and m >= cross
            timings.append({"k": k, "n": n, "m": m, "fused_s": 1e-4, "cublas_s": 0.5e-4 if wins else 2e-4})
    table = dispatch.table_from_timings(timings, 90, "NVIDIA H100 80GB HBM3", "measured (test)", base=base)
    assert table["archs"]["sm_87"] == base["archs"]["sm_87"]
    entry = table["archs"]["sm_90"]
    assert entry["device"] == "NVIDIA H100 80GB HBM3" and entry["source"] == "measured (test)"
    assert entry["shapes"] == rows((1024, 1024, 2048), (1024, 4096, 512), (4096, 1024, None))
    new = dispatch.table_from_timings(timings[:4], 100, "B200", "measured", base=base)
    assert list(new["archs"]) == ["sm_87", "sm_90", "sm_100"]  # numeric order, not text order

    path = tmp_path / "table.json"
    dispatch.write_table(path, table)
    assert dispatch.load_table(path) == table
    text = path.read_text()
    assert '{"k": 1024, "n": 4096, "cublas_min_m": 512}' in text  # one row per line
    assert "#define" not in dispatch.render_header(table) and "{1024, 4096, 512}," in dispatch.render_header(table)
    assert "{4096, 1024, 0}," in dispatch.render_header(table)  # never -> 0


def test_timings_must_be_complete():
    with pytest.raises(QvggtError, match="lacks 'cublas_s'"):
        dispatch.table_from_timings([{"k": 64, "n": 16, "m": 1, "fused_s": 1.0}], 90, "x", "y")
    with pytest.raises(QvggtError, match="no timings"):
        dispatch.table_from_timings([], 90, "x", "y")


@pytest.mark.parametrize("mutate,message", [
    (lambda t: t.update(format="other"), "not a W4A16 dispatch table"),
    (lambda t: t.update(version=99), "version 99"),
    (lambda t: t.update(archs={}), "at least one"),
    (lambda t: t["archs"].update(ampere=t["archs"]["sm_90"]), "sm_<major><minor>"),
    (lambda t: t["archs"]["sm_90"].pop("source"), "needs a 'source'"),
    (lambda t: t["archs"]["sm_90"]["shapes"].append(dict(t["archs"]["sm_90"]["shapes"][0])), "twice"),
    (lambda t: t["archs"]["sm_90"]["shapes"][0].update(cublas_min_m=0), "positive integer or null"),
    (lambda t: t["archs"]["sm_90"]["shapes"][0].update(k=-64), "positive integers k and n"),
])
def test_bad_tables_are_refused_in_one_sentence(mutate, message):
    table = planted(sm_90=rows((1024, 1024, 2000)))
    mutate(table)
    with pytest.raises(QvggtError, match=message):
        dispatch.validate(table)


def test_unreadable_table_names_the_file(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text("{")
    with pytest.raises(QvggtError, match=r"t\.json is not JSON"):
        dispatch.load_table(bad)
    with pytest.raises(QvggtError, match="cannot read"):
        dispatch.load_table(tmp_path / "missing.json")


def test_header_command_writes_the_rendering(tmp_path):
    table_path = tmp_path / "t.json"
    table_path.write_text(json.dumps(planted(sm_87=rows((1024, 1024, 3000)))))
    dispatch.main(["--table", str(table_path), "--header", str(tmp_path / "h.h")])
    assert (tmp_path / "h.h").read_text() == dispatch.render_header(dispatch.load_table(table_path))


def test_linear_threshold_follows_the_table_per_device(monkeypatch):
    module = W4A16Linear(1024, 4096, 128)
    calls = []

    def capability(index):
        calls.append(index)
        return (9, 0) if index == 0 else (8, 7)

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    table = dispatch.load_table()
    assert module.threshold_for(torch.device("cuda", 0)) == dispatch.cublas_min_m(90, 1024, 4096, table)
    assert module.threshold_for(torch.device("cuda", 1)) == dispatch.cublas_min_m(87, 1024, 4096, table)
    assert module.threshold_for(torch.device("cuda", 0)) == dispatch.cublas_min_m(90, 1024, 4096, table)
    assert calls == [0, 1]  # looked up once per device
    assert W4A16Linear(1024, 4096, 128, cublas_min_m=None).threshold_for(torch.device("cuda", 0)) is None
    assert W4A16Linear(1024, 4096, 128, cublas_min_m=300).threshold_for(torch.device("cuda", 0)) == 300


@pytest.mark.parametrize("bad", [0, -5, "always", 1.5])
def test_linear_rejects_bad_thresholds(bad):
    with pytest.raises(QvggtError, match="cublas_min_m"):
        W4A16Linear(1024, 4096, 128, cublas_min_m=bad)
