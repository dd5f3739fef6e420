"""probe.report: one self-contained file, plotly.js once, no external URL, escaped, budgets, and as a
person sees it in headless Chromium (every figure drawn, no JavaScript error, no injected element)."""

from __future__ import annotations

import json
import re
import shutil

import pandas as pd
import pytest
from conftest import CHROMIUM, EXTERNAL, chromium_dom, console_lines, figure_specs, plotly_js, split_plotly

import probe
from probe.errors import InputError
from probe.pages import html as report_html
from probe.pages import page, report

TEXT = "The robot must [MASK] hurt the human."
HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_TEXT = f"The robot must [MASK] hurt the {HOSTILE} human </script><b>x"
FIGURES_PER_MODEL = 10  # tokens, predictions, lens, lens target, grid, heads, neuron view, entropy, norms, neurons


@pytest.fixture(scope="module")
def default_report(tiny_gpt, tiny_bert, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    report(TEXT, [tiny_gpt, tiny_bert], path)
    return path, None


@pytest.fixture(scope="module")
def hostile_report(tiny_gpt_path, tiny_bert, tmp_path_factory):
    """A model folder whose name and card are hostile, and a hostile text."""
    folder = tmp_path_factory.mktemp("hostile") / f"evil{HOSTILE}"
    shutil.copytree(tiny_gpt_path, folder)
    card = {"name": f"gpt{HOSTILE}", "notes": "</script><script>alert(3)</script>", "eval": {"gpt_ppl": 12.5}}
    (folder / "probe_card.json").write_text(json.dumps(card))
    path = tmp_path_factory.mktemp("hostile-report") / "hostile.html"
    report(HOSTILE_TEXT, [probe.load(str(folder)), tiny_bert], path)
    return path


def test_report_is_self_contained_with_one_plotly(default_report):
    path, _ = default_report
    doc = path.read_text(encoding="utf-8")
    js, rest = split_plotly(doc)  # exactly one verbatim copy of plotly.js
    assert "Plotly.newPlot" in rest and rest.count("<script") == 1 + len(figure_specs(doc)) + 1 + 1
    assert not EXTERNAL.search(rest)
    assert "http://" not in rest and "https://" not in rest
    assert len(figure_specs(doc)) == 2 + 2 * FIGURES_PER_MODEL  # comparison + per model
    for name in ("Comparison", "Model card", "Tokens", "Logit lens", "Attention: all heads", "Top MLP neurons"):
        assert name in rest
    assert rest.count('class="caption"') >= len(figure_specs(doc))  # every figure explained


def test_report_size_budget(default_report):
    """Size only: how long a report takes is measured in benchmarks/real_models.py, not asserted here."""
    path, _ = default_report
    assert path.stat().st_size <= 2_500_000


def test_report_inlines_plotly_s_cartesian_bundle_of_plotly_py_s_own_version(default_report):
    """The small official bundle, the very plotly.js version plotly.py writes figures for, drawing every
    trace type it claims to (the list probe checks pages against)."""
    from plotly.offline import get_plotlyjs

    from probe.pages.html import ASSETS, CARTESIAN, _version, plotly_bundle

    asset = (ASSETS / "plotly-cartesian.min.js").read_text(encoding="utf-8")
    assert _version(asset) == _version(get_plotlyjs()) is not None
    assert set(re.findall(r'moduleType:"trace",name:"([a-z0-9]+)"', asset)) == CARTESIAN
    name, js = plotly_bundle({"heatmap", "bar", "scatter"})
    assert js == asset and name == f"plotly-cartesian-{_version(asset)}.min.js" and len(js) < len(get_plotlyjs()) / 3
    doc = default_report[0].read_text(encoding="utf-8")
    assert doc.count(asset) == 1


def test_a_page_with_a_trace_outside_the_bundle_gets_the_full_plotly_js(tmp_path):
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    polar = go.Figure(go.Scatterpolar(r=[1, 2, 3], theta=[0, 90, 180]))
    doc = page([("Polar", "a trace the cartesian bundle lacks", polar)], tmp_path / "p.html").read_text(
        encoding="utf-8"
    )
    assert doc.count(get_plotlyjs()) == 1


def test_another_plotly_js_version_falls_back_to_the_full_bundle(tmp_path, monkeypatch):
    """A plotly.py that writes figures for another plotly.js gets its own full bundle, never a mismatched one."""
    from plotly.offline import get_plotlyjs

    from probe.pages import html

    (tmp_path / "plotly-cartesian.min.js").write_text("/**\n* plotly.js (cartesian - minified) v0.0.1\n*/", "utf-8")
    monkeypatch.setattr(html, "ASSETS", tmp_path)
    html._cartesian_bundle.cache_clear()
    try:
        assert html.plotly_bundle({"heatmap"})[1] == get_plotlyjs()
    finally:
        html._cartesian_bundle.cache_clear()


def test_hostile_text_tokens_folder_and_card_stay_text(hostile_report):
    doc = hostile_report.read_text(encoding="utf-8")
    _, rest = split_plotly(doc)
    assert "<img" not in rest.lower()
    assert "<b>x" not in rest and "</script><b>" not in rest and "<script>alert" not in rest
    n_specs = len(figure_specs(doc))
    assert rest.count("<script") == n_specs + 3  # nothing injected: handler, figures, renderer (+ plotly's)
    assert "&lt;img src=x onerror=alert(1)&gt;" in rest  # shown as text in the page
    for spec in figure_specs(doc):  # inside the JSON, "<" never appears raw either
        assert "<img" not in json.dumps(spec["data"]).replace("\\u003c", "")


def test_report_checks_its_path_first(tiny_gpt, tmp_path):
    with pytest.raises(InputError, match="directory"):
        report(TEXT, [tiny_gpt], tmp_path)
    with pytest.raises(InputError, match=r"\.html"):
        report(TEXT, [tiny_gpt], tmp_path / "x.txt")
    with pytest.raises(InputError, match="does not exist"):
        report(TEXT, [tiny_gpt], tmp_path / "missing" / "r.html")


def test_masked_model_needs_a_mask(tiny_bert, tmp_path):
    with pytest.raises(InputError, match=r"\[MASK\]"):
        report("The robot must not hurt the human.", [tiny_bert], tmp_path / "r.html")


def test_write_is_atomic(tiny_gpt, tmp_path, monkeypatch):
    path = tmp_path / "r.html"
    path.write_text("previous report")

    def broken(*args, **kwargs):  # the rename fails after the temporary file was written
        raise RuntimeError("disk full")

    original = report_html.os.replace
    monkeypatch.setattr(report_html.os, "replace", broken)
    with pytest.raises(RuntimeError):
        report(TEXT.replace("[MASK]", "not"), [tiny_gpt], path)
    monkeypatch.setattr(report_html.os, "replace", original)
    assert path.read_text() == "previous report"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_single_causal_model_report_and_encoder(tiny_gpt, minilm, tmp_path):
    path = report("The robot must not hurt the human.", [tiny_gpt, minilm], tmp_path / "r.html")
    doc = path.read_text(encoding="utf-8")
    assert "Left out of the comparison" in doc  # the encoder has no head to compare
    assert len(figure_specs(doc)) == 2 + FIGURES_PER_MODEL + FIGURES_PER_MODEL - 3  # encoder: no predictions / lens


def test_page_writes_figures_and_frames(tiny_gpt, tmp_path):
    run = tiny_gpt.run("The robot must not hurt the human.")
    frame = pd.DataFrame({"word": [HOSTILE], "p": [0.5]})
    path = page(
        [("Attention", "layer 0 head 1", run.plot.attention(0, 1)), ("Words", "a frame", frame)], tmp_path / "p.html"
    )
    doc = path.read_text(encoding="utf-8")
    assert len(figure_specs(doc)) == 1 and "<td>&lt;img" in doc and "<img" not in split_plotly(doc)[1]


# -- in a browser -------------------------------------------------------------------------------
CLICK_SELECTORS = """<script>
setTimeout(function () {
  var out = [];
  var gds = Array.prototype.filter.call(document.querySelectorAll('.js-plotly-plot'), function (gd) {
    return gd.layout.updatemenus && gd.layout.updatemenus.length; });
  var p = Promise.resolve();
  gds.forEach(function (gd) {
    var button = gd.layout.updatemenus[0].buttons[1], step = gd.layout.sliders[1].steps[2];
    p = p.then(function () { return Plotly.update(gd, button.args[0], button.args[1]); })
         .then(function () { return Plotly.update(gd, step.args[0], step.args[1]); })
         .then(function () { out.push(gd.layout.title.text + '|' + gd.layout.sliders.map(function (s) { return s.visible; })); });
  });
  p.then(function () { var d = document.createElement('div'); d.id = 'clicked'; d.textContent = out.join(';'); document.body.appendChild(d); })
   .catch(function (e) { window.dispatchEvent(new ErrorEvent('error', {message: 'clicking: ' + e})); });
}, 200);
</script></body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_renders_in_chromium_with_working_selectors(default_report, tmp_path):
    path, _ = default_report
    clicked = tmp_path / "clicked.html"
    clicked.write_text(path.read_text(encoding="utf-8").replace("</body>", CLICK_SELECTORS), encoding="utf-8")
    dom, log = chromium_dom(clicked, tmp_path)
    n = len(figure_specs(path.read_text(encoding="utf-8")))
    assert dom.count('class="plot-container plotly"') == n, "every figure is drawn"
    assert dom.count('class="main-svg"') >= 2 * n
    assert not console_lines(log), console_lines(log)
    assert re.search(r'<div id="probe-errors" role="alert"></div>', dom)  # the page's own error box is empty
    assert not EXTERNAL.search(dom.replace(plotly_js(), ""))
    # the head view's dropdown (layer 1) and slider (head 2) switch the head in every head view
    assert re.search(r'<div id="clicked">[^<]*layer 1 head 2\|false,true', dom), dom[-2000:]


TITLE_CHECK = """<script>
setTimeout(function () {
  function box(e) { return e ? e.getBoundingClientRect() : null; }
  function hit(a, b) { return a && b && a.width > 0 && b.width > 0 &&
    !(a.right <= b.left || b.right <= a.left || a.bottom <= b.top || b.bottom <= a.top); }
  var out = [];
  document.querySelectorAll('.js-plotly-plot').forEach(function (gd) {
    var t = gd.querySelector('.gtitle'), rt = box(t), g = box(gd), bad = [];
    if (hit(box(gd.querySelector('.modebar')), rt)) bad.push('toolbar');
    gd.querySelectorAll('.legend, .updatemenu-container, .slider-container').forEach(function (e) {
      if (hit(box(e), rt)) bad.push(e.getAttribute('class')); });
    if (rt && rt.right > g.right + 1) bad.push('cut');
    if (bad.length) out.push((t ? t.textContent : '') + ': ' + bad.join(' '));
  });
  var d = document.createElement('div'); d.id = 'titles'; d.textContent = out.join(';') || 'ok';
  document.body.appendChild(d);
}, 300);
</script></body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_titles_are_whole_and_clear_of_the_toolbar_in_chromium(tiny_gpt, tiny_bert, tmp_path):
    """A short text makes narrow figures, where long titles used to run under plotly's toolbar or off
    the figure ("(integrated_g" was all that showed)."""
    import copy

    named = []
    for model, name in ((tiny_gpt, "smollm2-135m-instruct"), (tiny_bert, "all-minilm-l6-v2-mlm")):
        named.append(copy.copy(model))
        named[-1].name = name  # real models' names are longer than the tiny ones'
    path = report("The robot must [MASK] hurt", named, tmp_path / "short.html", sections=["attribution"])
    checked = tmp_path / "checked.html"
    checked.write_text(path.read_text(encoding="utf-8").replace("</body>", TITLE_CHECK), encoding="utf-8")
    dom, _ = chromium_dom(checked, tmp_path)
    assert '<div id="titles">ok</div>' in dom, re.search(r'<div id="titles">(.*?)</div>', dom, re.S)


def test_long_titles_wrap_to_the_figure_and_grow_its_margin():
    import plotly.graph_objects as go

    from probe.viz._style import fit_title

    long = "smollm2-135m: residual-stream norm (colours clipped at 859: 1 sink position(s) above)"
    fig = fit_title(go.Figure(layout={"title": {"text": long}, "width": 420, "margin": {"t": 60}}))
    lines = fig.layout.title.text.split("<br>")
    assert len(lines) == 2 and " ".join(lines) == long and fig.layout.margin.t == 80
    assert fit_title(go.Figure(layout={"title": {"text": "short"}, "width": 420})).layout.title.text == "short"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_hostile_report_in_chromium_injects_nothing(hostile_report, tmp_path):
    dom, log = chromium_dom(hostile_report, tmp_path)
    n = len(figure_specs(hostile_report.read_text(encoding="utf-8")))
    assert dom.count('class="plot-container plotly"') == n
    assert "<img" not in dom.lower()  # no element was made from the token, text, folder or card
    assert "<b>x" not in dom
    assert not console_lines(log), console_lines(log)


def _bundled_installed() -> bool:
    from probe.core.loading import BUNDLED, bundled_path

    return all((bundled_path(name) / "config.json").exists() for name in BUNDLED)


@pytest.mark.skipif(not _bundled_installed(), reason="the bundled tiny-gpt / tiny-bert are not installed yet")
def test_default_report_on_bundled_models_meets_budgets(tmp_path):
    """The talk's sentence on the bundled fallback pair, tiny-gpt and tiny-bert: <= 2.5 MB (time: see benchmarks/)."""
    path = report(models=["tiny-gpt", "tiny-bert"], path=tmp_path / "report.html")
    assert path.stat().st_size <= 2_500_000
    doc = path.read_text(encoding="utf-8")
    assert len(figure_specs(doc)) == 2 + 2 * FIGURES_PER_MODEL and "tiny-gpt" in doc and "tiny-bert" in doc


def test_report_opens_with_what_the_models_say(tiny_gpt, tiny_bert, tmp_path):
    from markupsafe import escape

    from probe.pages.build import answer_text

    text = "The robot must [MASK] hurt the human."
    page = probe.report(text, [tiny_gpt, tiny_bert], tmp_path / "r.html", k=5).read_text(encoding="utf-8")
    frame = probe.compare(text, [tiny_gpt, tiny_bert], k=5)
    answer = answer_text(frame)
    top = {m: g.sort_values("rank").iloc[0] for m, g in frame.groupby("method")}
    assert f"guesses '{top['next_token'].word}'" in answer and f"puts '{top['rescored'].word}' first" in answer
    assert f"fills the blank with '{top['masked'].word}'" in answer
    assert str(escape(answer)) in page  # as the template escapes it
    assert page.index('id="answer"') < page.index("<section")  # it opens the page


def test_long_tables_fold_instead_of_scrolling_inside_themselves(tmp_path):
    frame = pd.DataFrame({"field": [f"f{i}" for i in range(40)], "value": range(40)})
    doc = page([("Card", "forty rows", frame)], tmp_path / "t.html").read_text(encoding="utf-8")
    body = doc.split("<main", 1)[1]
    open_part, folded = body.split('<details class="more">', 1)
    assert open_part.count("<td>f") == 25 and "<summary>15 more rows</summary>" in folded
    assert folded.count("<td>f") == 15 and "<td>f39</td>" in folded
    assert "max-height" not in doc.split("<style>", 1)[1].split("</style>", 1)[0]


@pytest.mark.skipif(not _bundled_installed(), reason="the bundled tiny-gpt / tiny-bert are not installed yet")
def test_the_model_card_opens_with_its_headline_fields(tmp_path):
    """The bundled tiny-gpt's card has 34 rows (training, evaluation, ...): 12 open, the rest folded."""
    from probe.cards import card
    from probe.pages.build import HEADLINE_FIELDS, _card_rows

    gpt = probe.load("tiny-gpt")
    rows = _card_rows(card(gpt))
    doc = report("The robot must", [gpt], tmp_path / "r.html", k=2).read_text(encoding="utf-8")
    assert len(rows) > HEADLINE_FIELDS
    assert f"<summary>{len(rows) - HEADLINE_FIELDS} more rows</summary>" in doc
    assert doc.count("<td>name</td>") == 1 and "<td>layers</td>" in doc.split('<details class="more">')[0]
