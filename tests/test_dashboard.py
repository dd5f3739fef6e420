"""probe.dashboard: the report's figures, cached and locked; the HTTP callbacks; the page in headless Chromium.

Servers bind 127.0.0.1 on a free port and are stopped by the fixture; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("dash")

from typer.testing import CliRunner  # noqa: E402

from probe.app import DashboardError, Workbench, start  # noqa: E402
from probe.cli import app as cli_app  # noqa: E402
from probe.errors import InputError  # noqa: E402

TEXT = "The robot must [MASK] hurt the human."
DASHBOARD = sys.modules["probe.app"]  # the package behind the function probe.dashboard


@pytest.fixture(scope="module")
def bench(tiny_gpt, tiny_bert):
    return Workbench([tiny_gpt, tiny_bert])


@pytest.fixture(scope="module")
def server(tiny_gpt, tiny_bert):
    running = start([tiny_gpt, tiny_bert], host="127.0.0.1", port=0)
    yield running
    running.stop()


def figure_json(fig) -> dict:
    return json.loads(fig.to_json())


# -- the work, without a browser ----------------------------------------------------------------
def test_update_shows_the_reports_figures(bench, tiny_gpt, tiny_bert):
    from probe.analysis.reading import read_text
    from probe.pages.build import model_hooks

    figs = bench.update([tiny_gpt.name, tiny_bert.name], TEXT, layer=1, head=2)
    assert set(figs) == {
        "comparison",
        "compare_layers",
        "tokens",
        "predictions",
        "logit_lens",
        "lens_target",
        "lens_kl",
        "attention",
        "attention_neurons",
        "attention_entropy",
        "residual_norms",
        "neurons",
    }
    from probe.analysis.compare import compare

    run = read_text(tiny_gpt, TEXT).run(model_hooks(tiny_gpt))
    for view in ("tokens", "logit_lens", "attention_entropy", "residual_norms"):
        assert figure_json(figs[view]) == figure_json(getattr(run.plot, view)()), view
    assert figure_json(figs["attention"]) == figure_json(run.plot.attention(1, 2))
    assert figure_json(figs["attention_neurons"]) == figure_json(run.plot.attention_neurons(1, 2))
    assert figure_json(figs["predictions"]) == figure_json(run.plot.predictions(k=10))
    frame = compare(TEXT, [tiny_gpt, tiny_bert], k=10, rescore=False)
    assert figure_json(figs["comparison"]) == figure_json(frame.plot())
    assert figure_json(figs["compare_layers"]) == figure_json(frame.plot_layers())
    rescored = bench.update([tiny_gpt.name, tiny_bert.name], TEXT, rescore=True)["comparison"]
    full = compare(TEXT, [tiny_gpt, tiny_bert], k=10)  # what the report shows
    assert figure_json(rescored) == figure_json(full.plot()) and len(rescored.data) == len(frame.plot().data) + 1


def test_runs_are_cached_and_a_head_change_redraws_one_figure(tiny_gpt, tiny_bert, monkeypatch):
    bench = Workbench([tiny_gpt, tiny_bert])
    calls = []
    original = type(tiny_gpt).run

    def counting(self, *args, **kwargs):
        calls.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(tiny_gpt), "run", counting)
    bench.update([tiny_gpt.name], "The robot must not hurt", 0, 0)
    assert calls == [tiny_gpt.name]  # one forward pass serves every view
    made = bench.stats()["figures_made"]
    bench.update([tiny_gpt.name], "The robot must not hurt", 0, 1)
    assert calls == [tiny_gpt.name]
    assert bench.stats()["figures_made"] == made + 2  # only the head's figures were drawn: pattern, neuron view
    bench.update([tiny_gpt.name], "The robot must not hurt", 0, 0)
    assert bench.stats()["figures_made"] == made + 2  # and switching back is free
    calls.clear()
    bench.update([tiny_gpt.name, tiny_bert.name], "The robot must [MASK] hurt", 0, 0)
    assert sorted(calls) == sorted([tiny_gpt.name, tiny_bert.name])  # the comparison reads the views' runs


def test_focus_moves_predictions_and_outlines_the_token(bench, tiny_gpt):
    figs = bench.update([tiny_gpt.name], "The robot must not hurt the human", 0, 0, focus=2)
    assert "(position 2)" in figs["predictions"].layout.title.text
    assert "position 2" in figs["lens_target"].layout.title.text
    for view in ("attention", "logit_lens", "residual_norms"):
        shapes = figs[view].layout.shapes
        assert len(shapes) == 1 and {shapes[0].x0, shapes[0].y0} & {1.5}, view
    out_of_range = bench.update([tiny_gpt.name], "The robot must not hurt the human", 0, 0, focus=999)
    assert not out_of_range["attention"].layout.shapes  # a stale focus from a longer text is dropped


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "type a sentence"),
        ("   ", "type a sentence"),
        (None, "type a sentence"),
        ("word " * 500, "at most 2,000"),
        ("The [MASK] robot must [MASK] hurt.", "2 [MASK] markers"),
        ("The robot must not hurt the human.", "has no [MASK]"),
    ],
)
def test_bad_text_is_one_clear_line(bench, tiny_bert, text, message):
    with pytest.raises(InputError, match=re.escape(message)):
        bench.update([tiny_bert.name], text, 0, 0)


def test_text_is_capped_at_the_context_and_the_limit(tiny_gpt):
    bench = Workbench([tiny_gpt], max_tokens=8)
    with pytest.raises(InputError, match=r"more than 8 \(the dashboard's limit"):
        bench.run(tiny_gpt.name, "The robot must not hurt the human, nor the cat, nor the dog.")
    wide = Workbench([tiny_gpt], max_tokens=10_000)
    long_text = " ".join(["robot"] * (tiny_gpt.n_ctx + 5))
    with pytest.raises(InputError, match=rf"more than {tiny_gpt.n_ctx} \({re.escape(tiny_gpt.name)}'s context\)"):
        wide.run(tiny_gpt.name, long_text)


@pytest.mark.parametrize("name", ["/etc", "../tiny-gpt", "gpt2", "bert-base-uncased", 3, ["tiny-gpt"], {"x": 1}])
def test_only_offered_models_load(bench, name):
    with pytest.raises(InputError, match="not offered here"):
        bench.update([name], TEXT, 0, 0)
    assert str(name) not in bench._loaded


def test_an_encoder_has_no_predictions_but_its_other_views(tiny_gpt, minilm):
    bench = Workbench([tiny_gpt, minilm])
    figs = bench.update([tiny_gpt.name, minilm.name], "The robot must [MASK] hurt the human.", detail=minilm.name)
    assert "predictions" not in figs and "logit_lens" not in figs
    assert figs["attention"].layout.title.text.startswith(minilm.name)
    assert len(figs["compare_layers"].data) == 1  # the encoder is left out of the comparison
    with pytest.raises(InputError, match="no predictions"):
        bench.model_view(minilm.name, TEXT, "predictions")
    with pytest.raises(InputError, match="pick a model first"):
        bench.update([None], TEXT)


@pytest.mark.parametrize(
    ("view", "point", "position"),
    [
        ("tokens", {"customdata": "position 13<br>token ' the'<br>id 5"}, 13),
        ("attention", {"x": "2 ·the", "y": "7 ·robot"}, 7),
        ("logit_lens", {"x": 4, "y": 2}, 4),
        ("residual_norms", {"x": 0, "y": 1}, 0),
        ("logit_lens", {"x": "4"}, None),
        ("tokens", {}, None),
    ],
)
def test_a_click_names_a_token(view, point, position):
    from probe.app._app import clicked_position

    assert clicked_position(view, {"points": [point]}) == position
    assert clicked_position(view, None) is None


def test_offered_models_are_the_given_and_the_installed(tiny_gpt):
    from probe.cards import models

    bench = Workbench([tiny_gpt])
    frame = models()
    installed = frame[frame["installed"].astype(bool)]["name"].tolist()
    assert bench.offered == [tiny_gpt.name] + [n for n in installed if n != tiny_gpt.name]
    assert not set(frame[~frame["installed"].astype(bool)]["name"]) & set(bench.offered)


def test_models_given_as_paths_keep_their_path_as_key(tiny_gpt_path, tiny_bert_path):
    bench = Workbench([tiny_gpt_path, tiny_bert_path])
    assert bench.offered[:2] == [tiny_gpt_path, tiny_bert_path]
    figs = bench.update([tiny_bert_path, tiny_gpt_path], TEXT, 0, 0)
    assert figs["predictions"].layout.title.text.startswith(Path(tiny_bert_path).name)
    assert len(figs["compare_layers"].data) == 2


def test_one_model_never_runs_twice_at_once(tiny_gpt, tiny_bert, monkeypatch):
    bench = Workbench([tiny_gpt, tiny_bert])
    active: dict[str, int] = {}
    peak: dict[str, int] = {}
    guard = threading.Lock()
    original = type(tiny_gpt).run

    def watched(self, *args, **kwargs):
        with guard:
            active[self.name] = active.get(self.name, 0) + 1
            peak[self.name] = max(peak.get(self.name, 0), active[self.name])
        time.sleep(0.01)  # widen the window in which a second pass could start
        try:
            return original(self, *args, **kwargs)
        finally:
            with guard:
                active[self.name] -= 1

    monkeypatch.setattr(type(tiny_gpt), "run", watched)
    jobs = [
        (m.name, f"The robot number {i} must [MASK] hurt the human.") for i in range(8) for m in (tiny_gpt, tiny_bert)
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        runs = list(pool.map(lambda job: bench.run(*job), jobs))
    assert peak == {tiny_gpt.name: 1, tiny_bert.name: 1}
    for (name, text), run in zip(jobs, runs):
        number = re.search(r"number (\d+)", text).group(1)
        assert run.model.name == name and number in "".join(run.token_strs(0))


def test_save_as_report_writes_the_same_report(bench, tiny_gpt, tiny_bert, tmp_path):
    path = bench.report([tiny_gpt.name, tiny_bert.name], TEXT, tmp_path / "r.html")
    doc = path.read_text(encoding="utf-8")
    assert doc.count('class="probe-figure"') == 2 + 2 * 10  # as tests/test_report.py counts them
    with pytest.raises(InputError, match="not offered"):
        bench.report(["/etc/passwd"], TEXT, tmp_path / "x.html")


def _why() -> dict:
    from probe.app._core import why_functions

    return why_functions()


@pytest.mark.skipif("attribution" not in _why(), reason="probe.attribute is not in this install yet")
def test_attribution_view_is_probe_attribute_drawn(bench, tiny_gpt):
    attribute, draw = _why()["attribution"]
    fig = bench.attribution(tiny_gpt.name, TEXT)
    expected = draw(attribute(tiny_gpt, "The robot must"))  # a causal model explains the words before [MASK]
    assert figure_json(fig) == figure_json(expected)
    with pytest.raises(InputError, match="not offered"):
        bench.attribution("/etc", TEXT)


def test_generation_view_is_probe_attribute_generation_drawn(bench, tiny_gpt, tiny_bert):
    from probe.app._core import GENERATE

    attribute_generation, draw = _why()["generation"]
    fig = bench.generation(tiny_gpt.name, TEXT)
    expected = draw(attribute_generation(tiny_gpt, "The robot must", max_new_tokens=GENERATE))
    assert figure_json(fig) == figure_json(expected) and len(fig.data[0].z) == GENERATE
    with pytest.raises(InputError, match="generates nothing"):
        bench.generation(tiny_bert.name, TEXT)


def test_lens_kl_view_is_the_focused_tokens_kl(bench, tiny_gpt, tiny_bert):
    """Per layer, KL(output || what the layer reads) at the focused token: the run's own numbers, drawn."""
    from probe.analysis.reading import read_text
    from probe.pages.build import model_hooks

    for model in (tiny_gpt, tiny_bert):
        run = read_text(model, TEXT).run(model_hooks(model))
        for focus in (None, 1):
            fig = bench.model_view(model.name, TEXT, "lens_kl", focus)
            assert figure_json(fig) == figure_json(run.plot.lens_kl(position=focus))
            assert [t.name for t in fig.data] == ["logit lens"]  # no lens ships for the fixtures' weights
        assert f"(position {run.position_of(None)})" in bench.model_view(model.name, TEXT, "lens_kl").layout.title.text


