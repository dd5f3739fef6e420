"""One reading of every text: run, tokenize, generate, compare, report, attribute and extract read a text
the same way (a causal model's start token first, ``prepend_bos``), give the same numbers for the same
question, and say in their output what they read. One switch, ``prepend_bos``, changes all of them.
``probe.analysis.reading.read_text`` makes that reading once, as an object the report and attribute take."""

from __future__ import annotations

import pandas as pd
import pyarrow.dataset as ds
import pytest
import torch

import probe
from probe.analysis.reading import read_text
from probe.errors import InputError

TEXT = "The robot must [MASK] hurt the human."
LEFT = "The robot must"


def top_of_run(model, text, **kw):
    run = model.run(text, hooks=["logits"], **kw)
    row = run.predictions(k=1).iloc[0]
    return int(row["token_id"]), float(row["prob"]), run


@pytest.mark.parametrize("bos", [None, True, False])
def test_run_compare_and_attribute_answer_the_same_question_alike(tiny_gpt, bos):
    kw = {} if bos is None else {"prepend_bos": bos}
    tid, prob, run = top_of_run(tiny_gpt, LEFT, **kw)
    expect_bos = bos is not False
    assert run.prepend_bos is expect_bos
    assert (run.token_strs()[0] == "<|endoftext|>") is expect_bos
    assert tiny_gpt.tokenize(LEFT, **kw) == run.token_strs()

    frame = probe.compare(TEXT, [tiny_gpt], k=3, rescore=False, **kw)
    first = frame[frame.method == "next_token"].iloc[0]  # the top *word* (run's top token may be punctuation)
    probs = run.logits_at().float().softmax(-1)
    assert float(first["prob"]) == pytest.approx(float(probs[int(first["token_id"])]), abs=1e-5)
    (read,) = frame.attrs["read"].values()
    assert read == {"prepend_bos": expect_bos, "tokens": run.token_strs()}

    pytest.importorskip("captum")
    attr = probe.attribute(tiny_gpt, LEFT, method="gradient_x_input", **kw)
    assert attr.attrs["target_ids"] == [tid]  # the default target is run()'s top prediction
    assert attr.attrs["prepend_bos"] is expect_bos and attr.attrs["tokens"] == run.token_strs()
    assert attr["position"].tolist() == list(range(len(run.token_strs())))  # run's positions


def test_the_two_readings_really_differ(tiny_gpt):
    with_bos = tiny_gpt.run(LEFT, hooks=["logits"]).logits_at()
    bare = tiny_gpt.run(LEFT, hooks=["logits"], prepend_bos=False).logits_at()
    assert not torch.allclose(with_bos, bare)


def test_the_model_default_is_the_one_switch(tiny_gpt_path):
    model = probe.load(tiny_gpt_path)
    assert model.prepend_bos is True
    model.prepend_bos = False
    assert model.run(LEFT, hooks=["logits"]).token_strs()[0] != "<|endoftext|>"
    frame = probe.compare(TEXT, [model], k=2, rescore=False)
    assert next(iter(frame.attrs["read"].values()))["prepend_bos"] is False
    assert model.run(LEFT, hooks=["logits"], prepend_bos=True).token_strs()[0] == "<|endoftext|>"


def test_masked_models_read_cls_and_sep_either_way(tiny_bert):
    a = tiny_bert.run(TEXT.replace("[MASK]", tiny_bert.tokenizer.mask_token), hooks=["logits"])
    b = tiny_bert.run(TEXT.replace("[MASK]", tiny_bert.tokenizer.mask_token), hooks=["logits"], prepend_bos=False)
    assert a.token_strs() == b.token_strs() and a.token_strs()[0] == "[CLS]"
    assert a.prepend_bos is False  # no start token of probe's: the tokenizer's own [CLS]


