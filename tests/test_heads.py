"""probe.head_scores: TransformerLens's head detector protocol (its detection patterns, its "mul" score on the
same attention), a head that is built to be of a kind scores 1 for it, the view and CLI, and bad input."""

from __future__ import annotations

import copy
import io
import json

import pandas as pd
import pytest
import torch
from conftest import one_line_error

import probe
from probe.analysis.heads import KINDS, detection_pattern, repeated_tokens
from probe.cli import app
from probe.errors import InputError


def test_detection_patterns_are_transformerlens_s():
    pytest.importorskip("transformer_lens")
    from transformer_lens import head_detector as hd

    ids = torch.tensor([5, 9, 7, 5, 9, 7, 3, 5])
    for kind, theirs in (
        ("previous_token", hd.get_previous_token_head_detection_pattern),
        ("duplicate_token", hd.get_duplicate_token_head_detection_pattern),
        ("induction", hd.get_induction_head_detection_pattern),
    ):
        assert torch.equal(detection_pattern(kind, ids), theirs(ids[None]).float()), kind
    assert detection_pattern("first_token", ids)[:, 0].eq(1).all() and detection_pattern("first_token", ids).sum() == 8


def test_scores_equal_transformerlens_on_the_same_attention(tiny_gpt, tiny_gpt_path):
    pytest.importorskip("transformer_lens")
    from transformer_lens import head_detector as hd
    from transformer_lens.model_bridge import TransformerBridge

    ours = probe.head_scores(tiny_gpt, length=10, batch=1, seed=3)
    ids = repeated_tokens(tiny_gpt, 10, 1, 3)
    bridge = TransformerBridge.boot_transformers(
        tiny_gpt_path, hf_model=copy.deepcopy(tiny_gpt.hf), tokenizer=tiny_gpt.tokenizer
    )
    with torch.inference_mode():
        _, cache = bridge.run_with_cache(ids)
    get = {
        "previous_token": hd.get_previous_token_head_detection_pattern,
        "duplicate_token": hd.get_duplicate_token_head_detection_pattern,
        "induction": hd.get_induction_head_detection_pattern,
    }
    for kind, make in get.items():
        detection = make(ids.cpu())
        for layer in range(tiny_gpt.n_layers):
            pattern = cache[f"blocks.{layer}.attn.hook_pattern"][0]
            for head in range(tiny_gpt.n_heads):
                theirs = hd.compute_head_attention_similarity_score(
                    pattern[head].float(),
                    detection,
                    exclude_bos=False,
                    exclude_current_token=False,
                    error_measure="mul",
                )
                mine = ours[(ours["kind"] == kind) & (ours["layer"] == layer) & (ours["head"] == head)]["score"].item()
                assert mine == pytest.approx(theirs, abs=1e-5), (kind, layer, head)


def test_a_head_built_to_look_back_one_token_scores_one(tiny_gpt):
    """Patch one head's pattern to attend exactly to the previous token (and the first query to itself): its
    previous-token score is then (n - 1) / n, and its first-token score 1 / n."""
    ids = repeated_tokens(tiny_gpt, 12, 1, 0)
    n = ids.shape[1]
    exact = torch.diag(torch.ones(n - 1), -1)
    exact[0, 0] = 1

    def look_back(pattern, ctx):
        pattern[:, 1] = exact
        return pattern

    run = tiny_gpt.run(ids, hooks=["blocks.0.attn.hook_pattern"], patch={"blocks.0.attn.hook_pattern": look_back})
    pattern = run["blocks.0.attn.hook_pattern"][0, 1]
    share = (pattern * detection_pattern("previous_token", ids[0])).sum() / pattern.sum()
    assert float(share) == pytest.approx((n - 1) / n)


def test_frame_columns_attrs_and_chance(tiny_gpt, tiny_bert):
    for model in (tiny_gpt, tiny_bert):
        frame = probe.head_scores(model, length=8, batch=2)
        assert list(frame.columns) == ["kind", "layer", "head", "score"]
        assert len(frame) == len(KINDS) * model.n_layers * model.n_heads
        assert frame["score"].between(0, 1).all()
        assert set(frame.attrs["chance"]) == set(KINDS) and 0 < frame.attrs["chance"]["first_token"] < 1
    assert probe.head_scores(tiny_bert, length=8, batch=1).attrs["tokens"][0] == tiny_bert.tokenizer.cls_token
    assert probe.head_scores(tiny_gpt, length=8, batch=1).attrs["tokens"][0] == "<|endoftext|>"
    same = probe.head_scores(tiny_gpt, kinds=["induction"], length=8, batch=2, seed=4)
    assert same.equals(probe.head_scores(tiny_gpt, kinds="induction", length=8, batch=2, seed=4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kinds": ["bogus"]}, "unknown head kind 'bogus'"),
        ({"kinds": []}, "no head kinds"),
        ({"length": 1}, "length"),
        ({"length": 40}, "exceed .* context of 64; pass length=31 or less"),
    ],
)
def test_bad_input_is_one_clear_line(tiny_gpt, kwargs, message):
    with pytest.raises(InputError, match=message):
        probe.head_scores(tiny_gpt, **kwargs)


def test_view_and_cli(runner, tiny_gpt, tiny_gpt_path):
    import probe.viz

    fig = probe.viz.head_scores(probe.head_scores(tiny_gpt, length=8, batch=1))
    assert [t.type for t in fig.data] == ["heatmap"] * len(KINDS)
    assert len(fig.data[0].z) == tiny_gpt.n_layers and "uniform" in fig.layout.annotations[0].text
    result = runner.invoke(app, ["heads", "-m", tiny_gpt_path, "--kind", "induction", "--batch", "1", "--csv"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert set(frame["kind"]) == {"induction"} and len(frame) == tiny_gpt.n_layers * tiny_gpt.n_heads
    payload = json.loads(runner.invoke(app, ["heads", "-m", tiny_gpt_path, "--batch", "1", "--json"]).stdout)
    assert payload["batch"] == 1 and len(payload["rows"]) == len(KINDS) * tiny_gpt.n_layers * tiny_gpt.n_heads
    table = runner.invoke(app, ["heads", "-m", tiny_gpt_path, "--batch", "1", "--top", "2"])
    assert table.exit_code == 0 and table.stdout.count("'induction'") == 2
    one_line_error(runner.invoke(app, ["heads", "-m", tiny_gpt_path, "--kind", "bogus"]), "unknown head kind")


def test_readme_snippet_runs_as_printed():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    code = next(block for block in readme.split("```python\n")[1:] if "probe.head_scores(" in block).split("```")[0]
    scope: dict = {"probe": probe, "gpt": probe.load("tiny-gpt")}
    exec(compile(code, "README.md", "exec"), scope)
    assert set(scope["s"]["kind"]) == set(KINDS)
