"""probe.cards: a card for every model (file first, config for the rest) and the list of known models."""

from __future__ import annotations

import json
import shutil

import pandas as pd

import probe
from probe.cards import COLUMNS, card, count_params, heldout_summary, models


def test_card_from_config_when_no_file(tiny_gpt, tiny_gpt_path):
    c = card(tiny_gpt)
    assert c["kind"] == "causal" and c["family"] == "gpt2"
    assert (c["layers"], c["heads"], c["d_model"], c["context"], c["vocab"]) == (2, 4, 32, 64, tiny_gpt.vocab_size)
    assert c["params"] == sum(p.numel() for p in tiny_gpt.hf.parameters())  # read from the safetensors header
    assert "eval" not in c


def test_card_file_adds_training_and_eval_but_not_a_wrong_shape(tiny_bert_path, tmp_path):
    folder = tmp_path / "bert-with-card"
    shutil.copytree(tiny_bert_path, folder)
    stored = {
        "name": "tiny-bert",
        "kind": "masked",
        "layers": 99,
        "tokens_seen": 1000,
        "eval": {"bert_masked_top1": 0.25, "gpt_ppl": 40.0},
    }
    (folder / "probe_card.json").write_text(json.dumps(stored))
    c = card(probe.load(str(folder)))
    assert c["name"] == "tiny-bert" and c["tokens_seen"] == 1000
    assert c["layers"] == 2  # the loaded model is the truth about its shape
    assert heldout_summary(c) == "bert_masked_top1 25.0%"  # only the metrics of its kind


def test_unreadable_card_file_is_ignored(tiny_gpt_path, tmp_path):
    folder = tmp_path / "gpt-bad-card"
    shutil.copytree(tiny_gpt_path, folder)
    (folder / "probe_card.json").write_text("{not json")
    assert card(probe.load(str(folder)))["kind"] == "causal"


def test_count_params_reads_headers_only(tiny_gpt_path, tmp_path):
    assert count_params(tmp_path) is None
    assert count_params(__import__("pathlib").Path(tiny_gpt_path)) > 0


def test_models_lists_bundled_packaged_and_hub_examples():
    frame = models()
    assert list(frame.columns) == COLUMNS
    by_name = frame.set_index("name")
    assert {"tiny-gpt", "tiny-bert", "all-minilm-l6-v2", "gpt2", "distilgpt2", "bert-base-uncased"} <= set(
        by_name.index
    )
    assert by_name.loc["tiny-gpt", "kind"] == "causal" and by_name.loc["tiny-bert", "kind"] == "masked"
    assert by_name.loc["all-minilm-l6-v2", "kind"] == "encoder"
    assert set(frame["source"]) == {"bundled", "packaged", "hub"}
    assert frame["installed"].map(type).eq(bool).all()
    installed = frame[frame["installed"] & frame["source"].ne("hub")]
    assert installed["params"].notna().all() and (installed["params"] > 0).all()
    assert isinstance(frame, pd.DataFrame)
