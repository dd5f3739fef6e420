"""Attribution (captum) per token: completeness of integrated gradients, targets, special tokens, errors."""

from __future__ import annotations

import pytest

import probe
from probe.errors import InputError

pytest.importorskip("captum")

TEXT = {"causal": "The robot must not hurt the", "masked": "The robot must [MASK] hurt the human."}


@pytest.fixture(scope="module", params=["tiny-gpt", "tiny-bert"])
def bundled(request):
    return probe.load(request.param)


def test_integrated_gradients_complete_within_5_percent_on_bundled_models(bundled):
    """sum(attribution) = f(input) - f(baseline), the axiom IG is built on, with the default baseline and steps."""
    frame = probe.attribute(bundled, TEXT[bundled.kind], target=" not")
    a = frame.attrs
    span = a["target_value"] - a["baseline_value"]
    assert abs(span) > 0.05  # the test means something
    assert abs(frame["attribution"].sum() - span) <= 0.05 * abs(span)
    assert a["convergence_delta"] == pytest.approx(frame["attribution"].sum() - span, abs=1e-3)


def test_target_value_is_the_models_log_prob(tiny):
    text = TEXT[tiny.kind]
    # a causal model reads the text as a document, from its start token (Model.document_ids)
    run = tiny.run(tiny.document_ids(text) if tiny.kind == "causal" else text, hooks=["logits"])
    logp = run.logits_at().float().log_softmax(-1)
    frame = probe.attribute(tiny, text, method="saliency")  # default target: the model's top prediction
    assert frame.attrs["target_ids"] == [int(logp.argmax())]
    assert frame.attrs["target_value"] == pytest.approx(float(logp.max()), abs=1e-4)
    assert list(frame.columns) == ["position", "token", "attribution", "method"]
    assert frame["token"].tolist() == tiny.tokenize(text)
    assert (frame["attribution"] >= 0).all()  # saliency is a gradient norm


def test_continuation_target_is_summed_log_prob(tiny_gpt):
    text = TEXT["causal"]
    ids = tiny_gpt.tokenizer.encode(" human being", add_special_tokens=False)
    assert len(ids) == 2
    frame = probe.attribute(tiny_gpt, text, target=ids, method="gradient_x_input")
    doc = tiny_gpt.document_ids(text + " human being")  # read from the start token, as attribute does
    full = tiny_gpt.run(doc, hooks=["logits"])["logits"][0].float().log_softmax(-1)
    n = len(tiny_gpt.tokenize(text))  # the tokens read, start token included (as run reads them)
    expected = full[n - 1, ids[0]] + full[n, ids[1]]
    assert frame.attrs["target_value"] == pytest.approx(float(expected), abs=1e-4)
    assert len(frame) == n  # the appended continuation is not attributed
    same = probe.attribute(tiny_gpt, text, target=" human being", method="gradient_x_input")
    assert same.attrs["target_ids"] == ids


def test_special_tokens_and_the_mask_slot_get_zero(tiny_bert):
    frame = probe.attribute(tiny_bert, TEXT["masked"], target=" not")
    special = frame["token"].isin(["[CLS]", "[SEP]", "[MASK]"])
    assert special.sum() == 3
    assert (frame.loc[special, "attribution"] == 0).all()
    assert (frame.loc[~special, "attribution"] != 0).any()


@pytest.mark.parametrize("baseline", ["pad", "unk"])
def test_occlusion_is_the_drop_when_a_token_is_replaced(tiny_gpt, baseline):
    text = TEXT["causal"]
    frame = probe.attribute(tiny_gpt, text, target=" the", method="occlusion", baseline=baseline)
    # replacing token 6 (text token 5: the start token is read first) by the pad/EOS token gives the same drop
    ids = tiny_gpt.document_ids(text)
    assert frame["position"].tolist() == list(range(ids.shape[1])) and frame.attrs["prepend_bos"]
    target = frame.attrs["target_ids"][0]
    occluded = ids.clone()
    occluded[0, 6] = getattr(tiny_gpt.tokenizer, f"{baseline}_token_id")
    logp = tiny_gpt.run(occluded, hooks=["logits"])["logits"][0, -1].float().log_softmax(-1)[target]
    assert frame["attribution"][6] == pytest.approx(frame.attrs["target_value"] - float(logp), abs=1e-4)


