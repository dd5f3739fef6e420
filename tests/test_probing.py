"""probe.fit_probes: document-level splits, Hewitt & Liang control tasks, real extractions, refusals, CLI."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

import probe
from probe.analysis.probing import _control_labels
from probe.errors import InputError

pytest.importorskip("sklearn")

HOOK = "blocks.0.hook_resid_post"


def frame_of(x: np.ndarray, **columns) -> pd.DataFrame:
    return pd.DataFrame({**columns, HOOK: list(x.astype(np.float32))})


def test_folds_split_by_document_not_by_token():
    """A random label per document and a vector per document: memorising documents must not score."""
    rng = np.random.default_rng(0)
    docs = np.repeat(np.arange(40), 10)
    doc_label = rng.integers(0, 2, 40)
    x = rng.normal(size=(40, 16))[docs] + 0.01 * rng.normal(size=(400, 16))
    data = frame_of(x, doc_id=docs, token_id=np.arange(400), label=doc_label[docs])
    scores, _ = probe.fit_probes(data, "label", control=False)
    assert scores.accuracy.item() < 0.75  # a token-level split would score ~1.0 here


def test_encoded_contextual_label_is_selective():
    """Label written into the activations, independent of the token: high accuracy, control near chance."""
    rng = np.random.default_rng(1)
    n = 600
    token_id = rng.integers(0, 30, n)
    label = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 8))
    x[:, 0] += 3 * label
    data = frame_of(x, doc_id=np.arange(n) // 6, token_id=token_id, label=label)
    scores, fig = probe.fit_probes(data, "label")
    row = scores.iloc[0]
    assert row.accuracy > 0.9 and row.control_accuracy < 0.7 and row.selectivity > 0.25
    assert list(scores.columns[:7]) == [
        "hook",
        "layer",
        "accuracy",
        "control_accuracy",
        "selectivity",
        "n",
        "n_classes",
    ]
    assert row.layer == 0 and row.n == n and row.n_classes == 2
    assert len(fig.data) == 2  # control (shaded) + accuracy


def test_lexical_label_is_not_selective():
    """Label = a property of the word type, activations = the word's embedding: the control task learns it too."""
    rng = np.random.default_rng(2)
    n, vocab = 800, 40
    token_id = rng.integers(0, vocab, n)
    embedding = rng.normal(size=(vocab, 32))
    word_label = rng.integers(0, 2, vocab)
    data = frame_of(embedding[token_id], doc_id=np.arange(n) // 8, token_id=token_id, label=word_label[token_id])
    row = probe.fit_probes(data, "label")[0].iloc[0]
    assert row.accuracy > 0.8 and row.control_accuracy > 0.7 and abs(row.selectivity) < 0.2


def test_control_labels_one_per_type_same_distribution():
    rng = np.random.default_rng(0)
    y = np.array([0] * 700 + [1] * 300)
    types = rng.integers(0, 400, 1000)
    control = _control_labels(y, types, rng)
    for t in np.unique(types):
        assert len(set(control[types == t])) == 1
    by_type = pd.Series(control).groupby(types).first()
    assert 0.2 < by_type.mean() < 0.4  # drawn from the 70/30 label distribution


def test_regression_task_scores_r2():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 4))
    y = x[:, 0] * 2.0 + 0.1 * rng.normal(size=300)
    scores, _ = probe.fit_probes(frame_of(x, doc_id=np.arange(300) // 3, token_id=np.arange(300)), y)
    assert scores.metric.item() == "r2" and scores.accuracy.item() > 0.9 and scores.n_classes.item() == 0


def test_extraction_folder_text_level_label(tiny_gpt, tmp_path):
    texts = [f"The {w} sat on the mat number {i}." for i, w in enumerate(["cat", "dog"] * 12)]
    labels = pd.DataFrame({"text": texts, "animal": ["cat", "dog"] * 12})
    labels.to_csv(tmp_path / "c.csv", index=False)
    probe.extract(tiny_gpt, tmp_path / "c.csv", hooks=["blocks.*.hook_resid_post"], out=tmp_path / "a", quiet=True)
    scores, fig = probe.fit_probes(tmp_path / "a", "animal", cv=3)
    assert scores.hook.tolist() == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    assert scores.n.eq(sum(tiny_gpt.run(texts, hooks=[HOOK]).lengths)).all()  # every token row, all labelled
    assert scores.accuracy.between(0, 1).all() and scores.control_accuracy.between(0, 1).all()
    assert len(fig.data) == 2


def test_run_parquet_token_level_label(tiny_bert, tmp_path):
    texts = ["A cat (a small one) sat.", "The dog (big) ran far.", "Birds (many) fly south.", "Fish swim (fast)."]
    path = tiny_bert.run(texts, hooks=["blocks.*.hook_resid_post"]).to_parquet(tmp_path / "a.parquet")
    frame = pd.read_parquet(path)
    frame["is_special"] = frame.special.astype(int)
    scores, _ = probe.fit_probes(frame, "is_special", cv=2, control=False)
    assert len(scores) == 2 and scores.control_accuracy.isna().all()


# -- refusals -------------------------------------------------------------------------------------------
def small():
    rng = np.random.default_rng(0)
    return frame_of(rng.normal(size=(20, 4)), doc_id=np.arange(20) // 2, token_id=np.arange(20), label=[0, 1] * 10)


def test_unknown_label_column():
    with pytest.raises(InputError, match="no label column 'colour'"):
        probe.fit_probes(small(), "colour")


def test_single_class_label():
    with pytest.raises(InputError, match="at least two"):
        probe.fit_probes(small().assign(label=1), "label")


def test_one_document_only():
    with pytest.raises(InputError, match="document"):
        probe.fit_probes(small().assign(doc_id=0), "label")


def test_no_document_column():
    with pytest.raises(InputError, match="doc_id"):
        probe.fit_probes(small().drop(columns=["doc_id"]), "label")


def test_unknown_hook():
    with pytest.raises(InputError, match="not in the data"):
        probe.fit_probes(small(), "label", hooks="blocks.7.*")


def test_label_length_mismatch():
    with pytest.raises(InputError, match="one per row"):
        probe.fit_probes(small(), [0, 1, 0])


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        probe.fit_probes(tmp_path / "nope", "label")


def test_too_few_folds():
    with pytest.raises(InputError, match="cv"):
        probe.fit_probes(small(), "label", cv=1)


# -- CLI -------------------------------------------------------------------------------------------------
def test_cli_fit_probes_csv_and_html(tiny_gpt, tmp_path):
    from typer.testing import CliRunner

    from probe.cli import app

    texts = [f"The {w} ran home at {i}." for i, w in enumerate(["cat", "dog"] * 8)]
    pd.DataFrame({"text": texts, "animal": ["cat", "dog"] * 8}).to_csv(tmp_path / "c.csv", index=False)
    probe.extract(tiny_gpt, tmp_path / "c.csv", hooks=[HOOK], out=tmp_path / "a", quiet=True)
    page = tmp_path / "probes.html"
    result = CliRunner().invoke(
        app, ["fit-probes", str(tmp_path / "a"), "animal", "--cv", "2", "--csv", "--html", str(page)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("hook,layer,accuracy,control_accuracy,selectivity")
    assert page.exists() and page.read_text().count('class="probe-figure"') == 1
    table = CliRunner().invoke(app, ["fit-probes", str(tmp_path / "a"), "animal", "--cv", "2"])
    assert table.exit_code == 0 and "selectivity" in table.stdout


def test_cli_fit_probes_bad_label_is_one_line(tiny_gpt, tmp_path):
    from typer.testing import CliRunner

    from probe.cli import app

    probe.extract(tiny_gpt, ["The cat.", "The dog."], hooks=[HOOK], out=tmp_path / "a", quiet=True)
    result = CliRunner().invoke(app, ["fit-probes", str(tmp_path / "a"), "animal"])
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and "no label column" in result.stderr


def test_probing_example_runs_on_both_families(tiny_gpt_path, tiny_bert_path, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "examples" / "probing.py"
    spec = importlib.util.spec_from_file_location("probe_example_probing", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = ["-m", tiny_gpt_path, "-m", tiny_bert_path, "--out", str(tmp_path), "--sentences", "40"]
    path = module.main(args)
    html = path.read_text(encoding="utf-8")
    assert html.count('class="probe-figure"') == 5  # causal: 2 labels, masked: 3 (after_mask)
    printed = capsys.readouterr().out
    assert printed.count("selectivity") == 5 and "wrote" in printed


def test_readme_mask_recipe_skips_the_control_task_with_a_note_not_a_traceback(tiny_bert_path, tmp_path):
    """Every [MASK] row is the same token, so the control task (labels by word type) has one class."""
    from typer.testing import CliRunner

    from probe.cli import app

    words = ["cat", "dog"] * 8
    corpus = tmp_path / "corpus.csv"
    pd.DataFrame(
        {"text": [f"The {w} sat on the [MASK] number {i}." for i, w in enumerate(words)], "label": words}
    ).to_csv(corpus, index=False)
    runner = CliRunner()
    acts = tmp_path / "acts"
    done = runner.invoke(
        app, ["extract", str(tiny_bert_path), str(corpus), "--hooks", "blocks.*.hook_resid_post", "--positions",
              "mask", "--out", str(acts), "-q"],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["fit-probes", str(acts), "label", "--csv"])
    assert done.exit_code == 0, done.output
    assert "note: control task skipped" in done.stderr and "Traceback" not in done.output
    scores = pd.read_csv(io.StringIO(done.stdout))
    assert scores["accuracy"].notna().all() and scores["control_accuracy"].isna().all()


def test_a_fold_with_one_class_is_one_clear_error():
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"doc_id": np.repeat(np.arange(6), 3), "label": ["a"] * 3 + ["b"] * 15})
    rows["blocks.0.hook_resid_post"] = list(rng.normal(size=(len(rows), 8)))
    with pytest.raises(InputError, match="could not be fitted"):  # the fold without document 0 has one class
        probe.fit_probes(rows, "label", cv=6, control=False)