def test_generate_reads_the_prompt_as_run_and_returns_the_text_without_the_start_token(tiny_gpt):
    text, steps = tiny_gpt.generate(LEFT, max_new_tokens=2, k=3)
    tid, _, _ = top_of_run(tiny_gpt, LEFT)
    assert int(steps[(steps.step == 0) & steps.chosen].token_id.item()) == tid
    assert text.startswith(LEFT) and steps.attrs["prepend_bos"] and steps.attrs["tokens"][0] == "<|endoftext|>"
    bare_text, bare = tiny_gpt.generate(LEFT, max_new_tokens=1, k=3, prepend_bos=False)
    assert bare_text.startswith(LEFT) and not bare.attrs["prepend_bos"]


def test_report_reads_as_run(tiny_gpt, tmp_path):
    tid, prob, run = top_of_run(tiny_gpt, LEFT)
    page = probe.report(TEXT, [tiny_gpt], tmp_path / "r.html", k=3).read_text(encoding="utf-8")
    word = tiny_gpt.to_str_tokens([tid])[0].strip()
    assert f"{prob:.1%}" in page or f"{prob * 100:.1f}%" in page, (word, prob)
    n = len(tiny_gpt.tokenize(LEFT))
    assert f"It reads {n} tokens, its start token &lt;|endoftext|&gt; first (prepend_bos=True" in page
    bare = probe.report(TEXT, [tiny_gpt], tmp_path / "b.html", k=3, prepend_bos=False).read_text(encoding="utf-8")
    assert f"It reads {n - 1} tokens, the text&#39;s own, with no start token" in bare


def test_extract_reads_as_run_and_first_and_mean_skip_the_start_token(tiny_gpt, tmp_path):
    texts = ["The cat sat on the mat.", "A dog ran."]
    hook = "blocks.1.hook_resid_post"
    probe.extract(tiny_gpt, texts, hooks=hook, out=tmp_path / "all", quiet=True, dtype="float32")
    rows = ds.dataset(tmp_path / "all").to_table().to_pandas().sort_values(["doc_id", "position"])
    run = tiny_gpt.run(texts, hooks=[hook])
    assert rows[rows.doc_id == 0].token.tolist() == run.token_strs(0)
    assert rows[(rows.doc_id == 0) & (rows.position == 0)].special.item()  # the start token, marked
    probe.extract(tiny_gpt, texts, hooks=hook, out=tmp_path / "first", quiet=True, positions="first")
    first = ds.dataset(tmp_path / "first").to_table().to_pandas()
    assert first.position.tolist() == [1, 1] and not first.special.any()
    probe.extract(tiny_gpt, texts, hooks=hook, out=tmp_path / "mean", quiet=True, positions="mean", dtype="float32")
    mean = ds.dataset(tmp_path / "mean").to_table().to_pandas().sort_values("doc_id")
    n = run.lengths[1]
    expected = run[hook][1, 1:n].float().mean(0)  # the text's own tokens, not the attention sink
    torch.testing.assert_close(torch.tensor(mean[hook].iloc[1]), expected, atol=1e-4, rtol=1e-4)


def test_an_old_folder_without_the_switch_is_refused_by_name(tiny_gpt, tmp_path):
    import json

    probe.extract(tiny_gpt, ["A dog ran."], hooks="blocks.0.hook_resid_post", out=tmp_path / "a", quiet=True)
    manifest = tmp_path / "a" / "_manifest.json"
    saved = json.loads(manifest.read_text())
    del saved["plan"]["prepend_bos"]  # as written before the switch existed (no start token read)
    manifest.write_text(json.dumps(saved))
    with pytest.raises(probe.InputError, match="prepend_bos: False there, True now"):
        probe.extract(tiny_gpt, ["A dog ran."], hooks="blocks.0.hook_resid_post", out=tmp_path / "a", quiet=True)
    again = probe.extract(
        tiny_gpt, ["A dog ran."], hooks="blocks.0.hook_resid_post", out=tmp_path / "a", quiet=True, prepend_bos=False
    )
    assert again["complete"]