@pytest.mark.skipif("patching" not in _why(), reason="probe.patching is not in this install yet")
def test_patching_view_patches_the_clean_into_the_corrupted(bench, tiny_gpt, tiny_bert):
    fig = bench.patching(tiny_gpt.name, "The robot must not hurt the", "The human must not hurt the")
    assert fig.data and fig.layout.title.text
    fig = bench.patching(tiny_bert.name, TEXT, "The human must [MASK] hurt the robot.")
    assert fig.data
    with pytest.raises(InputError, match="type a corrupted sentence"):
        bench.patching(tiny_gpt.name, TEXT, "")
    with pytest.raises(InputError, match=r"reads the same text from both.*only the words before \[MASK\]"):
        bench.patching(tiny_gpt.name, TEXT, "The robot must [MASK] help the human.")


def test_dla_view_splits_the_top_answer_over_the_runner_up(bench, tiny_gpt):
    import probe

    fig = bench.dla(tiny_gpt.name, TEXT)
    logits = tiny_gpt.run("The robot must", hooks=["logits"]).logits_at()
    target, contrast = (int(i) for i in logits.topk(2).indices)
    expected = probe.viz.dla(probe.dla(tiny_gpt, "The robot must", target, contrast=contrast, unit="head"))
    assert figure_json(fig) == figure_json(expected)
    with pytest.raises(InputError, match="opens the text"):
        bench.dla(tiny_gpt.name, "[MASK] robot must")


