"""Capture (probe.core.capture, probe.core.forward): resolving hook names, the reading hooks and their
cache, and what a run says about hooks it did not capture."""

from __future__ import annotations

import pytest
import torch
from conftest import sentence

from probe.errors import HookNameError, InputError


def test_glob_patterns_select_in_forward_order(tiny):
    run = tiny.run(sentence(tiny), hooks=["blocks.*.hook_resid_post"])
    assert run.keys() == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]


def test_unknown_hook_suggests_closest(tiny_gpt):
    with pytest.raises(HookNameError, match=r"did you mean 'blocks\.1\.hook_resid_(post|pre)'"):
        tiny_gpt.run("hi", hooks=["blocks.1.hook_resid"])
    with pytest.raises(HookNameError, match="is not a hook point"):
        tiny_gpt.run("hi", hooks=["blocks.*.nothing"])


def test_uncaptured_hook_says_how(tiny_gpt):
    run = tiny_gpt.run("hi there", hooks=["logits"])
    with pytest.raises(HookNameError, match="was not captured"):
        run["blocks.0.hook_resid_post"]
    with pytest.raises(HookNameError, match="not the pattern"):
        run["blocks.*.hook_resid_post"]
    with pytest.raises(HookNameError, match="did you mean"):
        run["blocks.0.hook_resid_pots"]


def test_empty_hook_list(tiny_gpt):
    with pytest.raises(InputError, match="captures nothing"):
        tiny_gpt.run("The robot", hooks=[])


def test_hooks_left_between_runs_are_inert_and_reset_removes_them(tiny_gpt):
    """Between runs the model keeps only the last hook set's reading hooks (none of a patch), which change
    nothing the model computes; ``reset_hooks`` removes every one, even after a forward that raised.
    (Hooks that were there before, such as transformers' own output-capturing ones, are not probe's.)"""
    from probe.core.capture import _ReadOut

    def hooks():
        return [h for m in tiny_gpt.hf.modules() for h in (*m._forward_hooks.values(), *m._forward_pre_hooks.values())]

    tiny_gpt.reset_hooks()
    before = hooks()
    ids = tiny_gpt.encode(["The robot must"])[0]
    with torch.inference_mode():
        logits = tiny_gpt.hf(ids).logits
    tiny_gpt.run("The robot", hooks=["blocks.0.hook_resid_post"])  # stops after block 0
    tiny_gpt.run("The robot", hooks=tiny_gpt.hook_names)
    with pytest.raises(RuntimeError, match="inside"):
        tiny_gpt.run("The robot", hooks=tiny_gpt.hook_names, patch={"blocks.0.hook_resid_post": _boom})
    left = [h for h in hooks() if not any(h is b for b in before)]
    assert left and all(isinstance(h, _ReadOut) for h in left)  # readers only: the patch's writer is gone
    with torch.inference_mode():
        torch.testing.assert_close(tiny_gpt.hf(ids).logits, logits, rtol=0, atol=0)
    assert tiny_gpt.reset_hooks() == len(left)
    assert len(hooks()) == len(before)
    assert tiny_gpt.hf.config._attn_implementation == "sdpa"
    again = tiny_gpt.run("The robot", hooks=["blocks.0.hook_resid_post"])  # registers what it needs again
    assert again["blocks.0.hook_resid_post"].shape[:2] == (1, len(again.token_strs()))


def _boom(value, ctx):
    raise RuntimeError("inside")


def test_a_repeated_hook_set_reuses_its_hooks_and_a_new_set_replaces_them(tiny_gpt):
    """The cache: the same hook set registers nothing new; another set detaches the old hooks first."""

    def count():
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in tiny_gpt.hf.modules())

    tiny_gpt.reset_hooks()
    base = count()  # not probe's (transformers' output-capturing hooks, once a test asked HF for outputs)
    first = tiny_gpt.run("The robot", hooks=["blocks.*.hook_resid_post"])
    n = count()
    assert n == base + tiny_gpt.n_layers  # one hook per block output
    second = tiny_gpt.run("The robot", hooks=["blocks.*.hook_resid_post"])
    assert count() == n
    torch.testing.assert_close(first["blocks.1.hook_resid_post"], second["blocks.1.hook_resid_post"])
    tiny_gpt.run("The robot", hooks=["blocks.0.attn.hook_q", "blocks.0.attn.hook_k", "blocks.0.attn.hook_v"])
    assert count() == base + 1  # q, k and v come out of one fused projection: one hook
    tiny_gpt.reset_hooks()


def test_a_point_without_an_item_reads_the_first_of_a_tuple_output():
    """transformers 4's blocks return (hidden, ...) where 5's return hidden: the same Point reads and
    writes both (pick takes hidden, put hands back the tuple with hidden replaced)."""
    from probe.core.adapters import Point

    point = Point("blocks.0.hook_resid_post", torch.nn.Identity())
    hidden, extra = torch.randn(1, 3, 4), torch.randn(2)
    assert point.pick((hidden, extra)) is hidden and point.pick(hidden) is hidden
    new = torch.zeros_like(hidden)
    out = point.put((hidden, extra), new)
    assert type(out) is tuple and out[0] is new and out[1] is extra
    assert point.put(hidden, new) is new


def test_bundled_tokenizers_name_a_class_transformers_4_and_5_both_load():
    import json

    from probe.core.loading import bundled_path

    for name in ("tiny-gpt", "tiny-bert"):
        config = json.loads((bundled_path(name) / "tokenizer_config.json").read_text())
        assert config["tokenizer_class"] == "PreTrainedTokenizerFast", name  # 5.x's "TokenizersBackend" fails on 4.x


def test_act_names_are_transformerlens_short_names_of_real_hooks(tiny_gpt, tiny_llama):
    from probe.core.names import ACTS, act_name

    assert (
        act_name("resid_pre", 1) == "blocks.1.hook_resid_pre" and act_name("pattern", 0) == "blocks.0.attn.hook_pattern"
    )
    assert act_name("attn.hook_z", 1) == "blocks.1.attn.hook_z"  # a full suffix is taken as it is
    known = set(tiny_gpt.hook_names) | set(tiny_llama.hook_names)
    assert all(act_name(kind, 0) in known for kind in ACTS), [k for k in ACTS if act_name(k, 0) not in known]
