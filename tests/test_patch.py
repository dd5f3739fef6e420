"""Patching (probe.core.patch): ``patch={hook: tensor | fn}`` in ``run``, the writing hooks, per-chunk
slicing, PatchContext positions, and every bad patch as one PatchError."""

from __future__ import annotations

import pytest
import torch

import probe
from probe.errors import HookNameError, PatchError

TEXT = {"causal": "The robot must not hurt the", "masked": "The robot must [MASK] hurt the human."}
TOL = dict(atol=1e-5, rtol=1e-4)


def test_captured_values_are_the_patched_models(tiny_gpt):
    run = tiny_gpt.run(
        TEXT["causal"],
        hooks=["blocks.0.attn.hook_z", "blocks.0.hook_attn_out"],
        patch={"blocks.0.attn.hook_z": lambda z, ctx: torch.zeros_like(z)},
    )
    assert torch.count_nonzero(run["blocks.0.attn.hook_z"]) == 0
    bias = tiny_gpt.hf.transformer.h[0].attn.c_proj.bias  # W_O @ 0 + b_O
    torch.testing.assert_close(run["blocks.0.hook_attn_out"][0], bias.expand(run.lengths[0], -1), **TOL)


def test_a_pattern_patch_acts_through_v(tiny):
    """Attending only to itself, every token's z is its own v, in both families (GPT-2 re-runs attn)."""
    text = TEXT[tiny.kind]
    n = len(tiny.tokenize(text))
    eye = torch.eye(n).expand(1, tiny.n_heads, n, n)
    run = tiny.run(text, hooks=tiny.hook_names, patch={"blocks.1.attn.hook_pattern": eye})
    assert torch.equal(run["blocks.1.attn.hook_pattern"], eye)
    torch.testing.assert_close(run["blocks.1.attn.hook_z"], run["blocks.1.attn.hook_v"], **TOL)
    assert not torch.allclose(run["logits"], tiny.run(text, hooks=["logits"])["logits"])
    # captured alone, the patched pattern is still what comes back (GPT-2's re-run used to end the pass
    # with the re-run's own, unpatched, weights stored)
    alone = tiny.run(text, hooks=["blocks.1.attn.hook_pattern"], patch={"blocks.1.attn.hook_pattern": eye})
    assert torch.equal(alone["blocks.1.attn.hook_pattern"], eye)


def test_positions_index_real_tokens_under_right_padding(tiny_gpt):
    texts = ["The robot must not hurt the", "The cat"]
    seen = []

    def last(value, ctx):
        seen.append(ctx.positions(-1).tolist())
        value[torch.arange(len(value)), ctx.positions(-1)] = 0
        return value

    run = tiny_gpt.run(texts, hooks=["blocks.0.hook_resid_post"], patch={"blocks.0.hook_resid_post": last})
    lengths = run.lengths
    assert seen == [[lengths[0] - 1, lengths[1] - 1]]
    resid = run["blocks.0.hook_resid_post"]
    assert torch.count_nonzero(resid[1, lengths[1] - 1]) == 0 and torch.count_nonzero(resid[1, 0]) > 0


def test_patch_tensor_broadcasts_over_batch_and_splits_over_chunks(tiny_gpt):
    texts = ["The robot must not", "The cat sat on"]
    base = tiny_gpt.run(texts, hooks=["blocks.0.hook_resid_pre"])
    value = base["blocks.0.hook_resid_pre"]
    one = tiny_gpt.run(texts, hooks=["logits"], patch={"blocks.0.hook_resid_pre": value[0]})  # [pos, d_model]
    n = one.lengths[1]  # the second text's real tokens now carry the first text's stream
    torch.testing.assert_close(one["logits"][1, :n], one["logits"][0, :n], **TOL)
    per_text = tiny_gpt.run(texts, hooks=["logits"], patch={"blocks.0.hook_resid_pre": value}, batch_size=1)
    torch.testing.assert_close(per_text["logits"], tiny_gpt.run(texts, hooks=["logits"])["logits"], **TOL)


def test_no_patch_hooks_left_behind(tiny_gpt):
    """A patch whose function raises leaves none of its hooks: what stays is probe's inert readers (and
    whatever was on the model before, such as transformers' own output-capturing hooks)."""
    from probe.core.capture import _ReadOut

    def boom(value, ctx):
        raise RuntimeError("inside")

    def hooks():
        return [h for m in tiny_gpt.hf.modules() for h in (*m._forward_hooks.values(), *m._forward_pre_hooks.values())]

    tiny_gpt.reset_hooks()
    before = hooks()
    with pytest.raises(RuntimeError):
        tiny_gpt.run("The robot", patch={"blocks.0.hook_resid_post": boom})
    new = [h for h in hooks() if not any(h is b for b in before)]
    assert new and all(isinstance(h, _ReadOut) for h in new), new


def test_unknown_hook_in_patch(tiny_gpt):
    with pytest.raises(HookNameError, match="hook_resid_post"):
        tiny_gpt.run("The robot", patch={"blocks.0.hook_resid": torch.zeros(1)})


def test_patch_tensor_of_wrong_shape(tiny_gpt):
    with pytest.raises(PatchError, match=r"shape \[3\].*\[2, 32\]|shape \[3\]"):
        tiny_gpt.run("The robot", patch={"blocks.0.hook_resid_pre": torch.zeros(3)})


def test_edit_function_returning_wrong_shape(tiny_gpt):
    with pytest.raises(PatchError, match="must return a tensor"):
        tiny_gpt.run("The robot", patch={"blocks.0.hook_resid_pre": lambda v, c: v[0]})


def test_patch_value_that_is_not_a_tensor(tiny_gpt):
    with pytest.raises(PatchError, match="tensor or a function"):
        tiny_gpt.run("The robot", patch={"blocks.0.hook_resid_pre": 3.0})


def test_patch_that_never_fires(tiny_gpt):
    """A point whose module the forward never calls (an adapter listing a module it does not use)."""
    from probe.core.adapters import Point
    from probe.core.forward import forward_capture

    class Extra(type(tiny_gpt.adapter)):
        def points(self):
            return super().points() + [Point("never.hook_out", torch.nn.Identity())]

    ids, mask = tiny_gpt.encode(["The robot"])
    with pytest.raises(PatchError, match="never fired"):
        forward_capture(
            Extra(tiny_gpt.hf, "causal"), ids, mask, ["hook_embed"], patch={"never.hook_out": lambda v, c: v}
        )


def test_patch_position_out_of_range(tiny_gpt):
    with pytest.raises(PatchError, match="position 40 is out of range"):
        probe.steer(tiny_gpt, "The robot", torch.zeros(tiny_gpt.d_model), layer=0, positions=[40])
