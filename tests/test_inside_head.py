"""probe.attention_neurons (analysis/inside_head.py): the parts of one head's score for one query, read from a run or recomputed, and
its view (the families' parity lives in test_families.py)."""

from __future__ import annotations

import pytest
import torch

import probe
from probe.errors import InputError


def test_reads_the_run_or_runs_the_text_again(tiny_gpt):
    text = "The robot must not hurt the"
    full = tiny_gpt.run(text, hooks=tiny_gpt.hook_names)
    bare = tiny_gpt.run(text, hooks=["logits"])
    a, b = probe.attention_neurons(full, 1, 2), probe.attention_neurons(bare, 1, 2)
    torch.testing.assert_close(a.query, b.query)
    torch.testing.assert_close(a.keys, b.keys)
    q = full["blocks.1.attn.hook_q"][0, -1, 2].double()
    torch.testing.assert_close(a.query, q)
    assert a.position == full.lengths[0] - 1 and torch.isinf(a.scores).sum() == 0  # the last token sees them all
    early = probe.attention_neurons(full, 1, 2, query=2)
    assert torch.isinf(early.scores[3:]).all() and early.probs[3:].sum() == 0  # a causal query cannot look ahead


def test_a_batch_text_is_read_within_its_own_tokens(tiny_gpt):
    run = tiny_gpt.run(["The robot must not hurt the", "A cat"], hooks=["logits"])
    view = probe.attention_neurons(run, 0, 1, index=1)
    assert len(view.tokens) == run.lengths[1] == view.keys.shape[0]
    torch.testing.assert_close(view.probs, view.pattern, atol=1e-5, rtol=1e-4)


def test_the_view_draws_query_keys_products_and_softmax(tiny_bert):
    run = tiny_bert.run("The robot must [MASK] hurt the human.")
    fig = run.plot.attention_neurons(0, 1)
    assert [t.type for t in fig.data] == ["heatmap", "heatmap", "bar"]
    assert len(fig.data[0].z) == run.lengths[0] + 1 and "[MASK]" in fig.layout.title.text
    import probe.viz

    with pytest.raises(InputError, match="takes the view"):
        probe.viz.attention_neurons(object())


@pytest.mark.parametrize(("kwargs", "message"), [({"layer": 9}, "layer 9 is out of range"), ({"head": -9}, "head -9")])
def test_bad_input_is_one_clear_line(tiny_gpt, kwargs, message):
    args = {"layer": 0, "head": 0, **kwargs}
    with pytest.raises(InputError, match=message):
        probe.attention_neurons(tiny_gpt.run("The robot"), **args)


def test_readme_snippet_runs_as_printed():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    code = next(b for b in readme.split("```python\n")[1:] if "attention_neurons(" in b).split("```")[0]
    scope = {"probe": probe, "gpt": probe.load("tiny-gpt")}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["run"].plot.attention_neurons(layer=1, head=3).data