def test_attribution_figure(tiny_gpt):
    from probe.viz import attribution

    fig = attribution(probe.attribute(tiny_gpt, TEXT["causal"], method="gradient_x_input"))
    heat = fig.data[0]
    assert heat.type == "heatmap" and heat.zmid == 0
    assert sum(str(t) != "" for row in heat.text for t in row) == len(tiny_gpt.tokenize(TEXT["causal"]))


# -- bad input ----------------------------------------------------------------------------------
def test_target_of_zero_tokens(tiny_gpt):
    with pytest.raises(InputError, match="no tokens"):
        probe.attribute(tiny_gpt, TEXT["causal"], target="")


def test_attribution_position_out_of_range(tiny_gpt):
    with pytest.raises(InputError, match="position 99 is out of range"):
        probe.attribute(tiny_gpt, TEXT["causal"], position=99)


def test_unknown_attribution_method(tiny_gpt):
    with pytest.raises(InputError, match="integrated_gradients"):
        probe.attribute(tiny_gpt, TEXT["causal"], method="shap")


def test_masked_text_without_mask(tiny_bert):
    with pytest.raises(InputError, match=r"\[MASK\]"):
        probe.attribute(tiny_bert, "The robot must not hurt the human.")


def test_target_id_outside_vocab(tiny_gpt):
    with pytest.raises(InputError, match="outside"):
        probe.attribute(tiny_gpt, TEXT["causal"], target=10**6)


def test_missing_captum_is_one_clear_line(tiny_gpt, monkeypatch):
    import sys

    from probe.errors import DependencyError

    monkeypatch.setitem(sys.modules, "captum.attr", None)  # as if captum were not installed
    with pytest.raises(DependencyError, match=r"pip install 'probe\[why\]'"):
        probe.attribute(tiny_gpt, TEXT["causal"])


REAL = [
    ("smollm2-135m", "The robot must not hurt the", " human"),  # the case: 30% off at a fixed 64 steps
    ("smollm2-135m", "She opened the door and saw a", None),  # 104% off at a fixed 64 steps
    ("minilm-mlm", "The robot must [MASK] hurt the human.", None),
    ("minilm-mlm", "She opened the [MASK] and saw a dog.", None),
]


@pytest.mark.parametrize(("name", "text", "target"), REAL)
def test_integrated_gradients_complete_on_real_models(name, text, target):
    """Within 1% on the real pretrained models at the default settings (the path is refined where it bends)."""
    from probe.defaults import available

    if not available(name):
        pytest.skip(f"{name} is not installed")
    model = probe.load(name)
    text = text.replace("[MASK]", model.tokenizer.mask_token or "[MASK]")
    frame = probe.attribute(model, text, target=target)
    a = frame.attrs
    span = a["target_value"] - a["baseline_value"]
    assert abs(span) > 1
    assert abs(frame["attribution"].sum() - span) <= 0.01 * abs(span) + 1e-4
    assert a["completeness"] <= 0.01 and a["warning"] is None


