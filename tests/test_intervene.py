"""Interventions write through the adapters' Points: exact no-ops, TransformerLens parity, clear errors."""

from __future__ import annotations

import copy

import pytest
import torch

import probe
from probe.errors import InputError

TEXT = {"causal": "The robot must not hurt the", "masked": "The robot must [MASK] hurt the human."}
CORRUPT = {"causal": "The human must not hurt the", "masked": "The human must [MASK] hurt the human."}
TOL = dict(atol=1e-5, rtol=1e-4)


def test_patching_the_clean_cache_into_the_clean_run_changes_nothing(tiny):
    """Every hook, head splits and the pattern included: bit-for-bit the same run."""
    text = TEXT[tiny.kind]
    full = tiny.run(text, hooks=tiny.hook_names)
    for name in tiny.hook_names:
        again = tiny.run(text, hooks=tiny.hook_names, patch={name: full[name]})
        for other in tiny.hook_names:
            assert torch.equal(again[other], full[other]), (name, other)


def test_resid_pre_0_from_corrupted_reproduces_corrupted_logits(tiny):
    clean, bad = TEXT[tiny.kind], CORRUPT[tiny.kind]
    corrupted = tiny.run(bad, hooks=["blocks.0.hook_resid_pre", "logits"])
    patched = tiny.run(clean, hooks=["logits"], patch={"blocks.0.hook_resid_pre": corrupted["blocks.0.hook_resid_pre"]})
    assert not torch.equal(tiny.run(clean, hooks=["logits"])["logits"], corrupted["logits"])
    assert torch.equal(patched["logits"], corrupted["logits"])


