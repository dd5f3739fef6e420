"""probe.attribution_patching: equal to TransformerLens 4's ``attribution_patch`` node scores on the same
weights, integrated gradients that add up to the metric's change over the embedding path, the same frame
keys as probe.patching, the CLI's --method, and bad input in one line."""

from __future__ import annotations

import io

import pandas as pd
import pytest
import torch
from conftest import one_line_error, tl_bridge, tl_logit_diff

import probe
from probe.analysis.reading import read_text
from probe.cli import app
from probe.errors import InputError

CLEAN, BAD = "The robot must not hurt the", "The human must not hurt the"
METRIC = ("logit_diff", " human", " robot")
MASKED_CLEAN, MASKED_BAD = "The robot must [MASK] hurt the human.", "The human must [MASK] hurt the human."


def test_node_estimates_equal_transformerlens_attribution_patch(tiny_gpt, tiny_gpt_path):
    pytest.importorskip("transformer_lens")
    from transformer_lens.tools.analysis import attribution_patching as tl

    heads = probe.attribution_patching(tiny_gpt, CLEAN, BAD, METRIC, over="heads")
    mlps = probe.attribution_patching(tiny_gpt, CLEAN, BAD, METRIC, over="mlp_out")
    bridge = tl_bridge(tiny_gpt, tiny_gpt_path)
    metric = tl_logit_diff(tiny_gpt, " human", " robot")

    theirs = tl.attribution_patch(bridge, read_text(tiny_gpt, CLEAN).ids, read_text(tiny_gpt, BAD).ids, metric)
    per_head: dict = {}
    per_mlp: dict = {}
    for node, value in theirs.node_scores.items():
        if node.kind == "attn_head_out":  # TL scores a head per position; probe.patching's heads are all positions
            per_head[node.layer, node.head] = per_head.get((node.layer, node.head), 0.0) + value
        elif node.kind == "mlp_out":
            per_mlp[node.layer, node.position] = value
    assert heads["estimate"].abs().max() > 1e-3  # the texts differ where it matters
    for row in heads.itertuples():
        assert row.estimate == pytest.approx(per_head[row.layer, row.head], abs=1e-5)
    for row in mlps.itertuples():
        assert row.estimate == pytest.approx(per_mlp[row.layer, row.position], abs=1e-5)


def test_integrated_gradients_add_up_over_the_embedding_path(tiny_gpt):
    """GPT-2's first residual stream is the token plus position embedding, and "ig" walks the token
    embeddings from corrupted to clean: the layer-0 estimates sum to the metric's whole change."""
    frame = probe.attribution_patching(tiny_gpt, CLEAN, BAD, METRIC, over="resid_pre", method="ig", n_steps=64)
    span = frame.attrs["clean_value"] - frame.attrs["corrupted_value"]
    assert abs(span) > 1e-3
    assert frame[frame["layer"] == 0]["estimate"].sum() == pytest.approx(span, rel=0.01, abs=1e-4)
    one_step = probe.attribution_patching(tiny_gpt, CLEAN, BAD, METRIC, over="resid_pre")
    assert one_step.attrs["n_steps"] == 1 and frame.attrs["n_steps"] == 64


def test_frames_have_patchings_keys_and_read_masked_models(tiny_gpt, tiny_bert):
    exact = probe.patching(tiny_gpt, CLEAN, BAD, METRIC, over="resid_pre")
    estimate = probe.attribution_patching(tiny_gpt, CLEAN, BAD, METRIC, over="resid_pre")
    assert list(estimate.columns) == ["layer", "position", "token", "estimate", "normalized_estimate"]
    assert estimate[["layer", "position", "token"]].equals(exact[["layer", "position", "token"]])
    assert estimate.attrs["clean_value"] == pytest.approx(exact.attrs["clean_value"], abs=1e-5)
    heads = probe.attribution_patching(
        tiny_bert, MASKED_CLEAN, MASKED_BAD, ("logit_diff", " not", " robot"), method="ig"
    )
    assert list(heads.columns) == ["layer", "head", "estimate", "normalized_estimate"]
    assert len(heads) == tiny_bert.n_layers * tiny_bert.n_heads and heads["estimate"].abs().max() > 0
    span = heads.attrs["clean_value"] - heads.attrs["corrupted_value"]
    assert heads["normalized_estimate"].tolist() == pytest.approx((heads["estimate"] / span).tolist())