def test_refinement_halves_the_segments_that_miss():
    """Composite quadrature on a path with a sharp step: one segment of 4 points misses it, refinement
    adds points only until the sum is within the tolerance, and the limit is f(x) - f(base)."""
    import torch
    from captum.attr import IntegratedGradients

    from probe.analysis.attribute import _integrate

    def f(e):  # [B, N, d] -> [B]: a step at 0.3 of the way along the first coordinate
        return torch.sigmoid(80 * (e[..., 0].sum(-1) - 0.3)) + e[..., 1].sum(-1)

    x, base = torch.tensor([[[1.0, 2.0], [0.0, 1.0]]]), torch.zeros(1, 2, 2)
    exact = float(f(x) - f(base))
    coarse, delta, used = _integrate(IntegratedGradients(f), x, base, 4, tolerance=1.0)
    assert used == 4 and abs(delta) > 0.05 * abs(exact)
    fine, delta, used = _integrate(IntegratedGradients(f), x, base, 4, tolerance=0.001)
    assert 4 < used <= 32 and abs(delta) <= 0.001 * abs(exact) + 1e-6
    assert float(fine.sum()) == pytest.approx(exact, rel=1e-3)
    assert float(fine[1]) == pytest.approx(1.0, rel=1e-4)  # token 1 enters linearly: exact is exact at any step count


def test_contrast_attributes_the_log_prob_difference(bundled):
    """f = log p(target) - log p(contrast), read off the model's own logits; IG adds up to its gain; a
    gradient method is linear in f, so it is the target's attribution minus the contrast's."""
    import torch

    text = TEXT[bundled.kind]
    frame = probe.attribute(bundled, text, target=" not", contrast=" the")
    a = frame.attrs
    run = bundled.run(text)
    logp = run.logits_at(-1 if bundled.kind == "causal" else a["slot"]).float().log_softmax(-1)
    (nt,), (th,) = a["target_ids"], a["contrast_ids"]
    assert a["contrast"] == " the" or a["contrast"] == "the"
    assert a["target_value"] == pytest.approx(float(logp[nt] - logp[th]), abs=1e-4)
    span = a["target_value"] - a["baseline_value"]
    assert abs(span) > 0.05 and abs(frame["attribution"].sum() - span) <= 0.01 * abs(span) + 1e-5
    kw = {"method": "gradient_x_input"}
    both = probe.attribute(bundled, text, target=" not", contrast=" the", **kw)["attribution"].to_numpy()
    one = probe.attribute(bundled, text, target=" not", **kw)["attribution"].to_numpy()
    other = probe.attribute(bundled, text, target=" the", **kw)["attribution"].to_numpy()
    assert torch.allclose(torch.tensor(both), torch.tensor(one - other), atol=1e-4)


@pytest.mark.parametrize(
    ("target", "contrast", "message"),
    [(" not", " not", "is the target itself"), (" not", " robot and human", "one token with one token")],
)
def test_contrast_errors(tiny_gpt, target, contrast, message):
    with pytest.raises(InputError, match=message):
        probe.attribute(tiny_gpt, TEXT["causal"], target=target, contrast=contrast)


def test_generation_attribution_is_attribute_at_every_step(tiny_gpt):
    """The tokens are the model's greedy continuation; step s is probe.attribute of the prompt plus the first
    s generated tokens, with token s as the target, over those tokens and nothing later."""
    frame = probe.attribute_generation(tiny_gpt, "The robot must", max_new_tokens=4)
    a = frame.attrs
    assert list(frame.columns) == ["step", "generated_token", "position", "token", "attribution"]
    text, steps = tiny_gpt.generate("The robot must", max_new_tokens=4, k=1)
    assert "The robot must" + a["generated"] == text
    assert a["generated_tokens"] == steps.loc[steps["chosen"], "token"].tolist()
    n_prompt = a["n_prompt"]
    new = a["generated_ids"]
    assert steps.loc[steps["chosen"], "token_id"].tolist() == new
    for step, rows in frame.groupby("step"):
        assert rows["position"].tolist() == list(range(n_prompt + step))
        alone = probe.attribute(tiny_gpt, "The robot must", target=new[: step + 1])
        if step == 0:  # the same call by hand: same numbers
            assert rows["attribution"].to_numpy() == pytest.approx(alone["attribution"].to_numpy(), abs=1e-5)
        assert a["completeness"][step] <= 0.01
    assert a["warning"] is None