def test_circuit_view_draws_the_circuit_of_causal_and_masked_models(bench, tiny_gpt, tiny_bert):
    fig = bench.circuit(tiny_gpt.name, "The robot must not hurt the", "The human must not hurt the")
    assert "faithfulness" in fig.layout.title.text and len(fig.data) == 20 + 1
    fig = bench.circuit(tiny_bert.name, TEXT, "The human must [MASK] hurt the robot.")  # post-LN
    assert "faithfulness" in fig.layout.title.text and len(fig.data) == 20 + 1
    with pytest.raises(InputError, match="type a corrupted sentence"):
        bench.circuit(tiny_gpt.name, TEXT, " ")


@pytest.mark.skipif(bool(_why()), reason="this install has the why views")
def test_without_interventions_the_page_has_no_why_section(server):
    assert b'id="why"' not in get(server.url + "_dash-layout")[1]


@pytest.mark.skipif(not _why(), reason="probe.attribute / probe.patching are not in this install yet")
def test_with_interventions_the_page_has_a_why_section(server, tiny_gpt):
    layout = get(server.url + "_dash-layout")[1].decode()
    for view in _why():
        assert f'"fig-{view}"' in layout
    if "attribution" in _why():
        answer = callback(server, "fig-attribution.figure", {"text.value": TEXT, "detail.value": tiny_gpt.name})
        assert answer["fig-attribution"]["figure"]["data"] and answer["attribution-message"]["children"] == ""