@pytest.mark.parametrize("family", ["gpt", "bert", "llama"])
def test_zero_ablating_a_head_equals_transformerlens(family, request):
    pytest.importorskip("transformer_lens")
    from transformer_lens.model_bridge import TransformerBridge

    model = request.getfixturevalue(f"tiny_{family}")
    path = request.getfixturevalue(f"tiny_{family}_path")
    layer, head = 1, 2
    ours = probe.ablate(model, TEXT[model.kind], heads=[(layer, head)], hooks=["logits"])
    # the bridge wraps the modules it is given: hand it a copy so the shared fixture stays a plain HF model
    bridge = TransformerBridge.boot_transformers(path, hf_model=copy.deepcopy(model.hf), tokenizer=model.tokenizer)

    def zero(z, hook):
        z[:, :, head] = 0.0
        return z

    kwargs = {"attention_mask": ours.mask} if family == "bert" else {}
    with torch.inference_mode():
        theirs = bridge.run_with_hooks(ours.ids, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", zero)], **kwargs)
        plain = bridge(ours.ids, **kwargs)
    assert (plain - theirs).abs().max() > 1e-3  # the ablation does something
    torch.testing.assert_close(ours["logits"], theirs, **TOL)


def test_ablate_mean_and_neurons(tiny_gpt):
    text = TEXT["causal"]
    run = probe.ablate(tiny_gpt, text, heads=[(0, 1)], neurons=[(1, 5)], how="mean", hooks=tiny_gpt.hook_names)
    clean = tiny_gpt.run(text, hooks=["blocks.0.attn.hook_z"])
    mean = clean["blocks.0.attn.hook_z"][0, 1:, 1].mean(0)  # over the text's tokens, not the start token
    torch.testing.assert_close(run["blocks.0.attn.hook_z"][0, :, 1], mean.expand(run.lengths[0], -1), **TOL)
    assert (
        torch.count_nonzero(
            probe.ablate(tiny_gpt, text, neurons=[(1, 5)], hooks=["blocks.1.mlp.hook_post"])["blocks.1.mlp.hook_post"][
                0, :, 5
            ]
        )
        == 0
    )


def test_steer_adds_the_vector_and_steers_generation(tiny_gpt):
    text = "The robot"
    vec = torch.randn(tiny_gpt.d_model)
    name = "blocks.1.hook_resid_pre"
    run = probe.steer(tiny_gpt, text, vec, layer=1, scale=3.0, hooks=[name], relative=False)
    base = tiny_gpt.run(text, hooks=[name])
    assert base.prepend_bos  # the start token is read first and never steered
    torch.testing.assert_close(run[name][:, 1:], base[name][:, 1:] + 3 * vec, **TOL)
    torch.testing.assert_close(run[name][:, 0], base[name][:, 0], **TOL)
    steps = []
    out, frame, runs = tiny_gpt.generate(
        text,
        max_new_tokens=3,
        hooks=["blocks.0.hook_resid_post"],
        patch={"blocks.0.hook_resid_post": lambda v, c: steps.append(c.step)},
    )
    assert steps == [0, 1, 2] and len(runs) == 3
    assert [r.ids.shape[1] for r in runs] == [runs[0].ids.shape[1] + i for i in range(3)]
    plain, _ = tiny_gpt.generate(text, max_new_tokens=8)
    steered, info = probe.steer(tiny_gpt, text, 50 * vec, layer=0, scale=50, relative=False, max_new_tokens=8)
    assert steered != plain and info.attrs["steer"]["relative"] is False


def test_relative_scale_is_a_share_of_the_residual_norm_without_the_sink(tiny_gpt):
    text, name = "The robot must not hurt the", "blocks.1.hook_resid_pre"
    vec = torch.randn(tiny_gpt.d_model) * 123.0  # the vector's own length does not matter
    base = tiny_gpt.run(text, hooks=[name])
    norm = base[name][0, 1:].float().norm(dim=-1).mean()  # the start token (position 0) left out
    run = probe.steer(tiny_gpt, text, vec, layer=1, scale=0.5, hooks=[name])
    added = (run[name][0, 1:] - base[name][0, 1:]).float()
    torch.testing.assert_close(
        added.norm(dim=-1), torch.full((added.shape[0],), 0.5 * float(norm)), atol=1e-3, rtol=1e-3
    )
    torch.testing.assert_close(added[0] / added[0].norm(), vec / vec.norm(), atol=1e-4, rtol=1e-4)
    _, steps = probe.steer(tiny_gpt, text, vec, layer=1, scale=0.5, max_new_tokens=2)
    assert steps.attrs["steer"]["residual_norm"] == pytest.approx(float(norm), rel=1e-4)


def test_steering_vector_and_mean_ablation_leave_the_start_token_out(tiny_gpt):
    from probe.analysis.intervene import steering_vector

    name = "blocks.1.hook_resid_pre"
    run = tiny_gpt.run([" love", " hate"], hooks=[name])
    expected = run[name][0, run.lengths[0] - 1] - run[name][1, run.lengths[1] - 1]
    torch.testing.assert_close(steering_vector(tiny_gpt, 1, " love", " hate"), expected.float())
    assert run.token_strs(0)[0] == "<|endoftext|>" and min(run.lengths) > 1  # the word's last token, not the sink
    text = "The robot must not hurt the"
    ref = tiny_gpt.run(text, hooks=["blocks.0.attn.hook_z"])
    mean = ref["blocks.0.attn.hook_z"][0, 1:, 2].float().mean(0)  # head 2's mean without the start token
    ablated = probe.ablate(tiny_gpt, text, heads=[(0, 2)], how="mean", hooks=["blocks.0.attn.hook_z"])
    torch.testing.assert_close(ablated["blocks.0.attn.hook_z"][0, 3, 2].float(), mean, atol=1e-5, rtol=1e-5)


def test_activation_patching_frame(tiny):
    clean, bad = TEXT[tiny.kind], CORRUPT[tiny.kind]
    frame = probe.patching(tiny, clean, bad, metric=("logit_diff", " the", " a"))
    n = len(tiny.tokenize(clean))
    assert list(frame.columns) == ["layer", "position", "token", "effect", "normalized_effect"]
    assert len(frame) == tiny.n_layers * n
    span = frame.attrs["clean_value"] - frame.attrs["corrupted_value"]
    changed = [i for i, (a, b) in enumerate(zip(tiny.tokenize(clean), tiny.tokenize(bad))) if a != b][0]
    # layer 0 at the changed token restores the clean run entirely; an unchanged token does nothing
    row = frame[(frame.layer == 0) & (frame.position == changed)].iloc[0]
    assert row.normalized_effect == pytest.approx(1.0, abs=1e-4) and row.effect == pytest.approx(span, abs=1e-4)
    assert frame[(frame.layer == 0) & (frame.position != changed)].effect.abs().max() < 1e-4
    heads = probe.patching(tiny, clean, bad, over="heads", metric=lambda logits: logits.max())
    assert list(heads.columns) == ["layer", "head", "effect", "normalized_effect"]
    assert len(heads) == tiny.n_layers * tiny.n_heads


# -- bad input: one test each -------------------------------------------------------------------


def test_ablate_bad_head(tiny_gpt):
    with pytest.raises(InputError, match="head 99 is out of range"):
        probe.ablate(tiny_gpt, "The robot", heads=[(0, 99)])


def test_patching_texts_of_different_length(tiny_gpt):
    with pytest.raises(InputError, match="same number of tokens"):
        probe.patching(tiny_gpt, "The robot must not", "A cat", metric=("logit_diff", " the", " a"))
