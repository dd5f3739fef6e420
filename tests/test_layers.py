"""The package's layers (pyproject.toml's import contracts): checked by `lint-imports` in CI, and here,
so that README's test command alone catches an upward import or an import cycle."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_are_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    done = subprocess.run([lint, "--no-cache"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


def test_core_imports_nothing_above_it_at_import_time():
    """Loading a model and running it touches no analysis, figure or page module (the accessors are lazy)."""
    code = (
        "import sys, probe.core.model, probe.core.run, probe.core.capture, probe.core.layout; "
        "above = sorted(m for m in sys.modules if m.startswith(('probe.analysis', 'probe.viz', 'probe.pages', "
        "'probe.app', 'probe.cli', 'probe.cards', 'probe.zoo'))); assert not above, above"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