def test_smollm2_run_and_compare_agree_on_the_headline(smollm2):
    """The issue's case: run('The robot must') and the comparison gave 19.8% vs 39.4% for 'navigate'."""
    tid, prob, _ = top_of_run(smollm2, LEFT)
    frame = probe.compare(TEXT, [smollm2], k=3, rescore=False)
    first = frame[frame.method == "next_token"].iloc[0]
    assert int(first["token_id"]) == tid and float(first["prob"]) == pytest.approx(prob, abs=1e-4)
    attr = probe.attribute(smollm2, LEFT, method="gradient_x_input")
    assert attr.attrs["target_ids"] == [tid]
    assert isinstance(frame, pd.DataFrame)


def test_cli_takes_the_same_switch(tiny_gpt_path, tmp_path):
    import json

    from typer.testing import CliRunner

    from probe.cli import app

    runner = CliRunner()
    for flag, first_is_start in (([], True), (["--no-prepend-bos"], False)):
        out = tmp_path / f"run{len(flag)}.parquet"
        done = runner.invoke(app, ["run", LEFT, "-m", str(tiny_gpt_path), "--hooks", "logits", "-o", str(out), *flag])
        assert done.exit_code == 0, done.output
        assert (pd.read_parquet(out)["token"].iloc[0] == "<|endoftext|>") is first_is_start
        done = runner.invoke(
            app, ["attribute", LEFT, "-m", str(tiny_gpt_path), "--method", "saliency", "--json", *flag]
        )
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["prepend_bos"] is first_is_start
        done = runner.invoke(app, ["compare", TEXT, "-m", str(tiny_gpt_path), "--json", "--no-rescore", *flag])
        assert done.exit_code == 0, done.output
        assert [r["prepend_bos"] for r in json.loads(done.stdout)["read"].values()] == [first_is_start]


def test_readme_reading_snippet_prints_what_it_says():
    import ast
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    part = readme.split("**One reading of every text.**", 1)[1]
    code = re.search(r"```python\n(.*?)```", part, re.DOTALL).group(1)
    scope = {"probe": probe, "gpt": probe.load("tiny-gpt")}
    checked = 0
    for line in code.strip().splitlines():
        expr, _, comment = line.partition("  #")
        value = eval(expr, scope)
        if comment.strip().startswith("["):
            assert value == ast.literal_eval(comment.strip())
            checked += 1
        else:
            assert next(iter(value.values()))["prepend_bos"] is True
    assert checked == 2


def test_a_batch_says_whose_predictions_and_frames_say_what_was_read(tiny_gpt):
    run = tiny_gpt.run(
        ["The robot must", "A cat sat on the"], hooks=["logits", "blocks.*.hook_resid_pre", "blocks.*.hook_resid_post"]
    )
    with pytest.raises(probe.InputError, match=r"holds 2 texts; pass index=0\.\.1"):
        run.predictions()
    with pytest.raises(probe.InputError, match="pass index"):
        run.logit_lens()
    second = run.predictions(k=3, index=1)
    assert second.attrs["index"] == 1 and second.attrs["tokens"] == run.token_strs(1)
    alone = tiny_gpt.run("A cat sat on the", hooks=["logits"]).predictions(k=3)
    assert second["token_id"].tolist() == alone["token_id"].tolist() and alone.attrs["prepend_bos"] is True
    assert not run.logit_lens(index=1).empty


def test_a_causal_model_reads_the_left_side_from_its_start_token(tiny_gpt):
    reading = read_text(tiny_gpt, TEXT)
    assert reading.read == "The robot must" and reading.prepend_bos is True
    assert torch.equal(reading.ids, tiny_gpt.document_ids("The robot must"))
    assert reading.position == reading.ids.shape[1] - 1
    assert reading.tokens == tiny_gpt.tokenize("The robot must")
    bare = read_text(tiny_gpt, TEXT, prepend_bos=False)
    assert bare.ids.shape[1] == reading.ids.shape[1] - 1 and bare.prepend_bos is False


