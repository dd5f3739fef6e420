"""The CLI parts of issue #11: --version, probe hooks, run with several models, --truncate."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import probe
from probe.cli import app

TEXT = "The robot must [MASK] hurt the human."
LONG = " ".join(["The cat sat on the mat."] * 30) + " The robot must [MASK] hurt the human."


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in result.output, err
    for needle in needles:
        assert needle in err, err


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
    assert_one_line_error(runner.invoke(app, ["hooks", "no-such-model-xyz"]), "no-such-model-xyz")


def test_hook_hint_points_to_an_existing_command(runner, tiny_gpt_path, tmp_path):
    result = runner.invoke(
        app, ["run", "Hi", "-m", tiny_gpt_path, "--hooks", "zzz", "--out", str(tmp_path / "a.parquet")]
    )
    assert_one_line_error(result, "probe hooks")


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
    assert_one_line_error(result, "same file")


def test_compare_truncate(runner, tiny_gpt_path, tiny_bert_path):
    args = ["compare", LONG, "-m", tiny_gpt_path, "-m", tiny_bert_path, "-k", "2", "--csv"]
    assert_one_line_error(runner.invoke(app, args), "--truncate")
    result = runner.invoke(app, args + ["--truncate"])
    assert result.exit_code == 0, result.output
    assert "masked" in result.stdout and "next_token" in result.stdout


def test_report_truncate(runner, tiny_bert_path, tmp_path):
    out = tmp_path / "r.html"
    args = ["report", LONG, "-m", tiny_bert_path, "-k", "2", "-o", str(out)]
    assert_one_line_error(runner.invoke(app, args), "--truncate")
    result = runner.invoke(app, args + ["--truncate"])
    assert result.exit_code == 0, result.output
    assert "was cut to the window above" in out.read_text(encoding="utf-8")


def test_help_keeps_brackets_and_labels_no_flag_as_a_value():
    from typer.testing import CliRunner

    from probe.cli import app

    runner = CliRunner()
    extract = runner.invoke(app, ["extract", "--help"], terminal_width=120)
    hooks = runner.invoke(app, ["hooks", "--help"], terminal_width=120)
    assert extract.exit_code == 0 and hooks.exit_code == 0
    assert "probe[ray]" in extract.output and "[batch, pos" in hooks.output
    flags = [line for line in extract.output.splitlines() if "--quiet" in line or "--help" in line]
    assert flags and not any("<bool>" in line for line in flags)
