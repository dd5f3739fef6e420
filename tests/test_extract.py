"""probe.extract / load_activations / Run.to_parquet: one row layout, equal to Model.run, resumable, refusals."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import torch

import probe
from probe.errors import HookNameError, InputError

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [
    "The robot must not hurt the human.",
    "A cat (a small one) sat on the mat.",
    "Paris is the capital of France.",
    "She went to the market to buy bread, milk and eggs.",
    "The quick brown fox jumps over the lazy dog.",
    "Berlin is the capital of Germany.",
    "The dog sat on the log.",
]
RESID = "blocks.1.hook_resid_post"


def read(out) -> pd.DataFrame:
    """The whole extraction in a canonical order (shard and batch order are not part of the contract)."""
    frame = ds.dataset(out, format="parquet").to_table().to_pandas()
    return frame.sort_values(["doc_id", "position"]).reset_index(drop=True)


def test_extract_rows_equal_model_run(tiny, tmp_path):
    hooks = [RESID, "blocks.0.mlp.hook_post", "blocks.0.attn.hook_q"]
    manifest = probe.extract(tiny, TEXTS, hooks=hooks, out=tmp_path / "a", dtype="float32", batch_size=3, quiet=True)
    frame = read(tmp_path / "a")
    run = tiny.run(TEXTS, hooks=hooks)
    assert len(frame) == sum(run.lengths) == manifest["counts"]["rows"] == manifest["counts"]["tokens"]
    assert list(frame.columns[:5]) == ["doc_id", "position", "token", "token_id", "special"]
    for doc in (0, 3, 6):
        part = frame[frame.doc_id == doc]
        assert part.token.tolist() == run.token_strs(doc)
        assert part.token_id.tolist() == run.ids[doc, : run.lengths[doc]].tolist()
        for name in hooks:
            got = torch.tensor(np.stack(part[name].to_numpy())).reshape(run[name][doc, : run.lengths[doc]].shape)
            torch.testing.assert_close(got, run[name][doc, : run.lengths[doc]], rtol=1e-4, atol=1e-5)
    assert manifest["hook_shapes"]["blocks.0.attn.hook_q"] == {"dims": ["head", "dim"], "shape": [4, 8]}
    assert set(manifest["versions"]) >= {"probe", "torch", "transformers"} and manifest["complete"]


def test_field_metadata_reshapes_every_hook(tiny_gpt, tmp_path):
    probe.extract(tiny_gpt, TEXTS[:2], hooks=["blocks.0.attn.hook_q"], out=tmp_path / "a", quiet=True)
    field = ds.dataset(tmp_path / "a").schema.field("blocks.0.attn.hook_q")
    assert json.loads(field.metadata[b"probe.dims"]) == ["head", "dim"]
    assert json.loads(field.metadata[b"probe.shape"]) == [4, 8]
    assert field.type == pa.list_(pa.float16(), 32)  # fixed-size list, float16 by default


def test_pattern_rows_hold_only_the_texts_own_keys(tiny, tmp_path):
    texts = ["Hi.", "The cat sat on the mat and the dog sat on the log."]
    run = tiny.run(texts, hooks=["blocks.0.attn.hook_pattern"])
    path = run.to_parquet(tmp_path / "p.parquet")
    table = pq.read_table(path)
    field = table.schema.field("blocks.0.attn.hook_pattern")
    assert json.loads(field.metadata[b"probe.shape"]) == [4, -1]
    frame = table.to_pandas()
    short = frame[frame.text_index == 0]
    n = run.lengths[0]
    assert n < run.ids.shape[1]  # the batch is padded wider than the short text
    for _, row in short.iterrows():
        got = np.asarray(row["blocks.0.attn.hook_pattern"]).reshape(4, -1)
        assert got.shape == (4, n)  # real keys only, no padding
        want = run["blocks.0.attn.hook_pattern"][0, :, row.position, :n]
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)
        assert np.allclose(got.sum(-1), 1.0, atol=1e-5)
    x, meta = probe.load_activations(path, "blocks.0.attn.hook_pattern")
    assert x.shape == (len(frame), 4 * run.lengths[1]) and np.isnan(x[meta.text_index == 0, 4 * n :]).all()


def test_to_parquet_picks_hooks(tiny_gpt, tmp_path):
    run = tiny_gpt.run(TEXTS[:2], hooks=["blocks.*.hook_resid_post", "logits"])
    table = pq.read_table(run.to_parquet(tmp_path / "a.parquet", hooks="blocks.*.hook_resid_post"))
    assert [c for c in table.column_names if "." in c or c == "logits"] == [
        "blocks.0.hook_resid_post",
        "blocks.1.hook_resid_post",
    ]


def test_to_parquet_unknown_hook(tiny_gpt, tmp_path):
    run = tiny_gpt.run("Hi", hooks=[RESID])
    with pytest.raises(HookNameError):
        run.to_parquet(tmp_path / "a.parquet", hooks="blocks.0.hook_mlp_out")
    assert not (tmp_path / "a.parquet").exists()


def test_positions_first_last_mean(tiny_bert, tmp_path):
    run = tiny_bert.run(TEXTS, hooks=[RESID])
    for positions in ("first", "last", "mean"):
        out = tmp_path / positions
        probe.extract(tiny_bert, TEXTS, hooks=[RESID], out=out, positions=positions, dtype="float32", quiet=True)
        frame = read(out)
        assert frame.doc_id.tolist() == list(range(len(TEXTS)))
        x = np.stack(frame[RESID].to_numpy())
        for doc, n in enumerate(run.lengths):
            acts = run[RESID][doc, :n]
            want = {"first": acts[0], "last": acts[n - 1], "mean": acts.mean(0)}[positions]
            np.testing.assert_allclose(x[doc], want.numpy(), rtol=1e-4, atol=1e-5)
    mean = read(tmp_path / "mean")
    assert (mean.position == -1).all() and mean.token.isna().all()
    last = read(tmp_path / "last")
    assert last.special.all() and (last.token == "[SEP]").all()  # BERT's last token is [SEP], marked


def test_positions_mask_rows_at_mask_slots(tiny_bert, tmp_path):
    texts = ["The robot must [MASK] hurt the human.", "No slot here.", "[MASK] cat sat on the [MASK]."]
    probe.extract(tiny_bert, texts, hooks=[RESID], out=tmp_path / "m", positions="mask", quiet=True)
    frame = read(tmp_path / "m")
    assert frame.doc_id.tolist() == [0, 2, 2] and (frame.token.str.strip() == "[MASK]").all()


def test_special_tokens_marked_not_dropped(tiny_bert, tmp_path):
    probe.extract(tiny_bert, TEXTS[:2], hooks=[RESID], out=tmp_path / "a", quiet=True)
    frame = read(tmp_path / "a")
    first = frame[frame.doc_id == 0]
    assert first.token.iloc[0] == "[CLS]" and first.token.iloc[-1] == "[SEP]"
    assert first.special.tolist() == [True] + [False] * (len(first) - 2) + [True]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "txt"])
def test_sources_carry_their_columns(tiny_gpt, tmp_path, fmt):
    labels = pd.DataFrame({"sentence": TEXTS[:4], "label": ["a", "b", "a", "c"], "score": [1.0, 2.0, 3.0, 4.0]})
    path = tmp_path / f"corpus.{fmt}"
    if fmt == "csv":
        labels.to_csv(path, index=False)
    elif fmt == "jsonl":
        labels.to_json(path, orient="records", lines=True)
    elif fmt == "parquet":
        labels.to_parquet(path)
    else:
        path.write_text("\n".join(TEXTS[:4]) + "\n\n", encoding="utf-8")  # blank lines are skipped
    column = "text" if fmt == "txt" else "sentence"
    probe.extract(tiny_gpt, path, hooks=[RESID], out=tmp_path / "a", text_column=column, quiet=True)
    frame = read(tmp_path / "a")
    assert frame.doc_id.nunique() == 4
    if fmt != "txt":
        per_doc = frame.groupby("doc_id")[["label", "score"]].first()
        assert per_doc.label.tolist() == ["a", "b", "a", "c"] and per_doc.score.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_load_activations_layer_and_rows(tiny_gpt, tmp_path):
    probe.extract(tiny_gpt, TEXTS, hooks=["blocks.*.hook_resid_post"], out=tmp_path / "a", docs_per_shard=2, quiet=True)
    x, meta = probe.load_activations(tmp_path / "a", "hook_resid_post", layer=1)
    frame = ds.dataset(tmp_path / "a").to_table().to_pandas()
    assert x.shape == (len(frame), 32) and x.dtype == np.float16
    assert list(meta.columns) == ["doc_id", "position", "token", "token_id", "special"]
    np.testing.assert_array_equal(x, np.stack(frame[RESID].to_numpy()))  # same order as the dataset
    assert len(list((tmp_path / "a").glob("part-*.parquet"))) == 4
    with pytest.raises(InputError, match="not in"):
        probe.load_activations(tmp_path / "a", "hook_mlp_out", layer=1)


def test_long_texts_are_cut_and_counted(tiny_gpt, tmp_path):
    manifest = probe.extract(tiny_gpt, TEXTS, hooks=[RESID], out=tmp_path / "a", max_length=5, quiet=True)
    assert manifest["counts"]["truncated_texts"] == len(TEXTS) and read(tmp_path / "a").position.max() == 4


def test_batch_size_and_sharding_do_not_change_rows(tiny_gpt, tmp_path):
    probe.extract(tiny_gpt, TEXTS, hooks=[RESID], out=tmp_path / "a", batch_size=32, quiet=True)
    probe.extract(tiny_gpt, TEXTS, hooks=[RESID], out=tmp_path / "b", batch_size=2, docs_per_shard=3, quiet=True)
    a, b = read(tmp_path / "a"), read(tmp_path / "b")
    pd.testing.assert_frame_equal(a.drop(columns=[RESID]), b.drop(columns=[RESID]))
    np.testing.assert_allclose(np.stack(a[RESID]), np.stack(b[RESID]), atol=2e-3)  # fp16 of fp32 batch noise


def test_rerun_on_complete_out_adds_nothing(tiny_gpt, tmp_path):
    probe.extract(tiny_gpt, TEXTS, hooks=[RESID], out=tmp_path / "a", docs_per_shard=2, quiet=True)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "a").glob("part-*")}
    manifest = probe.extract(tiny_gpt, TEXTS, hooks=[RESID], out=tmp_path / "a", quiet=True)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "a").glob("part-*")} == before
    assert manifest["counts"]["rows"] == len(read(tmp_path / "a"))


# -- crash safety: a real run killed with SIGKILL, then resumed ---------------------------------------
def test_killed_run_resumes_to_the_same_rows(tiny_gpt_path, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    rows = [{"text": TEXTS[i % len(TEXTS)] + f" Number {i}.", "label": i % 3} for i in range(240)]
    corpus.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    cmd = [
        sys.executable,
        "-m",
        "probe.cli",
        "extract",
        tiny_gpt_path,
        str(corpus),
        "--hooks",
        "blocks.*.hook_resid_post",
    ]
    cmd += ["--docs-per-shard", "4", "--batch-size", "2", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(killed)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(killed.glob("part-*.parquet"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = sorted(p.name for p in killed.glob("part-*.parquet"))
    assert 3 <= len(partial) < 60, "the run was not killed mid-way"
    for shard in killed.glob("part-*.parquet"):  # every shard present is complete and readable
        assert pq.read_metadata(shard).num_rows > 0
    assert json.loads((killed / "_manifest.json").read_text())["complete"] is False
    resumed = subprocess.run([*cmd, "--out", str(killed)], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    whole = subprocess.run([*cmd, "--out", str(tmp_path / "whole")], env=env, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    a, b = read(killed), read(tmp_path / "whole")
    assert len(a) == len(b) and not a.duplicated(["doc_id", "position"]).any()
    pd.testing.assert_frame_equal(a, b)
    assert not list(killed.glob(".tmp-*"))
    assert json.loads((killed / "_manifest.json").read_text())["counts"]["shards"] == 60


# -- refusals: one clear error each, nothing written or corrupted -----------------------------------
def test_missing_file(tiny_gpt, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        probe.extract(tiny_gpt, tmp_path / "nope.txt", hooks=[RESID], out=tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_unsupported_file_type(tiny_gpt, tmp_path):
    (tmp_path / "c.docx").write_text("x")
    with pytest.raises(InputError, match="unsupported"):
        probe.extract(tiny_gpt, tmp_path / "c.docx", hooks=[RESID], out=tmp_path / "a")


def test_no_text_column(tiny_gpt, tmp_path):
    pd.DataFrame({"sentence": TEXTS}).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(InputError, match="no 'text' column.*sentence"):
        probe.extract(tiny_gpt, tmp_path / "c.csv", hooks=[RESID], out=tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_empty_corpus(tiny_gpt, tmp_path):
    (tmp_path / "c.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="no texts"):
        probe.extract(tiny_gpt, tmp_path / "c.txt", hooks=[RESID], out=tmp_path / "a")


def test_empty_text_in_list(tiny_gpt, tmp_path):
    with pytest.raises(InputError, match="text 1 .* is empty"):
        probe.extract(tiny_gpt, ["Hi", " "], hooks=[RESID], out=tmp_path / "a")


def test_unknown_hook(tiny_gpt, tmp_path):
    with pytest.raises(HookNameError, match="did you mean"):
        probe.extract(tiny_gpt, TEXTS, hooks=["blocks.1.hook_resid"], out=tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_bad_positions(tiny_gpt, tmp_path):
    with pytest.raises(InputError, match="positions="):
        probe.extract(tiny_gpt, TEXTS, hooks=[RESID], out=tmp_path / "a", positions="middle")


def test_out_is_a_file(tiny_gpt, tmp_path):
    (tmp_path / "a").write_text("keep me")
    with pytest.raises(InputError, match="is a file"):
        probe.extract(tiny_gpt, TEXTS, hooks=[RESID], out=tmp_path / "a")
    assert (tmp_path / "a").read_text() == "keep me"


def test_out_holds_other_files(tiny_gpt, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        probe.extract(tiny_gpt, TEXTS, hooks=[RESID], out=tmp_path / "a")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_out_not_writable(tiny_gpt, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(InputError, match="not writable"):
            probe.extract(tiny_gpt, TEXTS, hooks=[RESID], out=locked / "a")
    finally:
        locked.chmod(0o700)


def test_out_inside_a_file_not_writable(tiny_gpt, tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="not writable"):
        probe.extract(tiny_gpt, TEXTS, hooks=[RESID], out=tmp_path / "f" / "a")


@pytest.mark.parametrize(
    "change",
    [{"hooks": ["blocks.0.hook_resid_post"]}, {"positions": "last"}, {"dtype": "float32"}, {"source": TEXTS[:3]}],
)
def test_different_extraction_on_out_refused(tiny_gpt, tmp_path, change):
    out = tmp_path / "a"
    probe.extract(tiny_gpt, TEXTS, hooks=[RESID], out=out, quiet=True)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    kwargs = {"hooks": [RESID], "out": out, "quiet": True, **change}
    source = kwargs.pop("source", TEXTS)
    with pytest.raises(InputError, match="holds a different extraction"):
        probe.extract(tiny_gpt, source, **kwargs)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_different_model_on_out_refused(tiny_gpt, tiny_bert, tmp_path):
    probe.extract(tiny_gpt, TEXTS, hooks=[RESID], out=tmp_path / "a", quiet=True)
    with pytest.raises(InputError, match="different extraction.*model"):
        probe.extract(tiny_bert, TEXTS, hooks=[RESID], out=tmp_path / "a", quiet=True)


def test_refuses_when_disk_lacks_room(tiny_gpt, tmp_path, monkeypatch):
    import shutil

    extract_module = importlib.import_module("probe.analysis.extract")
    monkeypatch.setattr(extract_module.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 1000))
    with pytest.raises(InputError, match="free but this extraction needs"):
        probe.extract(tiny_gpt, TEXTS, hooks=[RESID], out=tmp_path / "a")
    assert not list((tmp_path / "a").glob("*"))


def test_size_estimate_printed_before_start(tiny_gpt, tmp_path, capsys):
    probe.extract(tiny_gpt, TEXTS, hooks=[RESID], out=tmp_path / "a")
    err = capsys.readouterr().err
    assert "to write" in err and "free" in err and err.index("to write") < err.index("wrote")


def test_probe_extract_is_callable_after_module_import():
    import probe.analysis.extract  # noqa: F401  (a module named extract once shadowed the function)

    assert callable(probe.extract)


# -- CLI ---------------------------------------------------------------------------------------------
def test_cli_extract_writes_a_dataset(tiny_bert_path, tmp_path):
    from typer.testing import CliRunner

    from probe.cli import app

    corpus = tmp_path / "c.csv"
    pd.DataFrame({"text": TEXTS, "label": range(len(TEXTS))}).to_csv(corpus, index=False)
    out = tmp_path / "acts"
    args = ["extract", tiny_bert_path, str(corpus), "--hooks", "blocks.*.hook_resid_post", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--positions", "first", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout and f"{len(TEXTS)} rows" in result.stdout
    frame = read(out)
    assert frame.label.tolist() == list(range(len(TEXTS))) and (frame.token == "[CLS]").all()
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["positions"] == "first" and manifest["hooks"] == ["blocks.0.hook_resid_post", RESID]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["nope.txt", "--hooks", RESID], "does not exist"),
        (["{corpus}", "--hooks", "blocks.9.hook_resid_post"], "not a hook point"),
        (["{corpus}", "--hooks", RESID, "--positions", "middle"], "positions="),
        (["{corpus}", "--hooks", RESID, "--text-column", "body"], "no 'body' column"),
        (["{corpus}", "--hooks", RESID, "--engine", "spark"], "engine="),
    ],
)
def test_cli_extract_bad_input_is_one_line(tiny_gpt_path, tmp_path, args, needle):
    from typer.testing import CliRunner

    from probe.cli import app

    corpus = tmp_path / "c.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(corpus, index=False)
    args = [a.replace("{corpus}", str(corpus)) for a in args]
    result = CliRunner().invoke(app, ["extract", tiny_gpt_path, *args, "--out", str(tmp_path / "a")])
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and needle in err, err
    assert not (tmp_path / "a").exists()


def test_cli_extract_refuses_other_extraction_on_out(tiny_gpt_path, tmp_path):
    from typer.testing import CliRunner

    from probe.cli import app

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(TEXTS), encoding="utf-8")
    base = ["extract", tiny_gpt_path, str(corpus), "--out", str(tmp_path / "a"), "-q"]
    assert CliRunner().invoke(app, [*base, "--hooks", RESID]).exit_code == 0
    result = CliRunner().invoke(app, [*base, "--hooks", "blocks.0.hook_resid_post"])
    assert result.exit_code == 2 and "holds a different extraction" in result.stderr


def test_zero_max_length(tiny_gpt, tmp_path):
    with pytest.raises(InputError, match="max_length"):
        probe.extract(tiny_gpt, TEXTS, hooks=[RESID], out=tmp_path / "a", max_length=0)


def test_progress_bar_off_without_a_terminal():
    extract_module = importlib.import_module("probe.analysis.extract")
    assert extract_module._progress(100, quiet=False).disable  # pytest's stderr is no TTY
    assert extract_module._progress(100, quiet=True).disable
