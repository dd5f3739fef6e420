"""examples/ and reports/build.py run end to end (on the tiny fixtures instead of the bundled models)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ["api_tour", "gpt_vs_bert", "attention_walkthrough", "logit_lens"]


def load_script(path: Path):
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gallery(tiny_gpt_path, tiny_bert_path, tmp_path_factory):
    """``python reports/build.py -m GPT -m BERT --out DIR``: runs every example once, then the index."""
    out = tmp_path_factory.mktemp("gallery")
    index = load_script(ROOT / "reports" / "build.py").main(
        ["-m", tiny_gpt_path, "-m", tiny_bert_path, "--out", str(out)]
    )
    return out, index


def test_gallery_index_links_every_example(gallery):
    out, index = gallery
    html = index.read_text(encoding="utf-8")
    links = re.findall(r'<a href="([^"]+)">', html)
    assert links == [f"{n}.html" for n in ("gpt_vs_bert", "api_tour", "attention_walkthrough", "logit_lens")]
    assert all((out / link).exists() for link in links)
    assert "http" not in html


def test_gallery_pages_share_one_plotly_js(gallery):
    """Four pages, one copy of plotly.js beside them, referenced by its relative name (not inlined)."""
    out, index = gallery
    shared = list(out.glob("plotly-*.min.js"))
    assert len(shared) == 1 and shared[0].stat().st_size > 1_000_000
    for name in EXAMPLES:
        html = (out / f"{name}.html").read_text(encoding="utf-8")
        assert f'<script src="{shared[0].name}"' in html
        assert len(html) < shared[0].stat().st_size / 2  # the page itself holds no copy of it
    assert shared[0].name in index.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_page_has_figures_for_both_models(gallery, name):
    out, _ = gallery
    html = (out / f"{name}.html").read_text(encoding="utf-8")
    figures = html.count('class="probe-figure"')
    assert figures >= 4, name
    assert html.count("(causal)") >= 1 and html.count("(masked)") >= 1, name


def test_examples_accept_single_model_and_text(tiny_gpt_path, tmp_path, capsys):
    module = load_script(ROOT / "examples" / "logit_lens.py")
    path = module.main(["--model", tiny_gpt_path, "--text", "Paris is the capital of", "--out", str(tmp_path)])
    assert path == tmp_path / "logit_lens.html" and path.exists()
    printed = capsys.readouterr().out
    assert "final answer" in printed and "wrote" in printed


def test_readme_api_tour_runs_as_printed():
    """The README's Python tour, exactly as printed, on the bundled models."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tour = readme.split("## API tour", 1)[1]
    code = re.search(r"```python\n(.*?)```", tour, re.DOTALL).group(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert not scope["r"].logit_lens().empty and scope["steps"].step.nunique() == 10