def test_generation_attribution_forced_continuation_and_view(tiny_gpt):
    frame = probe.attribute_generation(tiny_gpt, "The robot must", continuation=" not hurt", method="saliency")
    assert "".join(frame.attrs["generated_tokens"]) == " not hurt"
    assert frame.attrs["completeness"] == [None] * len(frame.attrs["generated_tokens"])
    assert (frame["attribution"] >= 0).all()
    fig = probe.viz.attribution_generation(frame)
    z = fig.data[0].z
    k, n = len(frame.attrs["generated_tokens"]), frame.attrs["n_prompt"]
    assert z.shape == (k, n + k - 1)
    for step in range(k):  # tokens not generated yet are empty, the ones read are not
        row = z[step]
        assert all(v == v for v in row[: n + step]) and all(v != v for v in row[n + step :])
    assert fig.layout.shapes[0].x0 == n - 0.5  # the prompt | generated line


@pytest.mark.parametrize("method", ["integrated_gradients", "input_x_gradient"])
def test_generation_attribution_equals_inseq(tiny_gpt, method):
    """inseq 0.7 on the same weights, its conventions spelled out: the [UNK] embedding as baseline, the
    text read as the tokenizer gives it (inseq adds no start token to a decoder-only model), the log-
    probability attributed, and integrated gradients as one 16-point Gauss-Legendre rule (captum's; probe
    cuts more steps into 16-point segments and refines them, which inseq does not)."""
    import copy
    import math

    import torch

    inseq = pytest.importorskip("inseq")
    prompt = "The robot must not hurt the"
    ours = probe.attribute_generation(
        tiny_gpt,
        prompt,
        max_new_tokens=3,
        method=method.replace("input_x_gradient", "gradient_x_input"),
        baseline="unk",
        n_steps=16,
        prepend_bos=False,
        tolerance=math.inf,
    )
    model = inseq.load_model(copy.deepcopy(tiny_gpt.hf), method, tokenizer=tiny_gpt.tokenizer)
    kwargs = {"n_steps": 16, "internal_batch_size": 16} if method == "integrated_gradients" else {}
    out = model.attribute(
        prompt,
        prompt + ours.attrs["generated"],
        attributed_fn="probability",
        logprob=True,
        show_progress=False,
        **kwargs,
    )
    theirs = out.sequence_attributions[0].target_attributions.sum(-1)  # [tokens read, steps]
    mine = torch.tensor(ours.pivot(index="position", columns="step", values="attribution").to_numpy())
    assert theirs[: len(mine)].isnan().equal(mine.isnan()) and len(theirs) == len(mine) + 1  # + the last token
    assert mine.nan_to_num().abs().max() > 0.1
    torch.testing.assert_close(mine.nan_to_num(), theirs[: len(mine)].nan_to_num(), atol=1e-3, rtol=0)


def test_generation_attribution_errors(tiny_gpt, tiny_bert):
    with pytest.raises(InputError, match="generates nothing"):
        probe.attribute_generation(tiny_bert, "The robot must")
    with pytest.raises(InputError, match="context of .*; ask for at most"):
        probe.attribute_generation(tiny_gpt, "The robot must", max_new_tokens=200)
    with pytest.raises(InputError, match="continuation is empty"):
        probe.attribute_generation(tiny_gpt, "The robot must", continuation="")
    with pytest.raises(InputError, match="attribution_generation\\(\\) takes"):
        probe.viz.attribution_generation(probe.attribute(tiny_gpt, "The robot must"))


def test_readme_snippet_runs_as_printed(tiny_gpt, monkeypatch):
    from pathlib import Path

    import plotly.graph_objects as go

    shown = []
    monkeypatch.setattr(go.Figure, "show", lambda fig, *a, **k: shown.append(fig))
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    code = next(b for b in readme.split("```python\n")[1:] if "attribute_generation(" in b).split("```")[0]
    scope = {"probe": probe, "gpt": probe.load("tiny-gpt")}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["steps"]["step"].nunique() == 6 and len(shown) == 1 and shown[0].data[0].z.shape[0] == 6
