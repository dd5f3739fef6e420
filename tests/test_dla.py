"""probe.dla: direct logit attribution adds up to the model's own logit difference, equals TransformerLens 4's
``direct_logit_attribution`` on the same GPT-2 weights (non-trivial LayerNorms), splits a layer into heads
and neurons exactly, reads masked models at their [MASK] slot, and refuses bad input in one line."""

from __future__ import annotations

import copy
import io
import json

import pandas as pd
import pytest
import torch
from conftest import one_line_error

import probe
from probe.analysis.reading import read_text
from probe.cli import app
from probe.errors import InputError, NoHeadError

TEXT = "The robot must [MASK] hurt the human."


def adds_up(frame) -> float:
    return abs(frame["attribution"].sum() + frame.attrs["constant"] - frame.attrs["logit_diff"])


@pytest.fixture(scope="module")
def gpt_with_layernorms(tmp_path_factory):
    """A tiny GPT-2 whose LayerNorms have weights and biases far from 1 and 0 (random init has neither)."""
    from conftest import _save, _tokenizer, spread_norms
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1)
    tok = _tokenizer("gpt")
    cfg = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=4, n_inner=64)
    hf = spread_norms(GPT2LMHeadModel(cfg).eval(), biases=0.05)  # value and output biases: to {l}_attn_bias
    path = _save(hf, tok, tmp_path_factory.mktemp("gpt-ln"))
    return path, probe.load(path)


@pytest.mark.parametrize("unit", ["component", "head"])
def test_equals_transformerlens_direct_logit_attribution(gpt_with_layernorms, unit):
    pytest.importorskip("transformer_lens")
    from transformer_lens.model_bridge import TransformerBridge
    from transformer_lens.tools.analysis import direct_logit_attribution

    path, model = gpt_with_layernorms
    ours = probe.dla(model, "The robot must not hurt the", " human", contrast=" robot", unit=unit)
    bridge = TransformerBridge.boot_transformers(path, hf_model=copy.deepcopy(model.hf), tokenizer=model.tokenizer)
    bridge.enable_compatibility_mode()
    t, u = ours.attrs["target_id"], ours.attrs["contrast_id"]
    ids = read_text(model, "The robot must not hurt the").ids
    theirs = direct_logit_attribution(
        bridge, ids, answer_tokens=torch.tensor([t]), incorrect_tokens=torch.tensor([u]), unit=unit
    )
    values = dict(zip(theirs.labels, theirs.attribution.reshape(-1).tolist(), strict=True))
    mine = dict(zip(ours["component"], ours["attribution"], strict=True))
    shared = [label for label in values if label != "remainder"]
    assert shared and all(label in mine for label in shared)
    for label in shared:
        assert mine[label] == pytest.approx(values[label], abs=1e-4), label
    if unit == "head":  # TL's remainder is everything that is not a head: embeddings, MLPs, biases
        rest = ours[ours["head"].isna()]["attribution"].sum()
        assert rest == pytest.approx(values["remainder"], abs=1e-4)
        assert ours.set_index("component").loc["0_attn_bias", "attribution"] != 0


@pytest.mark.parametrize("unit", ["component", "layer", "head"])
def test_adds_up_to_the_models_own_logit_difference(tiny, unit):
    frame = probe.dla(tiny, TEXT, " not", contrast=" dog", unit=unit)
    run = tiny.run(read_text(tiny, TEXT).ids, hooks=["logits"])
    logits = run["logits"][0, frame.attrs["position"]]
    assert frame.attrs["logit_diff"] == pytest.approx(
        float(logits[frame.attrs["target_id"]] - logits[frame.attrs["contrast_id"]]), abs=1e-5
    )
    assert adds_up(frame) < 1e-4 and frame.attrs["error"] == pytest.approx(adds_up(frame), abs=1e-9)
    assert list(frame.columns) == ["component", "layer", "head", "neuron", "attribution"]
    alone = probe.dla(tiny, TEXT, " not", unit=unit)  # the target's own logit, no contrast
    assert adds_up(alone) < 1e-4 and alone.attrs["contrast"] is None


def test_heads_and_layers_split_the_components_exactly(tiny):
    parts = probe.dla(tiny, TEXT, " not", contrast=" dog").set_index("component")["attribution"]
    heads = probe.dla(tiny, TEXT, " not", contrast=" dog", unit="head")
    layers = probe.dla(tiny, TEXT, " not", contrast=" dog", unit="layer").set_index("component")["attribution"]
    for i in range(tiny.n_layers):
        in_layer = heads[(heads["layer"] == i) & ~heads["component"].str.endswith("mlp_out")]["attribution"].sum()
        assert in_layer == pytest.approx(parts[f"{i}_attn_out"], abs=1e-5)
        assert layers[f"L{i}"] == pytest.approx(parts[f"{i}_attn_out"] + parts[f"{i}_mlp_out"], abs=1e-5)
    assert set(heads.dropna(subset=["head"])["component"]) == {
        f"L{i}H{h}" for i in range(tiny.n_layers) for h in range(tiny.n_heads)
    }


def test_neurons_are_the_largest_and_all_of_them_make_the_mlp(tiny_gpt):
    k = tiny_gpt.d_mlp
    every = probe.dla(tiny_gpt, TEXT, " not", contrast=" dog", unit="neuron", k=k)
    parts = probe.dla(tiny_gpt, TEXT, " not", contrast=" dog").set_index("component")["attribution"]
    for i in range(tiny_gpt.n_layers):
        layer = every[every["layer"] == i]
        assert len(layer) == k and sorted(layer["neuron"]) == list(range(k))
        # random init leaves the MLP's output bias at zero, so its neurons are the whole MLP output
        assert layer["attribution"].sum() == pytest.approx(parts[f"{i}_mlp_out"], abs=1e-5)
    top = probe.dla(tiny_gpt, TEXT, " not", contrast=" dog", unit="neuron", k=3)
    first = every[every["layer"] == 0].assign(size=lambda f: f["attribution"].abs()).nlargest(3, "size")
    assert top[top["layer"] == 0]["neuron"].tolist() == first["neuron"].tolist()
    assert top.attrs["error"] is None and top["component"].str.match(r"L\d+N\d+").all()