def test_importing_the_dashboard_stays_light_and_probe_dashboard_is_the_function():
    code = (
        "import sys, probe; import probe.app; f = probe.dashboard; "
        "assert callable(f) and f.__name__ == 'dashboard', f; "
        "heavy = [m for m in ('dash', 'torch', 'plotly', 'flask') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr


def test_missing_dash_is_a_clear_error(monkeypatch, tiny_gpt):
    monkeypatch.setitem(sys.modules, "dash", None)
    with pytest.raises(DashboardError, match=re.escape("pip install 'probe[dashboard]'")):
        start([tiny_gpt])


# -- the command line ------------------------------------------------------------------------------
def test_cli_help_and_bad_port():
    runner = CliRunner()
    out = runner.invoke(cli_app, ["dashboard", "--help"])
    assert out.exit_code == 0 and "--host" in out.output and "--port" in out.output
    out = runner.invoke(cli_app, ["dashboard", "--port", "70000"])
    assert out.exit_code == 2
    assert out.output.strip().splitlines()[-1].startswith("error: --port must be 0..65535")


def test_cli_unknown_model_is_one_line(tmp_path):
    out = CliRunner().invoke(cli_app, ["dashboard", "-m", str(tmp_path / "missing"), "--port", "0"])
    assert out.exit_code == 2
    lines = out.output.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in out.output


def test_cli_serves_localhost_and_warns_for_another_host(tiny_gpt_path, monkeypatch):
    seen = []

    class Fake:
        url = "http://fake/"

        def serve_forever(self):
            raise KeyboardInterrupt  # Ctrl-C at once

        class _server:  # noqa: N801
            @staticmethod
            def server_close():
                seen.append("closed")

    def fake_start(bench, host, port, **kwargs):
        seen.append((host, port, bench.selected))
        return Fake()

    monkeypatch.setattr(DASHBOARD, "start", fake_start)
    runner = CliRunner()
    out = runner.invoke(cli_app, ["dashboard", "-m", tiny_gpt_path])
    assert out.exit_code == 0, out.output
    assert seen[0] == ("127.0.0.1", 8050, [tiny_gpt_path]) and "warning" not in out.output
    assert "probe dashboard on http://fake/" in out.output
    out = runner.invoke(cli_app, ["dashboard", "-m", tiny_gpt_path, "--host", "0.0.0.0", "--port", "9000"])
    assert out.exit_code == 0 and seen[-1] == "closed"
    assert "warning: serving on 0.0.0.0" in out.output


def test_port_in_use_is_a_clear_error(tiny_gpt):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DashboardError, match=rf"cannot serve on 127.0.0.1:{port}.*--port"):
            start([tiny_gpt], port=port)
        out = CliRunner().invoke(cli_app, ["dashboard", "-m", "no-such-model", "--port", str(port)])
        assert out.exit_code == 2 and "cannot serve on" in out.output  # checked before any model loads


