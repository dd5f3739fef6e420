"""Model.run and Run: shapes, batching and padding, lens, frames, files, and every bad input."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from conftest import sentence

import probe
from probe.errors import InputError, LoadError, NoHeadError, ProbeError

TOL = dict(atol=1e-5, rtol=1e-4)


def test_model_attributes(tiny_gpt, tiny_bert):
    assert (tiny_gpt.kind, tiny_bert.kind) == ("causal", "masked")
    for m in (tiny_gpt, tiny_bert):
        assert (m.n_layers, m.n_heads, m.d_model, m.d_mlp) == (2, 4, 32, 64)
        assert m.hook_names[-1] == "logits"
        assert m.hook_names.index("blocks.0.hook_resid_pre") < m.hook_names.index("blocks.1.hook_resid_pre")
        assert isinstance(m.tokenize("The robot"), list)
    assert tiny_bert.tokenize("The robot")[0] == "[CLS]"


def test_shapes(tiny):
    run = tiny.run(sentence(tiny), hooks=tiny.hook_names)
    b, p, h = 1, run.ids.shape[1], tiny.n_heads
    assert run["blocks.0.hook_resid_post"].shape == (b, p, tiny.d_model)
    assert run["blocks.1.attn.hook_pattern"].shape == (b, h, p, p)
    assert run["blocks.0.attn.hook_q"].shape == (b, p, h, tiny.d_head)
    assert run["blocks.0.mlp.hook_post"].shape == (b, p, tiny.d_mlp)
    assert run["logits"].shape == (b, p, tiny.vocab_size)
    assert run.attention().shape == (tiny.n_layers, b, h, p, p)
    assert len(run.tokens) == p and isinstance(run.tokens[0], str)


def test_batch_equals_single_and_padding_never_leaks(tiny):
    tail = " [MASK]." if tiny.kind == "masked" else " again."  # a causal model refuses a literal [MASK]
    texts = [sentence(tiny), "The cat sat on the mat and the dog sat on the log" + tail]
    batch = tiny.run(texts, hooks=tiny.hook_names, batch_size=2)
    chunked = tiny.run(texts, hooks=tiny.hook_names, batch_size=1)
    assert batch.lengths[0] < batch.lengths[1]  # the first text is padded
    for i, text in enumerate(texts):
        single = tiny.run(text, hooks=tiny.hook_names)
        n = batch.lengths[i]
        for name in ["blocks.1.hook_resid_post", "logits", "blocks.0.mlp.hook_pre"]:
            torch.testing.assert_close(batch[name][i, :n], single[name][0], **TOL)
            torch.testing.assert_close(chunked[name][i, :n], single[name][0], **TOL)
        torch.testing.assert_close(
            batch["blocks.0.attn.hook_pattern"][i, :, :n, :n], single["blocks.0.attn.hook_pattern"][0], **TOL
        )
        pd.testing.assert_frame_equal(batch.predictions(k=5, index=i), single.predictions(k=5), atol=1e-5)
        frame = batch.to_frame("blocks.0.hook_resid_post", index=i)
        assert frame["position"].max() == n - 1  # pads dropped
        assert batch.tokens[i] == single.tokens


def test_token_id_input(tiny_gpt):
    ids, _ = tiny_gpt.encode(["The robot must not"])
    by_ids = tiny_gpt.run(ids, hooks=["logits"])
    by_text = tiny_gpt.run("The robot must not", hooks=["logits"])
    torch.testing.assert_close(by_ids["logits"], by_text["logits"])


def test_logit_lens_last_layer_is_predictions(tiny):
    run = tiny.run(sentence(tiny))
    lens = run.logit_lens(k=5)
    preds = run.predictions(k=5)
    top = lens[lens.layer == tiny.n_layers].reset_index(drop=True)
    assert top["token_id"].tolist() == preds["token_id"].tolist()
    assert top["prob"].tolist() == preds["prob"].tolist()  # exactly, not approximately
    assert sorted(lens.layer.unique()) == list(range(tiny.n_layers + 1))


def test_logit_lens_layer_zero_is_head_on_embeddings(tiny):
    run = tiny.run(sentence(tiny))
    pos = run.position_of(None)
    with torch.inference_mode():
        expected = tiny.adapter.head(run.resid(0)[0, pos]).softmax(-1).topk(3)
    lens = run.logit_lens(k=3)
    assert lens[lens.layer == 0]["token_id"].tolist() == expected.indices.tolist()


def test_logit_lens_target(tiny):
    run = tiny.run(sentence(tiny))
    lens = run.logit_lens(k=3, target="human")
    last = lens[lens.layer == tiny.n_layers].iloc[0]
    probs = run.logits_at().softmax(-1)
    tid = lens.attrs["target_id"]
    assert last.target_prob == pytest.approx(float(probs[tid]))
    if tiny.kind == "masked":  # special tokens are never fillers: ranked among the other tokens only
        probs[tiny.tokenizer.all_special_ids] = 0
    assert last.target_rank == int((probs > probs[tid]).sum()) + 1


def test_predictions_default_positions(tiny_gpt, tiny_bert):
    gpt = tiny_gpt.run(["The robot", "The robot must not hurt"])
    assert gpt.position_of(None, index=0) == gpt.lengths[0] - 1  # last *real* token, not a pad
    bert = tiny_bert.run("The robot must [MASK] hurt the human.")
    assert bert.token_strs()[bert.position_of(None)].strip() == "[MASK]"


def test_to_frame_is_tidy(tiny):
    run = tiny.run(sentence(tiny), hooks=tiny.hook_names)
    p = run.lengths[0]
    pat = run.to_frame("blocks.0.attn.hook_pattern")
    assert list(pat.columns) == ["position", "token", "head", "key_position", "key_token", "value"]
    assert len(pat) == tiny.n_heads * p * p
    q = run.to_frame("blocks.0.attn.hook_q")
    assert list(q.columns) == ["position", "token", "head", "dim", "value"]
    mlp = run.to_frame("blocks.0.mlp.hook_post")
    assert list(mlp.columns) == ["position", "token", "neuron", "value"]
    row = mlp[(mlp.position == 1) & (mlp.neuron == 3)].value.item()
    assert row == pytest.approx(run["blocks.0.mlp.hook_post"][0, 1, 3].item())


def test_to_parquet_roundtrip(tiny, tmp_path):
    texts = [sentence(tiny), "The cat sat on the mat" + (" [MASK]." if tiny.kind == "masked" else " again.")]
    run = tiny.run(texts, hooks=["blocks.*.hook_resid_post", "blocks.0.attn.hook_pattern"])
    path = run.to_parquet(tmp_path / "acts.parquet")
    table = pd.read_parquet(path)
    assert len(table) == sum(run.lengths)
    row = table[(table.text_index == 1) & (table.position == 2)].iloc[0]
    torch.testing.assert_close(torch.tensor(row["blocks.1.hook_resid_post"]), run["blocks.1.hook_resid_post"][1, 2])


def test_generate_greedy_follows_argmax(tiny_gpt):
    text, steps = tiny_gpt.generate("The robot", max_new_tokens=3, k=4)
    assert steps.step.nunique() == 3 and steps.groupby("step").chosen.sum().eq(1).all()
    first = steps[steps.step == 0]
    assert first[first.chosen].token_id.item() == first.sort_values("rank").token_id.iloc[0]
    assert text.startswith("The robot")


# -- bad input: one clear ProbeError each ------------------------------------------------------


def test_masked_without_mask_token(tiny_bert):
    with pytest.raises(InputError, match=r"no \[MASK\] token"):
        tiny_bert.run("The robot must not hurt the human.").predictions()


def test_encoder_has_no_head(minilm):
    run = minilm.run("a sentence")
    with pytest.raises(NoHeadError, match="no language-model head"):
        run.predictions()
    with pytest.raises(NoHeadError):
        run.logit_lens()


def test_too_long_text(tiny_gpt):
    long = "the cat sat on the mat " * 40
    with pytest.raises(InputError, match="truncate=True"):
        tiny_gpt.run(long)
    assert tiny_gpt.run(long, truncate=True).lengths == [tiny_gpt.n_ctx]


@pytest.mark.parametrize("bad", ["", [], [1, 2]])
def test_bad_inputs(tiny_gpt, bad):
    with pytest.raises(InputError):
        tiny_gpt.run(bad)


def test_bad_position_and_target(tiny_gpt):
    run = tiny_gpt.run("The robot must")
    with pytest.raises(InputError, match="out of range"):
        run.predictions(position=99)
    with pytest.raises(InputError, match="out of range"):
        run.predictions(index=3)
    with pytest.raises(InputError, match="outside"):
        run.logit_lens(target=10**6)


def test_generate_on_masked_model(tiny_bert):
    with pytest.raises(InputError, match="causal"):
        tiny_bert.generate("The robot")


def test_load_errors(tmp_path, tiny_gpt_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LoadError, match="hub is offline.*bundled"):
        probe.load("surely-not-a-cached-model-id")
    with pytest.raises(LoadError, match="hub is offline"):  # a dotted hub id is a hub id, not a path
        probe.load("someorg/model-0.5B")
    with pytest.raises(LoadError, match="no config.json"):
        probe.load(tmp_path)
    # a pickle-only checkpoint is refused unless allowed
    import shutil

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_gpt_path, pickled)
    model = probe.load(tiny_gpt_path).hf
    (pickled / "model.safetensors").unlink()
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(LoadError, match="pickle"):
        probe.load(pickled)
    assert probe.load(pickled, allow_pickle=True).kind == "causal"


def test_errors_are_one_line(tiny_gpt):
    for call in (lambda: tiny_gpt.run("x", hooks=["nope"]), lambda: probe.load("/no/such/dir")):
        with pytest.raises(ProbeError) as info:
            call()
        assert "\n" not in str(info.value)


def test_a_causal_model_refuses_a_literal_mask_and_points_to_compare(tiny_gpt_path):
    gpt = probe.load(tiny_gpt_path)
    for call in (lambda: gpt.run("The robot must [MASK] hurt"), lambda: gpt.generate("A [MASK] is", max_new_tokens=1)):
        with pytest.raises(InputError, match=r"causal LM: it would read \[MASK\].*probe\.compare"):
            call()
    gpt.literal_mask = True  # the opt-in: read it as text
    assert "[MASK]" in "".join(gpt.run("The robot must [MASK] hurt", hooks=["logits"]).token_strs())
