"""The probe CLI: thin commands that work, and bad input as one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import one_line_error
from typer.testing import CliRunner

import probe
from probe.cli import app

TEXT = "The robot must [MASK] hurt the human."
LONG = " ".join(["The cat sat on the mat."] * 30) + " The robot must [MASK] hurt the human."


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
    one_line_error(runner.invoke(app, ["compare", TEXT, "-m", "no-such-model-xyz"]), "no-such-model-xyz")


def test_bad_hook_name_suggests_the_right_one(runner, tiny_gpt_path, tmp_path):
    result = runner.invoke(
        app, ["run", "Hi", "-m", tiny_gpt_path, "--hooks", "blocks.0.hook_resid", "--out", str(tmp_path / "a.parquet")]
    )
    one_line_error(result, "blocks.0.hook_resid", "did you mean")


def test_masked_model_without_mask(runner, tiny_bert_path):
    result = runner.invoke(app, ["compare", "The robot must not hurt the human.", "-m", tiny_bert_path])
    one_line_error(result, "[MASK]")


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
    one_line_error(runner.invoke(app, args), needle)


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


def test_version(runner):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"probe {probe.__version__}"


def test_version_in_a_real_process():
    out = subprocess.run([sys.executable, "-m", "probe.cli", "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == f"probe {probe.__version__}" and not out.stderr


def test_no_command_still_prints_help(runner):
    result = runner.invoke(app, [])
    assert result.exit_code == 0 and "hooks" in result.stdout and "compare" in result.stdout


def test_hooks_lists_every_hook_with_its_shape(runner, tiny_gpt_path, tiny_gpt):
    result = runner.invoke(app, ["hooks", tiny_gpt_path, "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [r["hook"] for r in records] == tiny_gpt.hook_names
    run = tiny_gpt.run("The robot must not", hooks=tiny_gpt.hook_names)
    for r in records:
        shape = list(run[r["hook"]].shape)
        assert len(r["dims"]) == len(shape) and r["dims"][0] == "batch"
        for size, real in zip(r["sizes"], shape):  # named sizes are the real ones; batch and positions vary
            assert size is None or size == real
    by_name = {r["hook"]: r["shape"] for r in records}
    assert by_name["blocks.0.hook_resid_post"] == f"[batch, pos, d_model={tiny_gpt.d_model}]"
    assert by_name["blocks.0.attn.hook_pattern"] == f"[batch, head={tiny_gpt.n_heads}, q_pos, k_pos]"


def test_hooks_table(runner, tiny_bert_path, tiny_bert):
    result = runner.invoke(app, ["hooks", tiny_bert_path])
    assert result.exit_code == 0, result.output
    for name in tiny_bert.hook_names:
        assert name in result.stdout
    assert f"d_mlp={tiny_bert.d_mlp}" in result.stdout


def test_hooks_help_and_bad_model(runner):
    assert "Examples" in runner.invoke(app, ["hooks", "--help"]).stdout
    one_line_error(runner.invoke(app, ["hooks", "no-such-model-xyz"]), "no-such-model-xyz")


def test_hook_hint_points_to_an_existing_command(runner, tiny_gpt_path, tmp_path):
    result = runner.invoke(
        app, ["run", "Hi", "-m", tiny_gpt_path, "--hooks", "zzz", "--out", str(tmp_path / "a.parquet")]
    )
    one_line_error(result, "probe hooks")


def test_run_with_several_models_writes_one_file_each(runner, tiny_gpt_path, tiny_bert_path, tmp_path):
    out = tmp_path / "acts.parquet"
    result = runner.invoke(
        app, ["run", "The robot", "-m", tiny_gpt_path, "-m", tiny_bert_path, "--hooks", "logits", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.glob("acts.*.parquet"))
    assert len(files) == 2 and not out.exists() and result.stdout.count("wrote") == 2
    for path, model in zip(
        files, sorted([probe.load(tiny_gpt_path), probe.load(tiny_bert_path)], key=lambda m: m.name)
    ):
        assert model.name in path.name
        assert pq.read_table(path).num_rows == len(model.tokenize("The robot"))


def test_run_with_two_models_of_one_name_refuses(runner, tiny_gpt_path, tmp_path):
    import shutil
    from pathlib import Path

    twin = tmp_path / "elsewhere" / Path(tiny_gpt_path).name  # another folder of the same name
    shutil.copytree(tiny_gpt_path, twin)
    result = runner.invoke(
        app, ["run", "Hi", "-m", tiny_gpt_path, "-m", str(twin), "--out", str(tmp_path / "a.parquet")]
    )
    one_line_error(result, "same file")


def test_compare_truncate(runner, tiny_gpt_path, tiny_bert_path):
    args = ["compare", LONG, "-m", tiny_gpt_path, "-m", tiny_bert_path, "-k", "2", "--csv"]
    one_line_error(runner.invoke(app, args), "--truncate")
    result = runner.invoke(app, args + ["--truncate"])
    assert result.exit_code == 0, result.output
    assert "masked" in result.stdout and "next_token" in result.stdout


def test_report_truncate(runner, tiny_bert_path, tmp_path):
    out = tmp_path / "r.html"
    args = ["report", LONG, "-m", tiny_bert_path, "-k", "2", "-o", str(out)]
    one_line_error(runner.invoke(app, args), "--truncate")
    result = runner.invoke(app, args + ["--truncate"])
    assert result.exit_code == 0, result.output
    assert "was cut to the window above" in out.read_text(encoding="utf-8")


def test_help_keeps_brackets_and_labels_no_flag_as_a_value():

    from probe.cli import app

    runner = CliRunner()
    extract = runner.invoke(app, ["extract", "--help"], terminal_width=120)
    hooks = runner.invoke(app, ["hooks", "--help"], terminal_width=120)
    assert extract.exit_code == 0 and hooks.exit_code == 0
    assert "probe[ray]" in extract.output and "[batch, pos" in hooks.output
    flags = [line for line in extract.output.splitlines() if "--quiet" in line or "--help" in line]
    assert flags and not any("<bool>" in line for line in flags)
