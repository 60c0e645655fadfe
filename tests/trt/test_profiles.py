from pathlib import Path

import pytest
import yaml

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.trt.profiles import GIB, load_profile, parse_profile

ENGINES = Path(__file__).resolve().parents[2] / "engines"
SHIPPED = sorted(ENGINES.glob("*.yaml"))


def test_shipped_profiles_exist():
    names = {p.stem for p in SHIPPED}
    assert {"orin-nano-8gb", "orin-nx-16gb", "agx-orin-64gb", "desktop-24gb"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_profiles_parse(path):
    profile = load_profile(path)
    assert profile.name == path.stem
    assert profile.frames.min <= profile.frames.opt <= profile.frames.max
    assert profile.device.budget_bytes > 0
    if profile.device.unified_memory:  # Jetson: sm_87, OS memory subtracted
        assert profile.device.compute_capability == (8, 7)
        assert profile.device.budget_bytes < (profile.device.memory_gib - profile.device.os_reserved_gib) * GIB


def test_parse_values(profile_doc):
    p = parse_profile(profile_doc)
    assert p.builder.workspace_bytes == 256 << 20
    assert p.builder.tactic_shared_memory_kib == 48
    assert p.split == "auto"
    assert p.timing_cache_path("out/e.engine") == Path("out/test.timing")
    profile_doc["builder"]["timing_cache"] = "/abs/cache.timing"
    assert parse_profile(profile_doc).timing_cache_path("out/e.engine") == Path("/abs/cache.timing")


def test_split_values(profile_doc):
    for value, want in ((True, True), (False, False), ("auto", "auto"), ("AUTO", "auto")):
        profile_doc["split"] = value
        assert parse_profile(profile_doc).split == want


def test_unified_memory_subtracts_os(profile_doc):
    unified = parse_profile(profile_doc).device.budget_bytes
    profile_doc["device"]["unified_memory"] = False
    assert parse_profile(profile_doc).device.budget_bytes == unified + 1 * GIB


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["builder"].update(worksapce_mib=1), "builder.worksapce_mib: unknown key (did you mean 'workspace_mib'?)"),
    (lambda d: d.update(extra=1), "extra: unknown key"),
    (lambda d: d["frames"].update(min=3, opt=2), "need min <= opt <= max"),
    (lambda d: d["frames"].update(max=0), "frames.max: must be >= 1"),
    (lambda d: d["frames"].pop("opt"), "frames.opt: required"),
    (lambda d: d.pop("frames"), "missing section 'frames'"),
    (lambda d: d["model"].update(height=350.5), "model.height: must be an integer"),
    (lambda d: d["model"].update(width=500), "model.width: must be a multiple of the patch size 14"),
    (lambda d: d["model"].update(preset="vggt-2b"), "model.preset: unknown preset 'vggt-2b'"),
    (lambda d: d["model"].update(attention="flash"), "model.attention: must be one of fused, explicit"),
    (lambda d: d["builder"].update(optimization_level=6), "builder.optimization_level: must be <= 5"),
    (lambda d: d["builder"].update(tactic_shared_memory_kib=1 << 20), "builder.tactic_shared_memory_kib: must be <="),
    (lambda d: d["builder"].update(workspace_mib="1G"), "builder.workspace_mib: must be a number"),
    (lambda d: d["builder"].update(version_compatible="yes"), "builder.version_compatible: must be true or false"),
    (lambda d: d.update(split="maybe"), "split: must be true, false or auto"),
    (lambda d: d.update(split=1), "split: must be true, false or auto"),
    (lambda d: d["device"].update(memory_gib=1.0), "leaves nothing after"),
    (lambda d: d["device"].update(unified_memory="yes"), "device.unified_memory: must be true or false"),
    (lambda d: d["device"].update(compute_capability=[8]), "device.compute_capability: must be [major, minor]"),
    (lambda d: d.update(name=""), "name: required"),
])
def test_parse_errors(profile_doc, edit, message):
    edit(profile_doc)
    with pytest.raises(QvggtError) as info:
        parse_profile(profile_doc, source="p.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("p.yaml")


def test_load_errors(tmp_path):
    with pytest.raises(QvggtError, match="profile not found"):
        load_profile(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(QvggtError, match="not valid YAML"):
        load_profile(bad)
    bad.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(QvggtError, match="must be a YAML mapping"):
        load_profile(bad)