def test_a_masked_model_reads_the_whole_text_with_its_mask_token(tiny_bert):
    reading = read_text(tiny_bert, TEXT)
    ids, _ = tiny_bert.encode([TEXT])
    assert torch.equal(reading.ids, ids) and reading.prepend_bos is False
    assert reading.tokens[reading.position] == tiny_bert.tokenizer.mask_token
    assert reading.attrs()["position"] == reading.position and reading.attrs()["text"] == TEXT


def test_reading_errors_are_the_texts(tiny_gpt, tiny_bert):
    with pytest.raises(InputError, match="no \\[MASK\\]"):
        read_text(tiny_bert, "The robot must not hurt")
    with pytest.raises(InputError, match="2 \\[MASK\\] markers"):
        read_text(tiny_gpt, "A [MASK] and a [MASK].")
    with pytest.raises(InputError, match="opens the text"):
        read_text(tiny_gpt, "[MASK] robot", prepend_bos=False)


def test_a_long_text_is_cut_to_the_context_only_when_asked(tiny_bert):
    long = " ".join(["The cat sat on the mat."] * 40) + " " + TEXT
    with pytest.raises(InputError, match="truncate"):
        read_text(tiny_bert, long)
    cut = read_text(tiny_bert, long, truncate=True)
    assert cut.truncated and cut.ids.shape[1] <= tiny_bert.n_ctx
    assert cut.tokens[cut.position] == tiny_bert.tokenizer.mask_token


def test_attribute_takes_a_reading_and_records_it(tiny_gpt, tiny_bert):
    pytest.importorskip("captum")
    import probe

    for model in (tiny_gpt, tiny_bert):
        reading = read_text(model, TEXT)
        frame = probe.attribute(model, reading, n_steps=8)
        again = probe.attribute(model, reading.read if model.kind == "causal" else TEXT, n_steps=8)
        torch.testing.assert_close(
            torch.tensor(frame["attribution"].to_numpy()), torch.tensor(again["attribution"].to_numpy())
        )
        assert frame.attrs["reading"]["tokens"] == reading.tokens and frame.attrs["tokens"] == again.attrs["tokens"]


def test_compare_of_readings_is_compare_and_reuses_the_callers_runs(tiny_gpt, tiny_bert, monkeypatch):
    from probe.analysis.compare import compare, compare_readings, slot_hooks

    readings = [read_text(m, TEXT) for m in (tiny_gpt, tiny_bert)]
    runs = [r.run(slot_hooks(r.model)) for r in readings]
    plain = compare(TEXT, [tiny_gpt, tiny_bert], k=5)
    calls = []
    for model in (tiny_gpt, tiny_bert):
        monkeypatch.setattr(
            model, "run", lambda *a, _run=model.run, **kw: calls.append(kw.get("hooks")) or _run(*a, **kw)
        )
    given = compare_readings(readings, k=5, runs=runs)
    pd.testing.assert_frame_equal(given, plain)
    assert given.attrs["read"] == plain.attrs["read"] and given.attrs["layers"] == plain.attrs["layers"]
    assert calls == [["logits"]] * len(calls) and calls  # only the rescoring runs: the slot runs came from the caller
    with pytest.raises(InputError, match="different texts"):
        compare_readings([readings[0], read_text(tiny_bert, "A cat sat on the [MASK].")])
    with pytest.raises(InputError, match="2 runs for 1 readings"):
        compare_readings(readings[:1], runs=runs)


def test_the_report_runs_each_model_once_on_the_text(tiny_gpt, tiny_bert, tmp_path, monkeypatch):
    texts = {tiny_gpt.name: [], tiny_bert.name: []}
    for model in (tiny_gpt, tiny_bert):
        run = model.run

        def counted(inputs, *a, _run=run, _name=model.name, **kw):
            if kw.get("hooks") != ["logits"]:  # the rescoring scores filled-in sentences: other texts
                texts[_name].append(inputs)
            return _run(inputs, *a, **kw)

        monkeypatch.setattr(model, "run", counted)
    probe.report(TEXT, [tiny_gpt, tiny_bert], tmp_path / "r.html")
    assert {name: len(seen) for name, seen in texts.items()} == {tiny_gpt.name: 1, tiny_bert.name: 1}