# -- over HTTP ---------------------------------------------------------------------------------------
def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def callback(server, output: str, values: dict) -> dict:
    """POST one Dash callback as the page would: ``values`` maps "id.property" to a value."""
    deps = getattr(server, "_deps", None)
    if deps is None:
        deps = server._deps = json.loads(get(server.url + "_dash-dependencies")[1])
    dep = next(d for d in deps if output in d["output"])
    parts = re.findall(r"([\w-]+)\.(\w+)", dep["output"])
    outputs = [{"id": i, "property": p} for i, p in parts]

    def items(kind):
        return [{**x, "value": values.get(f"{x['id']}.{x['property']}")} for x in dep[kind]]

    payload = {
        "output": dep["output"],
        "outputs": outputs if len(outputs) > 1 else outputs[0],
        "inputs": items("inputs"),
        "state": items("state"),
        "changedPropIds": [f"{x['id']}.{x['property']}" for x in dep["inputs"][:1]],
    }
    request = urllib.request.Request(
        server.url + "_dash-update-component",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as r:
        return json.loads(r.read())["response"]


def read_tokens(fig: dict) -> str:
    """The text a residual-norm figure's token axis spells (labels show spaces as ·)."""
    return "".join(fig["layout"]["xaxis"]["ticktext"]).replace("·", " ")


def test_page_is_local_and_offline(server):
    assert server.url.startswith("http://127.0.0.1:")
    status, body = get(server.url)
    page = body.decode()
    assert status == 200 and "probe dashboard" in page
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", page)
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    for u in urls:  # every asset comes from this server
        assert get(server.url.rstrip("/") + u)[0] == 200, u
    assert not re.search(r"https?://", re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.S))


