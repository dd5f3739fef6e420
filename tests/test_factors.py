"""Neuron factors (NMF) and linear CKA: properties that must hold, shapes, views, bad input."""

from __future__ import annotations

import pytest
import torch

import probe
from probe.analysis.factors import linear_cka
from probe.errors import InputError

pytest.importorskip("sklearn")

TEXTS = ["The robot must not hurt the human.", "The cat sat on the mat and the dog sat on the log."]


def test_factors_reconstruct_clipped_activations(tiny_gpt):
    frame = probe.factors(tiny_gpt, TEXTS, layers=[0, 1], n_components=3, top_k=4)
    n_tokens = sum(len(tiny_gpt.tokenize(t)) for t in TEXTS)
    assert list(frame.columns) == ["text_index", "position", "token", "factor", "weight"]
    assert len(frame) == 3 * n_tokens and (frame["weight"] >= 0).all()
    neurons = frame.neurons
    assert list(neurons.columns) == ["factor", "rank", "layer", "neuron", "loading"]
    assert len(neurons) == 3 * 4 and set(neurons["layer"]) <= {0, 1}
    # GELU goes below zero: some activations were clipped, and the frame says how much
    assert 0 < frame.attrs["clipped_fraction"] < 1
    run = tiny_gpt.run(TEXTS, hooks=["blocks.0.mlp.hook_post", "blocks.1.mlp.hook_post"])
    x = torch.cat([run[f"blocks.{la}.mlp.hook_post"][run.mask.bool()] for la in (0, 1)], -1).clamp(min=0)
    assert frame.attrs["reconstruction_error"] < 0.9 * float(x.norm())  # W H explains most of it
    top = frame.dominant()
    assert len(top) == n_tokens and top["share"].between(0, 1 + 1e-6).all()
    fig = frame.plot()
    assert len(fig.data) == 3 and all(t.type == "heatmap" for t in fig.data)


def test_factor_neurons_are_the_loadings_argmax(tiny_bert):
    frame = probe.factors(tiny_bert, TEXTS, layers=1, n_components=2, top_k=3)
    n = frame.neurons
    for _, part in n.groupby("factor"):
        assert part["loading"].is_monotonic_decreasing and part["rank"].tolist() == [1, 2, 3]


def test_cka_properties():
    torch.manual_seed(0)
    x = torch.randn(50, 16)
    y = torch.randn(50, 8)
    q, _ = torch.linalg.qr(torch.randn(16, 16))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x @ q * 3.7) == pytest.approx(1.0, abs=1e-6)  # orthogonal + isotropic scaling
    assert linear_cka(x @ q * 0.2, y) == pytest.approx(linear_cka(x, y), abs=1e-6)  # float32 matmul
    assert 0 <= linear_cka(x, y) < 0.5
    wide = torch.randn(10, 40)  # fewer items than dims: the Gram form
    assert linear_cka(wide, wide @ torch.linalg.qr(torch.randn(40, 40))[0]) == pytest.approx(1.0, abs=1e-9)


def test_cka_within_a_model_has_ones_on_the_diagonal(tiny):
    texts = [t.replace("not", tiny.tokenizer.mask_token or "not") for t in TEXTS]
    frame = probe.cka(tiny.run(texts))
    assert list(frame.columns) == ["layer_a", "layer_b", "cka"]
    assert len(frame) == (tiny.n_layers + 1) ** 2
    diag = frame[frame.layer_a == frame.layer_b]["cka"]
    assert diag.to_numpy() == pytest.approx(1.0, abs=1e-9)
    table = frame.pivot(index="layer_a", columns="layer_b", values="cka").to_numpy()
    assert table == pytest.approx(table.T, abs=1e-9)
    assert frame.attrs["aligned_by"] == "token"


def test_cka_across_tokenizers_aligns_words(tiny_gpt, tiny_bert):
    frame = probe.cka(tiny_gpt, tiny_bert, TEXTS)
    assert frame.attrs["aligned_by"] == "word"
    assert frame.attrs["n_items"] == sum(len(t.split()) for t in TEXTS)
    assert frame["cka"].between(0, 1 + 1e-9).all()
    from probe.viz import cka as view

    assert view(frame).data[0].type == "heatmap"
    # the same model against itself through the word path is 1 on the diagonal as well
    same = probe.cka(tiny_gpt.run(TEXTS), tiny_bert.run(TEXTS), texts=TEXTS)
    assert same["cka"].to_numpy() == pytest.approx(frame["cka"].to_numpy())


def test_cka_runs_that_tokenize_differently_need_texts(tiny_gpt, tiny_bert):
    with pytest.raises(InputError, match="texts="):
        probe.cka(tiny_gpt.run(TEXTS), tiny_bert.run(TEXTS))


def test_factors_too_many_components(tiny_gpt):
    with pytest.raises(InputError, match="exceeds"):
        probe.factors(tiny_gpt, "The robot", n_components=50)


def test_factors_bad_layer(tiny_gpt):
    with pytest.raises(InputError, match="layer 7 is out of range"):
        probe.factors(tiny_gpt, TEXTS, layers=[7])
