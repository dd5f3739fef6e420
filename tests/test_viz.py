"""probe.viz: every view returns a Figure with data, for both families, at 100+ tokens, escaped."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

import probe
from probe.errors import HookNameError, InputError
from probe.viz import RunPlots, generation, lens_table
from probe.viz._style import label, pool, visible
from probe.viz.attention import entropy

TEXT = {"causal": "The robot must not hurt the human.", "masked": "The robot must [MASK] hurt the human."}
# Repeated corpus sentences: with the fixtures' 320-token BPE this is well over 100 tokens.
LONG_TEXT = (
    "The robot must not hurt the human. A robot may not injure a human being or allow a human being to "
    "come to harm. The cat sat on the mat and the dog sat on the log. Paris is the capital of France, "
    "and Berlin is the capital of Germany. She went to the market to buy bread, milk and eggs. The quick "
    "brown fox jumps over the lazy dog."
)
HOSTILE = "<img src=x onerror=alert(1)>"


def full_run(model, text):
    hooks = model.default_hooks + [f"blocks.{model.n_layers - 1}.mlp.hook_post"]
    return model.run(text, hooks=hooks)


def all_figures(plots: RunPlots) -> dict[str, go.Figure]:
    figs = {
        "tokens": plots.tokens(),
        "attention": plots.attention(0, 1),
        "attention_grid": plots.attention_grid(),
        "attention_heads": plots.attention_heads(),
        "attention_entropy": plots.attention_entropy(),
        "residual_norms": plots.residual_norms(),
        "neurons": plots.neurons(k=8),
    }
    if plots.run.model.kind != "encoder":
        figs["predictions"] = plots.predictions(k=5)
        figs["logit_lens"] = plots.logit_lens()
        figs["lens_target"] = plots.lens_target(int(plots.run.predictions(k=1)["token_id"].iloc[0]))
    return figs


def has_data(fig: go.Figure) -> bool:
    for trace in fig.data:
        for attr in ("z", "x", "y"):
            value = getattr(trace, attr, None)
            if (
                value is not None
                and np.asarray(value, dtype=object).size
                and not all(v is None for v in np.ravel(value))
            ):
                return True
    return False


@pytest.fixture(scope="module")
def long_models(tiny_gpt_path, tiny_bert_path, tmp_path_factory):
    """The fixtures' tokenizers on models with a 160-token context, so 100+ token texts fit."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1)
    gtok = AutoTokenizer.from_pretrained(tiny_gpt_path)
    gcfg = GPT2Config(vocab_size=len(gtok), n_positions=160, n_embd=32, n_layer=2, n_head=4, n_inner=64)
    btok = AutoTokenizer.from_pretrained(tiny_bert_path)
    bcfg = BertConfig(
        vocab_size=len(btok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=160, pad_token_id=btok.pad_token_id,
    )  # fmt: skip
    out = {}
    for name, model, tok in (("gpt", GPT2LMHeadModel(gcfg), gtok), ("bert", BertForMaskedLM(bcfg), btok)):
        path = tmp_path_factory.mktemp(f"long-{name}")
        model.eval().save_pretrained(path)
        tok.save_pretrained(path)
        out[name] = probe.load(str(path))
    return out


def test_every_figure_has_data_for_both_families(tiny):
    run = full_run(tiny, TEXT[tiny.kind])
    figs = all_figures(run.plot)
    assert len(figs) == 10
    for name, fig in figs.items():
        assert isinstance(fig, go.Figure), name
        assert fig.data and has_data(fig), name
        assert fig.layout.title.text, name


@pytest.mark.parametrize("family", ["gpt", "bert"])
def test_figures_at_100_plus_tokens(long_models, family):
    model = long_models[family]
    text = LONG_TEXT.replace(" not ", " [MASK] ", 1) if model.kind == "masked" else LONG_TEXT
    run = full_run(model, text)
    n = run.lengths[0]
    assert n >= 100
    figs = all_figures(run.plot)
    for name, fig in figs.items():
        assert fig.data and has_data(fig), name
        fig.to_json()  # serialisable
    # single heads keep every weight; the grid is pooled; heatmaps grow (and scroll) rather than cram
    assert np.asarray(figs["attention"].data[0].z).shape == (n, n)
    grid = [np.asarray(t.z) for t in figs["attention_grid"].data]
    assert len(grid) == model.n_layers * model.n_heads and all(z.shape == (40, 40) for z in grid)
    assert np.allclose(grid[0].sum(-1), 1, atol=2e-2)  # pooled rows still sum to 1
    assert "pooled" in figs["attention_grid"].layout.title.text
    assert np.asarray(figs["logit_lens"].data[0].z).shape == (model.n_layers + 1, n)
    assert figs["logit_lens"].layout.width >= 30 * n
    assert len(figs["tokens"].data[0].z) >= 100 / 12


def test_lens_table_matches_per_position_logit_lens(tiny):
    run = tiny.run(TEXT[tiny.kind])
    table = lens_table(run, k=2)
    for pos in (0, run.lengths[0] - 1):
        direct = run.logit_lens(k=2, position=pos)
        mine = table[table["position"] == pos].sort_values(["layer", "rank"])
        assert mine["top_id"].tolist() == direct["token_id"].tolist()
        np.testing.assert_allclose(mine["prob"].to_numpy(), direct["prob"].to_numpy(), rtol=1e-4)


def test_lens_table_next_token_rank(tiny_gpt):
    run = tiny_gpt.run(TEXT["causal"])
    table = lens_table(run, k=1)
    last = table[(table["layer"] == tiny_gpt.n_layers)]
    logits = run["logits"][0]
    ids = run.ids[0]
    for pos in (0, 3):
        probs = logits[pos].softmax(-1)
        expected = int((probs > probs[ids[pos + 1]]).sum()) + 1
        assert int(last[last["position"] == pos]["next_rank"].iloc[0]) == expected
    assert np.isnan(last["next_rank"].iloc[-1])


def test_entropy_is_zero_for_the_first_causal_query_and_bounded(tiny_gpt, tiny_bert):
    run = tiny_gpt.run(TEXT["causal"])
    att = run.attention()[:, 0].double().numpy()  # [L, H, q, k]
    manual = -(att * np.log2(np.clip(att, 1e-12, None))).sum(-1).mean(-1)
    np.testing.assert_allclose(entropy(run), manual, rtol=1e-6)
    first = -(att[..., 0, :] * np.log2(np.clip(att[..., 0, :], 1e-12, None))).sum(-1)
    np.testing.assert_allclose(first, 0, atol=1e-6)  # position 0 can only attend to itself
    brun = tiny_bert.run(TEXT["masked"])
    assert (entropy(brun) <= np.log2(brun.lengths[0]) + 1e-6).all()


def test_pool_keeps_rows_normalised_and_spans_cover_text():
    rng = np.random.default_rng(0)
    att = rng.random((2, 3, 101, 101))
    att /= att.sum(-1, keepdims=True)
    pooled, spans = pool(att, 10)
    assert pooled.shape == (2, 3, 10, 10)
    np.testing.assert_allclose(pooled.sum(-1), 1)
    assert spans[0][0] == 0 and spans[-1][1] == 100
    assert all(b + 1 == c for (_, b), (c, _) in zip(spans, spans[1:]))
    same, _ = pool(att, 200)
    assert same is att


def test_hostile_tokens_are_escaped_in_plotly_labels(tiny_bert):
    run = tiny_bert.run(f"The robot must [MASK] hurt {HOSTILE} the human.")
    figs = {"attention": run.plot.attention(0, 0), "norms": run.plot.residual_norms()}
    for fig in figs.values():
        labels = list(fig.layout.xaxis.ticktext) + [str(c) for c in (fig.data[0].x or [])]
        assert not any("<" in t or ">" in t for t in labels), labels
        assert any("&lt;" in t for t in labels)
    tokens = run.plot.tokens()
    cells = [c for row in tokens.data[0].text for c in row if c]
    assert not any("<img" in c for c in cells)
    assert all(c.count("<br>") == 1 for c in cells)  # our own markup stays, token markup does not
    assert label(HOSTILE, None) == "&lt;img·src=x·onerror=alert(1)&gt;"


def test_visible_marks_whitespace_and_control_characters():
    assert visible(" the") == "·the"
    assert visible("\n") == "↵"
    assert visible("") == "∅"
    assert visible("a\x07") == "a\\x07"
    assert label("x" * 30, 10) == "x" * 9 + "…"


def test_neurons_need_mlp_hook_post(tiny_gpt):
    run = tiny_gpt.run(TEXT["causal"])  # default hooks: no MLP activations
    with pytest.raises(HookNameError, match="mlp.hook_post"):
        run.plot.neurons(layer=1)
    full = full_run(tiny_gpt, TEXT["causal"])
    fig = full.plot.neurons(layer=1, k=5)
    z = np.asarray(fig.data[0].z)
    post = full["blocks.1.mlp.hook_post"][0].numpy()
    assert z.shape == (5, full.lengths[0])
    np.testing.assert_allclose(z.max(), post.max(), atol=1e-3)  # the strongest neuron is on top


def test_bad_layer_head_and_index_raise_input_errors(tiny_gpt):
    run = tiny_gpt.run(TEXT["causal"])
    with pytest.raises(InputError, match="layer 7"):
        run.plot.attention(7, 0)
    with pytest.raises(InputError, match="head 9"):
        run.plot.attention(0, 9)
    with pytest.raises(InputError, match="index 3"):
        RunPlots(run, index=3)


def test_predictions_bars_follow_the_frame(tiny_gpt):
    run = tiny_gpt.run(TEXT["causal"])
    frame = run.predictions(k=6)
    fig = run.plot.predictions(k=6)
    np.testing.assert_allclose(np.asarray(fig.data[0].x), frame["prob"].to_numpy(), rtol=1e-4)
    assert list(fig.layout.yaxis.ticktext) == [label(t, 18) for t in frame["token"]]
    assert fig.layout.yaxis.autorange == "reversed"  # rank 1 on top


def test_generation_figure_marks_the_chosen_tokens(tiny_gpt):
    _, steps = tiny_gpt.generate("The robot", max_new_tokens=3, k=4)
    fig = generation(steps)
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (4, 3)
    text = np.asarray(fig.data[0].text, dtype=object)
    assert sum("<b>" in t for t in text.ravel()) == 3  # one chosen token per step


def test_head_view_steps_carry_each_heads_pattern(tiny_gpt):
    run = tiny_gpt.run(TEXT["causal"])
    fig = run.plot.attention_heads()
    assert len(fig.layout.sliders) == tiny_gpt.n_layers
    assert [s.visible for s in fig.layout.sliders] == [True] + [False] * (tiny_gpt.n_layers - 1)
    step = fig.layout.sliders[1].steps[2]
    np.testing.assert_allclose(step.args[0]["z"][0], run.attention()[1, 0, 2].numpy(), atol=1e-3)
    button = fig.layout.updatemenus[0].buttons[1]
    assert button.args[1]["sliders[1].visible"] is True and button.args[1]["sliders[0].visible"] is False


def test_importing_probe_and_its_views_does_not_import_plotly():
    code = (
        "import sys, probe, probe.viz, probe.pages, probe.analysis.compare, probe.cards, probe.cli; "
        "assert 'plotly' not in sys.modules, 'plotly imported'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr


def test_residual_norms_clip_the_sink_so_the_rest_shows(tiny_gpt):
    run = tiny_gpt.run(
        "The robot must not hurt the human.", hooks=["blocks.*.hook_resid_pre", "blocks.*.hook_resid_post"]
    )
    name = f"blocks.{tiny_gpt.n_layers - 1}.hook_resid_post"
    run.cache[name] = run.cache[name].clone()
    run.cache[name][0, 0] *= 1000  # a sink: the start token's norm far above the rest
    fig = run.plot.residual_norms()
    heat = fig.data[0]
    z = np.asarray(heat.z, dtype=float)
    assert heat.zmax is not None and heat.zmax == pytest.approx(z[:, 1:].max(), abs=1e-3)  # z is rounded
    assert z[:, 0].max() > heat.zmax and "sink position(s) above" in fig.layout.title.text
    plain = tiny_gpt.run("The robot must not hurt the human.").plot.residual_norms()
    assert plain.data[0].zmax is None or "clipped" in plain.layout.title.text


def test_compact_lists_write_exact_zeros_and_ones_as_ints_and_keep_the_rest():
    import json

    from probe.viz._style import compact_list

    z = np.array([[1.0, 0.0], [0.12345, 0.87655]], dtype=np.float32)
    out = compact_list(z, 3)
    assert json.dumps(out) == "[[1, 0], [0.123, 0.877]]"
    np.testing.assert_allclose(np.array(out, dtype=float), z, atol=5e-4)


def test_the_report_grid_pools_many_heads_more_and_never_below_8(tiny_gpt):
    from types import SimpleNamespace

    from probe.pages.build import grid_tokens

    assert grid_tokens(tiny_gpt) == 40  # 8 panels: every token up to 40
    assert grid_tokens(SimpleNamespace(n_layers=30, n_heads=9)) == 14  # SmolLM2's 270 panels
    assert grid_tokens(SimpleNamespace(n_layers=6, n_heads=12), long_text=True) == 28
    assert grid_tokens(SimpleNamespace(n_layers=80, n_heads=64)) == 8