def test_a_differentiable_metric_function_is_taken(tiny_gpt):
    t, u = (tiny_gpt.tokenizer.encode(w)[0] for w in (" human", " robot"))
    mine = probe.attribution_patching(tiny_gpt, CLEAN, BAD, lambda lg: lg[t] - lg[u], over="heads")
    named = probe.attribution_patching(tiny_gpt, CLEAN, BAD, METRIC, over="heads")
    assert mine["estimate"].tolist() == pytest.approx(named["estimate"].tolist(), abs=1e-6)
    with pytest.raises(InputError, match="return a tensor"):
        probe.attribution_patching(tiny_gpt, CLEAN, BAD, lambda lg: float(lg[t]), over="heads")


def test_no_gradients_are_left_on_the_weights(tiny_gpt):
    probe.attribution_patching(tiny_gpt, CLEAN, BAD, METRIC, method="ig", n_steps=4)
    assert all(p.grad is None for p in tiny_gpt.hf.parameters())
    assert torch.is_inference_mode_enabled() is False


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((CLEAN, "The robot"), {}, "same number of tokens"),
        ((CLEAN, BAD), {"metric": ("logit_diff", " unbelievably", " robot")}, "is 5 tokens|tokens for"),
        ((CLEAN, BAD), {"over": "edges_of_the_world"}, "has no attribution patching"),
        ((CLEAN, BAD), {"method": "shapley"}, "is not one of atp, ig"),
        ((CLEAN, BAD), {"n_steps": 0}, "n_steps"),
    ],
)
def test_bad_input_is_one_clear_line(tiny_gpt, args, kwargs, message):
    kwargs = {"metric": METRIC, **kwargs}
    with pytest.raises(InputError, match=message) as err:
        probe.attribution_patching(tiny_gpt, *args, **kwargs)
    assert "\n" not in str(err.value)


def test_a_masked_text_needs_its_mask(tiny_bert):
    with pytest.raises(InputError, match="MASK"):
        probe.attribution_patching(tiny_bert, "The robot must not hurt", "The human must not hurt", ("logit", " not"))


def test_cli_method_and_view(runner, tiny_gpt_path, tiny_gpt):
    import probe.viz

    base = ["patch", CLEAN, BAD, "-m", tiny_gpt_path, "--answer", " human", "--wrong", " robot", "--over", "heads"]
    result = runner.invoke(app, [*base, "--method", "atp", "--csv"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert list(frame.columns) == ["layer", "head", "estimate", "normalized_estimate"]
    one_line_error(runner.invoke(app, [*base, "--method", "shapley"]), "--method 'shapley' is not one of")
    fig = probe.viz.patching(probe.attribution_patching(tiny_gpt, CLEAN, BAD, METRIC, method="ig", n_steps=4))
    assert "integrated over 4 steps" in fig.layout.title.text and fig.data[0].type == "heatmap"


def test_readme_snippet_runs_as_printed():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    code = next(b for b in readme.split("```python\n")[1:] if "probe.attribution_patching(" in b).split("```")[0]
    clean, corrupt = "The robot must not hurt the", "The robot will not hurt the"
    assert f'clean, corrupt = "{clean}", "{corrupt}"' in readme  # the names the snippet uses, as README sets them
    scope = {"probe": probe, "gpt": probe.load("tiny-gpt"), "clean": clean, "corrupt": corrupt}
    exec(compile(code, "README.md", "exec"), scope)
