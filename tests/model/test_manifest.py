"""``build_model("vggt-1b")`` has exactly the official VGGT-1B state dict, so the official
checkpoint loads with strict=True."""
import json
from pathlib import Path

from qvggt_deploy.model import build_model

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "vggt1b_state_dict.json"


def test_vggt1b_state_dict_matches_official_manifest():
    manifest = json.loads(FIXTURE.read_text())
    expected = manifest["tensors"]
    model = build_model("vggt-1b", device="meta")
    got = {name: [list(t.shape), str(t.dtype).replace("torch.", "")] for name, t in model.state_dict().items()}
    assert len(expected) == 1797
    assert list(got) == list(expected)  # same names, same order
    mismatched = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    assert not mismatched, list(mismatched.items())[:5]
    assert sum(t.numel() for t in model.state_dict().values()) == manifest["total_params"]


def test_fixture_matches_shared_reference(shared):
    reference = json.loads((shared / "reference" / "vggt1b_state_dict.json").read_text())["tensors"]
    assert json.loads(FIXTURE.read_text())["tensors"] == reference