def test_twenty_concurrent_requests_each_get_their_own_answer(server, tiny_gpt, tiny_bert):
    jobs = []
    for i in range(20):
        model = (tiny_gpt, tiny_bert)[i % 2]
        text = f"The robot number {i} must not hurt the human" if model is tiny_gpt else f"robot {i} must [MASK] hurt"
        jobs.append((model.name, text))

    def ask(job):
        name, text = job
        return callback(server, "fig-residual_norms.figure", {"text.value": text, "detail.value": name})

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(ask, jobs))
    for (name, text), answer in zip(jobs, answers):
        fig = answer["fig-residual_norms"]["figure"]
        assert fig["layout"]["title"]["text"].startswith(name), (name, fig["layout"]["title"])
        spelled = read_tokens(fig)
        number = re.search(r"\d+", text).group(0)
        assert re.search(rf"\b{number}\b", spelled), (text, spelled)
        assert ("[MASK]" in spelled) == (name == tiny_bert.name)
        assert answer["model-message"]["children"] == ""


def test_bad_input_is_a_message_and_the_server_keeps_serving(server, tiny_gpt, tiny_bert):
    cases = [
        ({"text.value": "x" * 3000, "detail.value": tiny_gpt.name}, "at most 2,000"),
        ({"text.value": "No mask here.", "detail.value": tiny_bert.name}, "has no [MASK]"),
        ({"text.value": TEXT, "detail.value": "/etc/passwd"}, "not offered here"),
        ({"text.value": TEXT, "detail.value": {"evil": 1}}, "not offered here"),
    ]
    for values, message in cases:
        answer = callback(server, "model-message.children", values)
        assert message in answer["model-message"]["children"]
        assert "Traceback" not in answer["model-message"]["children"]
    answer = callback(server, "compare-message.children", {"text.value": TEXT, "models.value": ["gpt2", "x"]})
    assert "not offered here" in answer["compare-message"]["children"]
    request = urllib.request.Request(server.url + "_dash-update-component", data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(request, timeout=60)
    answer = callback(server, "fig-attention.figure", {"text.value": TEXT, "detail.value": tiny_gpt.name})
    assert answer["fig-attention"]["figure"]["layout"]["title"]["text"].endswith("layer 0 head 0")


def test_save_button_downloads_the_report(server, tiny_gpt, tiny_bert):
    answer = callback(
        server,
        "download.data",
        {"save.n_clicks": 1, "text.value": TEXT, "models.value": [tiny_gpt.name, tiny_bert.name]},
    )
    download = answer["download"]["data"]
    assert download["filename"] == "probe-report-the-robot-must-mask-hurt-the-human.html"
    assert download["content"].count('class="probe-figure"') == 2 + 2 * 10


# -- in a browser ------------------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
DRAWN = "return Array.from(document.querySelectorAll('#{id} .js-plotly-plot')).map(g => (g.data || []).length)"


def _browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install 'probe[dev]')"
    if CHROMIUM is None or CHROMEDRIVER is None:
        return "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    reason = _browser_missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1600",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # offline: no other name resolves
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def wait(driver, condition, what: str, seconds: float = 90):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.2).until(lambda d: condition(d), message=what)


def js(driver, code: str):
    return driver.execute_script(code)


def figure_title(driver, view: str) -> str:
    return js(
        driver,
        f"var g = document.querySelector('#fig-{view} .js-plotly-plot'); "
        "return g && g.layout && g.layout.title ? String(g.layout.title.text || '') : '';",
    )


