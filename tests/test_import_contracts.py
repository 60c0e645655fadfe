"""The import graph keeps its shape: no cycle between packages, no import from a lower layer to a
higher one (contracts in .importlinter, also run by `make lint`)."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept(capsys):
    cli = pytest.importorskip("importlinter.cli", reason="import-linter is in the [dev] extra")
    code = cli.lint_imports(config_filename=str(ROOT / ".importlinter"), no_cache=True, no_logo=True)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 kept, 0 broken" in out
