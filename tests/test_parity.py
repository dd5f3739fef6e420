"""Every number probe shows equals what the model computes: HF's own outputs and TransformerLens's bridge."""

from __future__ import annotations

import pytest
import torch

TEXT = {"causal": "The robot must not hurt the human.", "masked": "The robot must [MASK] hurt the human."}
TOL = dict(atol=1e-5, rtol=1e-4)


def text_for(model):
    return TEXT.get(model.kind, TEXT["causal"])


def hf_outputs(model, run):
    """HF's own forward with the eager kernel (the one that returns attention weights)."""
    model.hf.set_attn_implementation("eager")
    try:
        with torch.inference_mode():
            kwargs = model.adapter.body_inputs(run.ids, run.mask)
            return model.hf(**kwargs, output_hidden_states=True, output_attentions=True)
    finally:
        model.hf.set_attn_implementation("sdpa")


def test_residual_stream_and_attention_equal_hf(tiny):
    run = tiny.run(text_for(tiny))
    out = hf_outputs(tiny, run)
    stream = run.residual_stream()
    assert stream.shape == (tiny.n_layers + 1, 1, run.ids.shape[1], tiny.d_model)
    last = len(out.hidden_states) - 1
    for i, hidden in enumerate(out.hidden_states):
        if i == last and tiny.adapter.family == "gpt2":
            # HF applies ln_f to GPT-2's last hidden state; ours is the raw block output
            torch.testing.assert_close(tiny.hf.transformer.ln_f(stream[i]), hidden, **TOL)
        else:
            torch.testing.assert_close(stream[i], hidden, **TOL)
    torch.testing.assert_close(run.attention(), torch.stack(out.attentions), **TOL)
    torch.testing.assert_close(run["logits"], out.logits, **TOL)


def test_predictions_are_hf_softmax(tiny):
    run = tiny.run(text_for(tiny))
    pos = run.position_of(None)
    probs = hf_outputs(tiny, run).logits[0, pos].softmax(-1)
    preds = run.predictions(k=5)
    expected = probs.topk(5)
    assert preds["token_id"].tolist() == expected.indices.tolist()
    torch.testing.assert_close(torch.tensor(preds["prob"].to_numpy()), expected.values, **TOL)
    assert preds["rank"].tolist() == [1, 2, 3, 4, 5]


def _bridge(model, path):
    pytest.importorskip("transformer_lens")
    from transformer_lens.model_bridge import TransformerBridge

    # a fresh copy of the weights: booting the bridge changes the HF model it wraps, which would leak into
    # every later test of the session-wide model
    hf = type(model.hf).from_pretrained(path).eval()
    return TransformerBridge.boot_transformers(path, hf_model=hf, tokenizer=model.tokenizer)


@pytest.mark.parametrize("family", ["gpt", "bert"])
def test_every_hook_equals_transformerlens_bridge(family, request):
    model = request.getfixturevalue(f"tiny_{family}")
    path = request.getfixturevalue(f"tiny_{family}_path")
    run = model.run(text_for(model), hooks=model.hook_names)
    bridge = _bridge(model, path)
    kwargs = {"attention_mask": run.mask} if family == "bert" else {}
    logits, cache = bridge.run_with_cache(run.ids, **kwargs)
    checked = 0
    for name in model.hook_names:
        theirs = logits if name == "logits" else cache[name]
        torch.testing.assert_close(run[name], theirs, **TOL, msg=lambda m, n=name: f"{n}: {m}")
        checked += 1
    assert checked == len(model.hook_names)
    # probe's own names are TransformerLens's: every probe hook exists in the bridge's cache
    assert set(model.hook_names) - {"logits"} <= set(cache.keys())


def test_selected_hooks_equal_full_capture(tiny):
    """Early exit and the sdpa kernel must not change a value: one hook alone equals it in a full run."""
    text = text_for(tiny)
    full = tiny.run(text, hooks=tiny.hook_names)
    for name in ["blocks.0.hook_resid_post", "blocks.0.mlp.hook_post", "blocks.1.attn.hook_z", "hook_embed"]:
        alone = tiny.run(text, hooks=[name])
        assert alone.keys() == [name]
        torch.testing.assert_close(alone[name], full[name], **TOL)


def test_bert_parts_add_up(tiny_bert):
    """The bridge-named BERT hooks and the lower-level parts are consistent with the post-LN block."""
    run = tiny_bert.run(TEXT["masked"], hooks=tiny_bert.hook_names)
    block = tiny_bert.hf.bert.encoder.layer[0]
    pre, o_out = run["blocks.0.hook_resid_pre"], run["blocks.0.attn.o.hook_out"]
    torch.testing.assert_close(run["blocks.0.ln1.hook_in"], pre + o_out, **TOL)
    torch.testing.assert_close(run["blocks.0.hook_attn_out"], block.attention.output.LayerNorm(pre + o_out), **TOL)
    torch.testing.assert_close(
        run["blocks.0.hook_resid_mid"], run["blocks.0.hook_attn_out"] + run["blocks.0.hook_mlp_out"], **TOL
    )


def test_real_pretrained_encoder_matches_hf(minilm):
    """Real weights (all-MiniLM-L6-v2): hidden states and attentions equal HF's, every layer."""
    run = minilm.run(["probe shows what the model computes", "a second, longer sentence about robots and humans"])
    out = hf_outputs(minilm, run)
    for i, hidden in enumerate(out.hidden_states):
        real = run.mask.bool()
        torch.testing.assert_close(run.residual_stream()[i][real], hidden[real], **TOL)
    torch.testing.assert_close(run.attention(), torch.stack(out.attentions), **TOL)
    assert "logits" not in minilm.hook_names
