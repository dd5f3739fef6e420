"""The "why" analyses from the CLI (probe attribute, probe patch), in reports (sections=) and examples."""

from __future__ import annotations

import importlib.util
import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import CHROMIUM, EXTERNAL, chromium_dom, console_lines, figure_specs, one_line_error, split_plotly

import probe
from probe.cli import app
from probe.errors import InputError
from probe.pages import report

ROOT = Path(__file__).resolve().parent.parent
TEXT = "The robot must [MASK] hurt the human."
HOSTILE = "<img src=x onerror=alert(1)>"


def test_cli_attribute_csv_and_json(runner, tiny_gpt_path):
    result = runner.invoke(app, ["attribute", "The robot must not hurt the", "-m", tiny_gpt_path, "--csv"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert list(frame.columns) == ["position", "token", "attribution", "method"]
    result = runner.invoke(app, ["attribute", "The robot must not", "-m", tiny_gpt_path, "-t", " the", "--json"])
    payload = json.loads(result.stdout)
    assert payload["target"] == " the" and payload["method"] == "integrated_gradients" and payload["rows"]
    span = payload["target_value"] - payload["baseline_value"]
    assert sum(r["attribution"] for r in payload["rows"]) == pytest.approx(span, rel=0.05)


def test_cli_attribute_warns_when_attributions_do_not_add_up(runner, tiny_gpt_path, monkeypatch):
    """Too few steps and no refinement: the output still comes, with one warning line on stderr."""
    import probe.analysis.attribute as attribute_module

    monkeypatch.setattr(attribute_module, "REFINE", 1)
    args = ["attribute", "The robot must not hurt the", "-m", tiny_gpt_path, "--steps", "2", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["completeness"] > 0.05 and payload["n_steps"] == 2
    assert result.stderr.startswith("warning: integrated gradients do not add up")
    monkeypatch.setattr(attribute_module, "REFINE", 8)  # refinement on: the same call adds up, no warning
    result = runner.invoke(app, args)
    payload = json.loads(result.stdout)
    assert payload["completeness"] <= 0.01 and payload["n_steps"] > 2 and payload["warning"] is None
    assert "warning" not in result.stderr


def test_cli_attribute_contrast_and_generate(runner, tiny_gpt_path):
    args = ["attribute", "The robot must not hurt the", "-m", tiny_gpt_path, "-t", " the", "-c", " not", "--json"]
    payload = json.loads(runner.invoke(app, args).stdout)
    assert payload["contrast"] == " not" and payload["completeness"] <= 0.01
    span = payload["target_value"] - payload["baseline_value"]
    assert sum(r["attribution"] for r in payload["rows"]) == pytest.approx(span, rel=0.01)
    result = runner.invoke(app, ["attribute", "The robot must", "-m", tiny_gpt_path, "--generate", "3", "--csv"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert list(frame.columns) == ["step", "generated_token", "position", "token", "attribution"]
    assert sorted(frame["step"].unique()) == [0, 1, 2]
    one_line_error(runner.invoke(app, args[:-1] + ["-c", " the"]), "is the target itself")
    result = runner.invoke(app, ["attribute", "The robot must", "-m", tiny_gpt_path, "-g", "2", "-t", " the"])
    one_line_error(result, "--generate attributes the tokens it generates")
    result = runner.invoke(app, ["attribute", "The robot must", "-m", tiny_gpt_path, "-g", "500"])
    one_line_error(result, "more go past", "context of")


def test_cli_attribute_inseq_takes_inseqs_conventions(runner, tiny_gpt_path, tiny_gpt):
    import math

    args = ["attribute", "The robot must", "-m", tiny_gpt_path, "-g", "2", "--inseq", "--json"]
    payload = json.loads(runner.invoke(app, args).stdout)
    expected = probe.attribute_generation(
        tiny_gpt, "The robot must", 2, baseline="unk", prepend_bos=False, n_steps=16, tolerance=math.inf
    )
    assert payload["baseline"] == "unk" and not payload["rows"][0]["token"].startswith("<")  # no start token
    assert [r["attribution"] for r in payload["rows"]] == pytest.approx(list(expected["attribution"]), abs=1e-6)
    one_line_error(runner.invoke(app, [*args, "--baseline", "zero"]), "--inseq sets the baseline")
    one_line_error(runner.invoke(app, [*args[:-2], "--baseline", "noise"]), "baseline='noise' is not known")


def test_cli_patch_table_and_csv(runner, tiny_bert_path):
    clean, bad = "The robot must [MASK] hurt the human.", "The human must [MASK] hurt the human."
    result = runner.invoke(app, ["patch", clean, bad, "-m", tiny_bert_path])
    assert result.exit_code == 0, result.output
    assert "normalized_effect" in result.stdout
    result = runner.invoke(app, ["patch", clean, bad, "-m", tiny_bert_path, "--over", "heads", "--csv"])
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert list(frame.columns) == ["layer", "head", "effect", "normalized_effect"]


def test_cli_patch_texts_of_different_length(runner, tiny_gpt_path):
    result = runner.invoke(app, ["patch", "The robot must not hurt the", "A cat", "-m", tiny_gpt_path])
    one_line_error(result, "same number of tokens")


def test_cli_attribute_empty_target(runner, tiny_gpt_path):
    one_line_error(runner.invoke(app, ["attribute", "The robot", "-m", tiny_gpt_path, "-t", ""]), "no tokens")


def test_cli_attribute_position_out_of_range(runner, tiny_gpt_path):
    result = runner.invoke(app, ["attribute", "The robot", "-m", tiny_gpt_path, "--position", "30"])
    one_line_error(result, "position 30 is out of range")


def test_cli_report_section_patching_needs_corrupted(runner, tiny_gpt_path, tmp_path):
    result = runner.invoke(app, ["report", "-m", tiny_gpt_path, "-s", "patching", "-o", str(tmp_path / "r.html")])
    one_line_error(result, "corrupted")


def test_unknown_report_section(tiny_gpt, tmp_path):
    with pytest.raises(InputError, match="unknown report section 'saliency'"):
        report(TEXT, [tiny_gpt], tmp_path / "r.html", sections=["saliency"])


@pytest.fixture(scope="module")
def why_report(tiny_gpt, tiny_bert, tmp_path_factory):
    path = tmp_path_factory.mktemp("why") / "why.html"
    text = f"The robot must [MASK] hurt the {HOSTILE} human."
    bad = f"The human must [MASK] hurt the {HOSTILE} human."  # one token for one in the fixtures' vocabulary
    sections = ["attribution", "generation", "dla", "heads", "patching", "circuit", "factors", "cka"]
    return report(text, [tiny_gpt, tiny_bert], path, sections=sections, corrupted=bad)


def test_report_why_sections(why_report):

    doc = why_report.read_text(encoding="utf-8")
    _, rest = split_plotly(doc)
    titles = ("Why: attribution", "Why: attribution over generation", "Why: direct logit attribution")
    titles += ("Why: activation patching",)
    for title in titles + ("Why: head detectors", "Why: circuit", "Why: neuron factors", "Why: layer similarity"):
        assert title in rest
    # 2 comparison + 2 x 10 per model, then 2 attribution + 1 generation (the BERT gets a note) + 2 dla + 2 heads + 2 x 2 patching + 2 x 2 circuit
    # (graph + method agreement; the BERT's through its post-LN norms) + 2 factors + (2 + 1) CKA
    assert len(figure_specs(doc)) == 2 + 2 * 10 + 2 + 1 + 2 + 2 + 4 + 4 + 2 + 3
    assert "a masked model generates nothing" in rest and "each row adding up to its own log-probability gain" in rest
    assert "no circuit;" not in rest and rest.count(": circuit</h3>") == 2
    # the dla caption states that the split adds up to the model's own logit difference, per model
    assert rest.count("add up to the model&#39;s own logit difference") == 2
    assert not EXTERNAL.search(rest)
    assert "<img" not in rest.lower() and "&lt;img src=x onerror=alert(1)&gt;" in rest
    assert rest.count("<script") == len(figure_specs(doc)) + 3
    # CKA is read over the text and the reference sentences, and says over how many items
    counts = [int(n) for n in re.findall(r"Compared over (\d+) (?:tokens|words)", rest)]
    assert len(counts) == 3 and min(counts) > 100


def test_report_why_sections_in_chromium(why_report, tmp_path):

    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    dom, log = chromium_dom(why_report, tmp_path)
    n = len(figure_specs(why_report.read_text(encoding="utf-8")))
    assert dom.count('class="plot-container plotly"') == n, "every figure is drawn"
    assert "<img" not in dom.lower()
    assert not console_lines(log), console_lines(log)


def _example(name: str):
    spec = importlib.util.spec_from_file_location(f"why_example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["why_attribution", "why_patching", "why_factors"])
def test_why_examples_run(name, tiny_gpt_path, tiny_bert_path, tmp_path, capsys):
    argv = ["-m", tiny_gpt_path, "-m", tiny_bert_path, "--out", str(tmp_path)]
    if name == "why_patching":
        argv += ["--corrupted", "The human must [MASK] hurt the human."]
    path = _example(name).main(argv)
    html = path.read_text(encoding="utf-8")
    assert html.count('class="probe-figure"') >= 2
    assert "wrote" in capsys.readouterr().out


def test_circuit_ioi_example_runs(tiny_gpt_path, tmp_path, capsys):
    argv = ["-m", tiny_gpt_path, "--out", str(tmp_path), "--edges", "10"]
    argv += ["--clean", "The robot must not hurt the", "--corrupted", "The human must not hurt the"]
    argv += ["--answer", " human", "--wrong", " robot"]
    path = _example("circuit_ioi").main(argv)
    html = path.read_text(encoding="utf-8")
    assert html.count('class="probe-figure"') == 4  # head detectors, DLA, agreement, circuit
    printed = capsys.readouterr().out
    assert "faithfulness" in printed and "induction: L" in printed and "wrote" in printed
