"""Tuned lens: identity at the start (= the logit lens), better than the logit lens on held-out text after
training (causal and masked), save/load/resume, and one clear error for each misuse."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import one_line_error

import probe
import probe.viz
from probe.analysis.tuned_lens import TunedLens, lens_kl, load_lens, train_lens
from probe.cli import app
from probe.errors import InputError

CORPUS = [
    "The robot must not hurt the human.",
    "A cat sat on the mat and looked at the dog.",
    "Paris is the capital of France.",
    "She opened the door and saw a small robot.",
    "The weather was cold, so we stayed inside.",
    "He read a book about the sea and the ships.",
    "The children played in the park after school.",
    "A human and a robot walked into the room.",
]
HELD_OUT = ["The dog must not hurt the cat.", "They opened a book about the robot."]


@pytest.fixture(scope="module", params=["tiny-gpt", "tiny-bert"])
def bundled(request):
    return probe.load(request.param)


@pytest.fixture(scope="module")
def trained(bundled):
    return train_lens(bundled, CORPUS, steps=60, lr=3e-3)


def test_untrained_lens_is_the_logit_lens(bundled):
    """Identity-initialised translators: the tuned lens reads exactly what the logit lens reads."""
    text = "The robot must [MASK] hurt the human." if bundled.kind == "masked" else "The robot must not hurt the"
    run = bundled.run(text)
    for rank in (None, 8):
        lens = TunedLens(bundled, rank=rank)
        tuned, plain = run.logit_lens(lens=lens), run.logit_lens()
        pd.testing.assert_frame_equal(tuned, plain, check_exact=False, atol=1e-5)
        assert tuned.attrs["lens"] == "tuned" and plain.attrs["lens"] == "logit"
        resid = run.resid(1)[0]
        with torch.inference_mode():
            assert torch.allclose(lens(resid, 1), bundled.adapter.head(resid), atol=1e-5)


def test_training_beats_the_logit_lens_on_held_out_text(bundled, trained):
    """KL(final || tuned) < KL(final || logit lens) at every layer, on text the lens never saw."""
    frame = lens_kl(bundled, HELD_OUT, trained)
    assert list(frame["layer"]) == list(range(bundled.n_layers))
    assert (frame["tuned_lens"] < frame["logit_lens"]).all(), frame
    assert trained.meta["steps"] == 60 and trained.meta["loss"] > 0


def test_lens_table_and_view_read_through_the_lens(bundled, trained):
    text = "The robot must [MASK] hurt the human." if bundled.kind == "masked" else "The robot must not hurt the"
    run = bundled.run(text)
    table = probe.viz.lens_table(run, lens=trained)
    assert table.attrs["lens"] == "tuned"
    top = table[(table["rank"] == 1) & (table["layer"] == 0)]
    logits = trained(run.resid(0)[0], 0).float().softmax(-1)
    read = logits.gather(-1, torch.tensor(top["top_id"].to_numpy())[:, None])[:, 0]
    assert top["prob"].to_numpy() == pytest.approx(read.numpy(), abs=1e-5)
    last = table[table["layer"] == bundled.n_layers]  # the model's own output, untouched
    pd.testing.assert_frame_equal(
        last.reset_index(drop=True),
        probe.viz.lens_table(run).query(f"layer == {bundled.n_layers}").reset_index(drop=True),
    )
    assert "tuned lens" in run.plot.logit_lens(lens=trained).layout.title.text
    fig = probe.viz.lens_kl(lens_kl(bundled, HELD_OUT, trained))
    assert [t.name for t in fig.data] == ["logit lens", "tuned lens"]
    pair = probe.viz.lens_compare(run, trained)  # side by side: the two heatmaps, one colour scale
    alone = [run.plot.logit_lens(k=1).data[0], run.plot.logit_lens(lens=trained, k=1).data[0]]
    assert [(t.xaxis, t.yaxis) for t in pair.data] == [("x", "y"), ("x2", "y2")]
    top = max(float(np.max(t.z)) for t in alone)
    for side, single in zip(pair.data, alone, strict=True):
        assert np.array_equal(side.z, single.z) and side.zmax == top
    assert not np.array_equal(pair.data[0].z, pair.data[1].z) and [a.text for a in pair.layout.annotations] == [
        "logit lens",
        "tuned lens",
    ]
    with pytest.raises(InputError, match="needs a tuned lens"):
        probe.viz.lens_compare(run, None)


def test_lens_kl_at_one_token_is_the_kl_of_the_runs_own_readings(bundled, trained):
    from probe.analysis.tuned_lens import lens_kl_at

    text = "The robot must [MASK] hurt the human." if bundled.kind == "masked" else "The robot must not hurt the"
    run = bundled.run(text)
    frame = lens_kl_at(run, trained)
    pos = run.position_of(None)
    final = run.logits_at(pos).float().log_softmax(-1)
    for layer in (0, bundled.n_layers - 1):
        h = run.resid(layer)[0, pos]
        with torch.inference_mode():
            readings = (("logit_lens", bundled.adapter.head(h)), ("tuned_lens", trained(h, layer)))
        for column, logits in readings:
            logp = logits.float().log_softmax(-1)
            expected = float((final.exp() * (final - logp)).sum())
            assert frame.loc[layer, column] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert frame.attrs["position"] == pos and frame.attrs["token"] == run.token_strs()[pos]
    plain = lens_kl_at(run, TunedLens(bundled), position=1)  # identity translators: the logit lens exactly
    assert plain["tuned_lens"].to_numpy() == pytest.approx(plain["logit_lens"].to_numpy(), abs=1e-6)
    assert lens_kl_at(run)["tuned_lens"].isna().all()


def test_save_load_and_resume(tiny_gpt, tmp_path):
    out = tmp_path / "lens"
    first = train_lens(tiny_gpt, CORPUS, steps=6, out=out, rank=8, save_every=3)
    loaded = load_lens(out, tiny_gpt)
    resid = tiny_gpt.run("The robot must").resid(1)[0]
    assert torch.allclose(loaded(resid, 1), first(resid, 1), atol=2e-2)  # stored in fp16
    assert loaded.meta["steps"] == 6 and loaded.rank == 8
    again = train_lens(tiny_gpt, CORPUS, steps=9, out=out, rank=8, save_every=3)  # resumes at 6
    assert again.meta["steps"] == 9 and again.meta["position"] == first.meta["position"] + 3 * 8
    stored = json.loads((out / "lens.json").read_text())
    assert stored["steps"] == 9 and stored["model"] == tiny_gpt.name
    assert (out / "lens.safetensors").stat().st_size < 2 * tiny_gpt.n_layers * tiny_gpt.d_model * (2 * 8 + 1) + 4096


def test_a_lens_for_another_model_is_refused(tiny_gpt, tiny_bert, tmp_path):
    lens = TunedLens(tiny_gpt)
    with pytest.raises(InputError, match="trained for .* not for"):
        tiny_bert.run("The robot must [MASK] hurt.").logit_lens(lens=lens)
    lens.save(tmp_path / "gpt")
    with pytest.raises(InputError, match="trained for .* not for"):
        load_lens(tmp_path / "gpt", tiny_bert)
    with pytest.raises(InputError, match="another model or rank"):
        train_lens(tiny_gpt, CORPUS, steps=2, out=tmp_path / "run", save_every=1)
        train_lens(tiny_gpt, CORPUS, steps=3, out=tmp_path / "run", rank=4)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: TunedLens(m)(torch.zeros(m.d_model), m.n_layers), "out of range for the tuned lens"),
        (lambda m: TunedLens(m, rank=0), "rank=0 must be between 1"),
        (lambda m: train_lens(m, ["", "  "], steps=1), "the corpus has no text"),
        (lambda m: train_lens(m, "no/such/file.txt", steps=1), "is not a file"),
        (lambda m: load_lens("no/such/folder", m), "holds no tuned lens"),
        (lambda m: m.run("The robot").logit_lens(lens="tuned"), "lens must be a TunedLens"),
    ],
)
def test_bad_input_is_one_clear_error(tiny_gpt, call, message):
    with pytest.raises(InputError, match=message):
        call(tiny_gpt)


def test_cli_train_lens(runner, tiny_gpt_path, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS + HELD_OUT), encoding="utf-8")
    args = ["train-lens", str(corpus), "-m", tiny_gpt_path, "-o", str(tmp_path / "lens"), "--steps", "40"]
    result = runner.invoke(app, args + ["--lr", "3e-3", "--csv"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert list(frame.columns) == ["layer", "logit_lens", "tuned_lens"] and len(frame) == 2  # the fixture's layers
    assert (frame["tuned_lens"] < frame["logit_lens"]).all()
    assert (tmp_path / "lens" / "lens.json").is_file()
    one_line_error(runner.invoke(app, ["train-lens", str(tmp_path / "none.txt"), "-o", str(tmp_path)]), "is not a file")


def test_readme_snippet_runs_as_printed():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    code = next(b for b in readme.split("```python\n")[1:] if "train_lens(" in b).split("```")[0]
    gpt = probe.load("tiny-gpt")
    scope = {"probe": probe, "gpt": gpt, "run": gpt.run("The robot must not hurt the")}
    exec(compile(code, "README.md", "exec"), scope)
    assert (
        scope["lens"].meta["steps"] == 20
        and "tuned lens" in scope["run"].plot.logit_lens(lens=scope["lens"]).layout.title.text
    )


SENTENCES = [  # hand-written: in no corpus the lenses were trained on
    "The old lighthouse keeper climbed the stairs every night to light the lamp.",
    "After the meeting, the engineers agreed to test the new bridge design in spring.",
    "My sister bakes bread on Sundays and gives half of it to the neighbours.",
    "The museum closed early because a pipe had burst in the basement.",
]


@pytest.mark.parametrize("name", ["smollm2-135m", "minilm-mlm"])
def test_shipped_lenses_beat_the_logit_lens(name):
    """The target of the issue, on text no lens saw: KL(final || tuned) < KL(final || logit) at every layer."""
    from probe.analysis.tuned_lens import shipped, shipped_lens
    from probe.defaults import available

    if name not in shipped():
        pytest.skip(f"no lens is shipped for {name}")
    if not available(name):
        pytest.skip(f"{name} is not installed")
    model = probe.load(name)
    lens = shipped_lens(model)
    assert lens is not None and load_lens(name, model).meta["steps"] == lens.meta["steps"]
    frame = lens_kl(model, SENTENCES, lens)
    assert (frame["tuned_lens"] < frame["logit_lens"]).all(), frame
    assert len(lens.meta["held_out_kl"]["layer"]) == model.n_layers  # what the report shows


def test_shipped_lenses_fit_the_budget_and_skip_other_weights(tiny_gpt):
    from probe.analysis.tuned_lens import shipped, shipped_lens
    from probe.zoo import LENSES

    files = [p for p in LENSES.glob("*/*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 12 * 2**20
    assert not any(p.name == "training.pt" for p in files)  # the optimizer state is not shipped
    assert set(shipped()) <= {"smollm2-135m", "minilm-mlm"}
    assert shipped_lens(tiny_gpt) is None
