"""examples/tour.ipynb executed in a real Jupyter kernel (nbclient), as ``nbconvert --execute`` does: every
figure carries an HTML output (so classic notebooks and exported HTML show it, not only frontends that
draw plotly's mimetype), and nothing is printed on stderr (no "IProgress not found")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

TOUR = Path(__file__).resolve().parent.parent / "examples" / "tour.ipynb"


def test_the_tour_is_stored_without_outputs():
    nb = nbformat.read(TOUR, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_the_tour_runs_and_every_figure_shows_without_a_renderer_chosen(tmp_path, monkeypatch):
    monkeypatch.delenv("PLOTLY_RENDERER", raising=False)
    nb = nbformat.read(TOUR, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == 4
    for out in figures:
        html = out["data"].get("text/html", "")
        spec = out["data"]["application/vnd.plotly.v1+json"]
        assert "Plotly.newPlot" in html and spec["data"], json.dumps(out)[:300]
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    # offline: plotly.js inlined once, never fetched (plotly's MathJax tag, for LaTeX labels probe has none of, may stay)
    assert 'src="https://cdn.plot.ly' not in html and len(html) > 1_000_000
    noise = [o.get("text", "") for o in outputs if o.get("name") == "stderr"]
    assert not noise, noise
    assert any("<|endoftext|>" in str(o.get("data", {}).get("text/plain", "")) for o in outputs)


def test_dir_of_probe_shows_the_public_names_only():
    import probe
    import probe.viz  # noqa: F401

    names = dir(probe)
    assert set(probe.__all__) <= set(names)
    assert not {"sys", "types", "annotations", "TYPE_CHECKING", "warnings"} & set(names)
