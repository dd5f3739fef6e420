"""The Llama-family adapter (Llama, Qwen2, Mistral): every hook equals HF's and TransformerLens's bridge's."""

from __future__ import annotations

import pytest
import torch

import probe

TOL = dict(atol=1e-5, rtol=1e-4)
TEXTS = ["The robot must not hurt the human.", "A cat sat."]  # right-padded batch


def test_names_follow_the_bridge_and_do_not_pretend(llama_family):
    model, _ = llama_family
    names = model.hook_names
    assert "hook_pos_embed" not in names  # rotary adds nothing to the residual stream
    for hook in ("attn.hook_rot_q", "attn.hook_rot_k", "mlp.hook_pre_linear", "hook_resid_mid"):
        assert f"blocks.1.{hook}" in names
    assert names[-2:] == ["ln_final.hook_normalized", "logits"]


def test_kv_heads_keep_their_count(llama_family):
    model, _ = llama_family
    run = model.run(
        TEXTS[0],
        hooks=[
            "blocks.0.attn.hook_q",
            "blocks.0.attn.hook_k",
            "blocks.0.attn.hook_v",
            "blocks.0.attn.hook_z",
            "blocks.0.attn.hook_pattern",
        ],
    )
    pos = run.ids.shape[1]
    assert run["blocks.0.attn.hook_q"].shape == (1, pos, 4, model.d_head)
    assert run["blocks.0.attn.hook_k"].shape == run["blocks.0.attn.hook_v"].shape == (1, pos, 2, model.d_head)
    assert run["blocks.0.attn.hook_z"].shape == (1, pos, 4, model.d_head)
    assert run["blocks.0.attn.hook_pattern"].shape == (1, 4, pos, pos)


def test_padded_batch_equals_hf(llama_family):
    model, _ = llama_family
    run = model.run(TEXTS, hooks=model.hook_names)
    real = run.mask.bool()
    model.hf.set_attn_implementation("eager")
    try:
        with torch.inference_mode():
            out = model.hf(
                input_ids=run.ids, attention_mask=run.mask, output_hidden_states=True, output_attentions=True
            )
    finally:
        model.hf.set_attn_implementation("sdpa")
    stream = run.residual_stream()
    for i in range(model.n_layers):
        torch.testing.assert_close(stream[i][real], out.hidden_states[i][real], **TOL)
    # HF's last hidden state has the final RMSNorm applied; ours is the raw last block's output
    torch.testing.assert_close(run["ln_final.hook_normalized"][real], out.hidden_states[-1][real], **TOL)
    torch.testing.assert_close(model.hf.model.norm(stream[-1])[real], out.hidden_states[-1][real], **TOL)
    for i, pattern in enumerate(out.attentions):
        ours = run[f"blocks.{i}.attn.hook_pattern"]
        torch.testing.assert_close(ours.transpose(1, 2)[real], pattern.transpose(1, 2)[real], **TOL)
    torch.testing.assert_close(run["logits"][real], out.logits[real], **TOL)


def test_every_hook_equals_transformerlens_bridge(llama_family):
    pytest.importorskip("transformer_lens")
    from transformer_lens.model_bridge import TransformerBridge

    model, path = llama_family
    twin = probe.load(path)  # the bridge rewires the HF model it is given: give it a copy of the same weights
    bridge = TransformerBridge.boot_transformers(path, hf_model=twin.hf, tokenizer=twin.tokenizer)
    for text in TEXTS:
        run = model.run(text, hooks=model.hook_names)
        logits, cache = bridge.run_with_cache(run.ids)
        assert set(model.hook_names) - {"logits"} <= set(cache.keys())
        for name in model.hook_names:
            theirs = logits if name == "logits" else cache[name]
            torch.testing.assert_close(run[name], theirs, **TOL, msg=lambda m, n=name: f"{n}: {m}")


def test_rotary_q_is_the_rotated_q(llama_family):
    """hook_rot_q is hook_q rotated by the model's own cos/sin at each position; position 0 is unrotated."""
    model, _ = llama_family
    run = model.run(TEXTS[0], hooks=["blocks.1.attn.hook_q", "blocks.1.attn.hook_rot_q", "blocks.1.attn.hook_rot_k"])
    q, rot = run["blocks.1.attn.hook_q"], run["blocks.1.attn.hook_rot_q"]
    torch.testing.assert_close(rot[:, 0], q[:, 0], **TOL)  # cos(0) = 1, sin(0) = 0
    assert not torch.allclose(rot[:, 1:], q[:, 1:])
    torch.testing.assert_close(rot.norm(dim=-1), q.norm(dim=-1), **TOL)  # a rotation keeps lengths


def test_logit_lens_uses_the_final_norm(llama_family):
    model, _ = llama_family
    run = model.run(TEXTS[0])
    lens = run.logit_lens(k=1)
    top = lens[lens.layer == model.n_layers]
    assert int(top["token_id"].iloc[0]) == int(run["logits"][0, -1].argmax())
    with torch.inference_mode():
        expected = model.hf.lm_head(model.hf.model.norm(run.resid(1)[0, -1])).softmax(-1).max()
    assert float(lens[lens.layer == 1]["prob"].iloc[0]) == pytest.approx(float(expected), rel=1e-5)


def test_verify_passes_for_each_family(llama_family):
    model, _ = llama_family
    table = probe.verify(model)
    assert table.attrs["ok"], table[~table["ok"]]
    assert {"check", "max_abs_diff", "tolerance", "ok"} == set(table.columns)
    assert any(c.startswith("attentions[") for c in table["check"])


def test_rotary_hooks_are_read_only_and_q_patches_work(llama_family):
    model, _ = llama_family
    with pytest.raises(probe.InputError, match="read-only.*attn.hook_q"):
        model.run(TEXTS[0], patch={"blocks.0.attn.hook_rot_q": lambda v, ctx: v})
    clean = model.run(TEXTS[0], hooks=["logits"])["logits"]
    same = model.run(TEXTS[0], hooks=["logits"], patch={"blocks.0.attn.hook_q": lambda v, ctx: v})["logits"]
    torch.testing.assert_close(same, clean)
    zeroed = model.run(
        TEXTS[0], hooks=["blocks.0.attn.hook_rot_q"], patch={"blocks.0.attn.hook_q": lambda v, ctx: v * 0}
    )
    assert zeroed["blocks.0.attn.hook_rot_q"].abs().max() == 0  # the rotary hook sees the patched q
