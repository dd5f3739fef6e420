"""The probe CLI: thin commands that work, and bad input as one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from probe.cli import app

TEXT = "The robot must [MASK] hurt the human."


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    assert "Traceback" not in result.output and "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def test_compare_prints_a_table(runner, tiny_gpt_path, tiny_bert_path):
    result = runner.invoke(app, ["compare", TEXT, "-m", tiny_gpt_path, "-m", tiny_bert_path, "-k", "3"])
    assert result.exit_code == 0, result.output
    assert "next_token" in result.stdout and "masked" in result.stdout and "rescored" in result.stdout
    assert "Agreement" in result.stdout


def test_compare_csv_and_json(runner, tiny_gpt_path, tiny_bert_path):
    result = runner.invoke(app, ["compare", TEXT, "-m", tiny_gpt_path, "-m", tiny_bert_path, "-k", "3", "--csv"])
    assert result.exit_code == 0
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert {"model", "kind", "method", "rank", "word", "prob"} <= set(frame.columns)
    assert (frame.groupby(["model", "method"])["rank"].min() == 1).all()
    result = runner.invoke(app, ["compare", TEXT, "-m", tiny_bert_path, "-k", "2", "--json"])
    payload = json.loads(result.stdout)
    assert payload["text"] == TEXT and len(payload["candidates"]) == 2 and payload["layers"]


def test_run_writes_parquet(runner, tiny_gpt_path, tmp_path):
    out = tmp_path / "acts.parquet"
    result = runner.invoke(
        app, ["run", "The robot", "-m", tiny_gpt_path, "--hooks", "blocks.*.hook_resid_post", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert {"token", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"} <= set(table.column_names)
    assert "logits" not in table.column_names  # only what was asked


def test_report_writes_html(runner, tiny_gpt_path, tiny_bert_path, tmp_path):
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", TEXT, "-m", tiny_gpt_path, "-m", tiny_bert_path, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and "wrote" in result.stdout and out.read_text().count("probe-figure") >= 20


def test_models_lists_bundled_and_hub_models(runner):
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for name in ("tiny-gpt", "tiny-bert", "gpt2", "bert-base-uncased", "all-minilm-l6-v2"):
        assert name in result.stdout
    records = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    assert {r["name"] for r in records} >= {"tiny-gpt", "tiny-bert"}


@pytest.mark.parametrize("command", [[], ["report"], ["compare"], ["run"], ["models"]])
def test_help_everywhere_with_examples(runner, command):
    result = runner.invoke(app, command + ["--help"])
    assert result.exit_code == 0
    assert "Examples" in result.stdout


def test_bad_model_name(runner):
    assert_one_line_error(runner.invoke(app, ["compare", TEXT, "-m", "no-such-model-xyz"]), "no-such-model-xyz")


def test_bad_hook_name_suggests_the_right_one(runner, tiny_gpt_path, tmp_path):
    result = runner.invoke(
        app, ["run", "Hi", "-m", tiny_gpt_path, "--hooks", "blocks.0.hook_resid", "--out", str(tmp_path / "a.parquet")]
    )
    assert_one_line_error(result, "blocks.0.hook_resid", "did you mean")


def test_masked_model_without_mask(runner, tiny_bert_path):
    result = runner.invoke(app, ["compare", "The robot must not hurt the human.", "-m", tiny_bert_path])
    assert_one_line_error(result, "[MASK]")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["report", "-o", "/no/such/folder/r.html"], "does not exist"),
        (["run", "Hi", "--out", "acts.csv"], ".parquet"),
        (["compare", TEXT, "--csv", "--json"], "--csv"),
        (["compare"], "Missing argument"),
        (["compare", TEXT, "--bogus"], "--bogus"),
        (["compare", TEXT, "-k", "zero"], "--k"),
        (["compare", TEXT, "-k", "0"], "k must be"),
    ],
)
def test_bad_input_is_one_line(runner, tiny_gpt_path, args, needle):
    if args[0] in ("report", "run"):
        args = args + ["-m", tiny_gpt_path]
    if args[0] == "compare" and len(args) > 1:
        args = args + ["-m", tiny_gpt_path]
    assert_one_line_error(runner.invoke(app, args), needle)


def test_real_process_prints_one_line_and_no_progress_bars(tiny_bert_path):
    """The installed entry point as a shell runs it: stderr holds one line, nothing else."""
    out = subprocess.run(
        [sys.executable, "-m", "probe.cli", "compare", "no slot here", "-m", tiny_bert_path],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and out.stderr.startswith("error: ")
    assert "Traceback" not in out.stderr and "Loading" not in out.stderr
