"""probe.verify / `probe verify`: a wrong hook point makes it fail; the CLI exits 1 then."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
from typer.testing import CliRunner

import probe
from probe.cli import app


def test_verify_passes_on_both_bundled_families(tiny):
    table = probe.verify(tiny)
    assert table.attrs["ok"] and table.attrs["dtype"] == "float32"
    assert (table["max_abs_diff"] <= table["tolerance"]).all()
    assert len(table) >= 2 * tiny.n_layers + 1


def _break(model, monkeypatch, wrong: dict[str, str]):
    """Rebind some hook names to another point's module, as an adapter bug would."""
    points = model.adapter.points()
    by_name = {p.name: p for p in points}
    broken = [dataclasses.replace(by_name[wrong[p.name]], name=p.name) if p.name in wrong else p for p in points]
    monkeypatch.setattr(model.adapter, "points", lambda: broken)


@pytest.mark.parametrize(
    "wrong",
    [
        {"blocks.1.hook_resid_pre": "blocks.0.hook_resid_pre"},  # a block's input from the wrong block
        {"blocks.0.hook_attn_out": "blocks.0.hook_mlp_out"},  # attention output from the MLP
        {"blocks.1.attn.hook_pattern": "blocks.0.attn.hook_pattern"},
    ],
)
def test_a_wrong_hook_point_fails(tiny_gpt_path, monkeypatch, wrong):
    model = probe.load(tiny_gpt_path)
    _break(model, monkeypatch, wrong)
    table = probe.verify(model)
    assert not table.attrs["ok"]
    assert not table["ok"].all()


def test_cli_verify_prints_a_table_and_exits_1_on_failure(tiny_gpt_path, monkeypatch):
    runner = CliRunner()
    result = runner.invoke(app, ["verify", tiny_gpt_path])
    assert result.exit_code == 0, result.output
    assert "hidden_states[0]" in result.stdout and "FAIL" not in result.stdout
    verify_module = importlib.import_module("probe.analysis.verify")

    real = verify_module.verify

    def broken(model, texts=None):
        table = real(model, texts)
        table.loc[0, "ok"] = False
        table.attrs["ok"] = False
        return table

    monkeypatch.setattr(verify_module, "verify", broken)
    result = runner.invoke(app, ["verify", tiny_gpt_path, "--json"])
    assert result.exit_code == 1
    assert '"ok":false' in result.stdout.replace(" ", "")


def test_verify_bad_texts_is_one_line(tiny_gpt):
    with pytest.raises(probe.InputError, match="non-empty texts"):
        probe.verify(tiny_gpt, texts=[""])