def test_a_masked_model_is_read_at_its_mask_through_the_mlm_head(tiny_bert):
    frame = probe.dla(tiny_bert, TEXT, " not", contrast=" dog", unit="head")
    assert frame.attrs["token"] == tiny_bert.tokenizer.mask_token
    assert adds_up(frame) < 1e-4
    assert {"embed", "pos_embed", "token_type_embed"} <= set(frame["component"])


def test_a_reading_and_a_position_are_taken(tiny_gpt):
    reading = read_text(tiny_gpt, TEXT)
    assert (
        probe.dla(tiny_gpt, reading, " not")["attribution"].tolist()
        == probe.dla(tiny_gpt, TEXT, " not")["attribution"].tolist()
    )
    early = probe.dla(tiny_gpt, TEXT, " not", position=1)
    assert early.attrs["position"] == 1 and adds_up(early) < 1e-4
    assert probe.dla(tiny_gpt, TEXT, " not", position=-1).attrs["position"] == reading.position
    assert early.attrs["reading"]["tokens"] == reading.tokens


def test_no_weight_gradients_are_left_behind(tiny_gpt):
    probe.dla(tiny_gpt, TEXT, " not", unit="neuron")
    probe.dla(tiny_gpt, TEXT, " not", unit="head")
    assert all(p.grad is None for p in tiny_gpt.hf.parameters())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": " unbelievably"}, "tokens for"),
        ({"target": " not", "contrast": "not"}, "same token"),
        ({"target": " not", "contrast": " unbelievably"}, "contrast ' unbelievably' is"),
        ({"target": None}, "needs a target"),
        ({"target": " not", "unit": "block"}, "unit 'block' is not one of"),
        ({"target": " not", "position": 99}, "position 99 is out of range"),
        ({"target": " not", "k": 0}, "k"),
    ],
)
def test_bad_input_is_one_clear_line(tiny_gpt, kwargs, message):
    with pytest.raises(InputError, match=message) as err:
        probe.dla(tiny_gpt, TEXT, **kwargs)
    assert "\n" not in str(err.value)


def test_a_masked_text_needs_its_mask(tiny_bert):
    with pytest.raises(InputError, match="no \\[MASK\\]"):
        probe.dla(tiny_bert, "The robot must not hurt", " not")


def test_an_encoder_has_no_logits_to_attribute(minilm):
    with pytest.raises(NoHeadError, match="encoder"):
        probe.dla(minilm, TEXT, " not")


def test_cli_prints_the_frame_as_csv_and_json(runner, tiny_gpt_path, tiny_gpt):
    args = ["dla", "The robot must not hurt the", "-m", tiny_gpt_path, "-t", " human", "-c", " robot", "--unit", "head"]
    result = runner.invoke(app, [*args, "--csv"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert list(frame.columns) == ["component", "layer", "head", "neuron", "attribution"]
    assert frame["head"].notna().sum() == tiny_gpt.n_layers * tiny_gpt.n_heads
    payload = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    total = sum(r["attribution"] for r in payload["rows"]) + payload["constant"]
    assert total == pytest.approx(payload["logit_diff"], abs=1e-4) and payload["unit"] == "head"
    table = runner.invoke(app, args)
    assert table.exit_code == 0 and "L1H3" in table.stdout and "logit difference" in table.stdout


def test_cli_bad_input_is_one_line(runner, tiny_gpt_path):
    base = ["dla", "The robot must not hurt the", "-m", tiny_gpt_path, "-t", " human"]
    one_line_error(runner.invoke(app, [*base, "--unit", "block"]), "unit 'block' is not one of")
    one_line_error(runner.invoke(app, [*base, "-c", " human"]), "same token")
    one_line_error(runner.invoke(app, [*base, "--csv", "--json"]), "choose one of")


def test_the_view_draws_heads_components_and_neurons(tiny_gpt):
    import probe.viz

    heads = probe.viz.dla(probe.dla(tiny_gpt, TEXT, " not", contrast=" dog", unit="head"))
    grid = heads.data[0]
    assert grid.type == "heatmap" and len(grid.z) == tiny_gpt.n_layers and len(grid.z[0]) == tiny_gpt.n_heads + 2
    assert "logit difference" in heads.layout.title.text and "embed" in heads.layout.xaxis.title.text
    bars = probe.viz.dla(probe.dla(tiny_gpt, TEXT, " not", contrast=" dog")).data[0]
    assert bars.type == "bar" and list(bars.x)[:2] == ["embed", "pos_embed"]
    neurons = probe.viz.dla(probe.dla(tiny_gpt, TEXT, " not", unit="neuron", k=tiny_gpt.d_mlp)).data[0]
    assert len(neurons.x) == 30
    with pytest.raises(InputError, match="takes the frame probe.dla returns"):
        probe.viz.dla(pd.DataFrame({"attribution": [1.0]}))


def test_readme_snippet_runs_as_printed():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    code = next(block for block in readme.split("```python\n")[1:] if "probe.dla(" in block).split("```")[0]
    scope: dict = {"probe": probe, "gpt": probe.load("tiny-gpt")}
    exec(compile(code, "README.md", "exec"), scope)
    d = scope["d"]
    assert d["attribution"].sum() + d.attrs["constant"] == pytest.approx(d.attrs["logit_diff"], abs=1e-4)