def screenshot(driver, name: str) -> None:
    folder = os.environ.get("PROBE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def test_in_chromium_type_switch_model_and_head_click_a_token(server, browser, tiny_gpt, tiny_bert):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = browser
    d.get(server.url)
    gpt, bert = tiny_gpt.name, tiny_bert.name
    wait(d, lambda d: figure_title(d, "predictions").startswith(gpt), "first predictions")
    wait(d, lambda d: "next word" in (js(d, "return document.querySelector('#fig-comparison').innerText") or ""), "cmp")
    screenshot(d, "dashboard-start")
    before = figure_title(d, "predictions")
    compare_before = js(d, "return JSON.stringify(document.querySelector('#fig-comparison .js-plotly-plot').data)")

    # type a sentence: Enter sends it; every view follows
    box = d.find_element(By.ID, "text")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys("The cat sat on the [MASK] and went to sleep.", Keys.ENTER)
    wait(d, lambda d: figure_title(d, "predictions") != before, "predictions follow the new text")
    assert re.search(r"after ' the' \(position \d+\)", figure_title(d, "predictions"))  # a GPT reads up to the slot
    wait(
        d,
        lambda d: (
            js(d, "return JSON.stringify(document.querySelector('#fig-comparison .js-plotly-plot').data)")
            != compare_before
        ),
        "comparison follows the new text",
    )
    lens_ticks = "return document.querySelector('#fig-logit_lens .js-plotly-plot').layout.xaxis.ticktext.join('')"
    wait(d, lambda d: "·sat" in (js(d, lens_ticks) or ""), "the logit lens follows the new text (its own request)")

    # switch the model in detail to the BERT
    d.find_element(By.XPATH, f"//div[@id='detail']//label[contains(., '{bert}')]").click()
    wait(d, lambda d: figure_title(d, "predictions").startswith(bert), "BERT's predictions")
    wait(d, lambda d: figure_title(d, "attention").startswith(f"{bert}: layer 0 head 0"), "BERT's attention")

    # pick head 2 in the head picker
    d.find_element(By.ID, "head").click()
    option = wait(
        d,
        lambda d: next((e for e in d.find_elements(By.XPATH, "//*[@role='option']") if e.text.strip() == "2"), None),
        "head options",
        30,
    )
    option.click()
    wait(d, lambda d: figure_title(d, "attention") == f"{bert}: layer 0 head 2", "attention follows the head picker")

    # click a token in the tokens view: predictions move there and the label says so
    cell = d.find_element(By.CSS_SELECTOR, "#fig-tokens .nsewdrag")
    from selenium.webdriver.common.action_chains import ActionChains

    size = cell.size
    width = size["width"]
    per_row = round(js(d, "return document.querySelector('#fig-tokens .js-plotly-plot').layout.xaxis.range[1]") + 0.5)
    x = int(width * (2.5 / per_row)) - width // 2  # third cell of the first row: position 2
    y = int(size["height"] * 0.25) - size["height"] // 2
    ActionChains(d).move_to_element_with_offset(cell, x, y).click().perform()
    wait(d, lambda d: d.find_element(By.ID, "focus-label").text == "token 2", "focus follows the click")
    wait(d, lambda d: "(position 2)" in figure_title(d, "predictions"), "predictions at the clicked token")
    screenshot(d, "dashboard-bert-head-focus")

    # nothing was fetched from elsewhere, and the console is clean
    resources = js(d, "return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(r.startswith(server.url.rstrip("/")) for r in resources), resources
    errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_in_chromium_bad_input_is_shown_in_the_page(server, browser, tiny_bert):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = browser
    d.get(server.url)
    wait(d, lambda d: figure_title(d, "predictions") != "", "page drawn")
    d.find_element(By.XPATH, f"//div[@id='detail']//label[contains(., '{tiny_bert.name}')]").click()
    wait(d, lambda d: figure_title(d, "predictions").startswith(tiny_bert.name), "BERT in detail")
    box = d.find_element(By.ID, "text")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys("A sentence without a slot.", Keys.ENTER)
    wait(d, lambda d: "has no [MASK]" in d.find_element(By.ID, "model-message").text, "the message in the page")
    screenshot(d, "dashboard-bad-input")
    errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys("A [MASK] sentence.", Keys.ENTER)  # and the page recovers
    wait(d, lambda d: d.find_element(By.ID, "model-message").text == "", "message cleared")
