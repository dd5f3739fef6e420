"""The bundled demo models: offline, within budget, and measurably language models.

Baselines are fit on the held-out sample itself (an oracle unigram), which flatters the baseline: the
models must beat a unigram model that already knows the sample's word frequencies.
"""

from __future__ import annotations

import json
import math
import socket
from collections import Counter
from pathlib import Path

import pytest
import torch

import probe
from probe.core.loading import BUNDLED, bundled_path

SAMPLE = (Path(__file__).parent / "data" / "heldout_sample.txt").read_text().splitlines()


@pytest.fixture(scope="module")
def no_network():
    """Any socket connection during loading fails the test: bundled models never touch the network."""
    real = socket.socket.connect

    def refuse(*args, **kwargs):
        raise AssertionError("network access while loading a bundled model")

    socket.socket.connect = refuse
    yield
    socket.socket.connect = real


@pytest.fixture(scope="module")
def gpt(no_network):
    return probe.load("tiny-gpt")


@pytest.fixture(scope="module")
def bert(no_network):
    return probe.load("tiny-bert")


def sample_ids(model) -> torch.Tensor:
    """The held-out sample as one id stream (GPT's end-of-text between articles), no specials."""
    eot = model.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    ids = []
    for line in SAMPLE:
        ids += model.tokenizer.encode(line, add_special_tokens=False) + [eot]
    return torch.tensor(ids)


def test_bundled_are_ordinary_checkpoints_with_shared_vocab(gpt, bert):
    assert (gpt.kind, bert.kind) == ("causal", "masked")
    assert gpt.tokenizer.get_vocab() == bert.tokenizer.get_vocab()
    assert gpt.n_ctx >= 128 and gpt.n_layers >= 4 and gpt.n_heads >= 4
    for name in BUNDLED:
        folder = bundled_path(name)
        assert (folder / "model.safetensors").exists() and (folder / "config.json").exists()
        assert not list(folder.glob("*.bin"))


def test_bundled_size_budget():
    total = sum(f.stat().st_size for name in BUNDLED for f in bundled_path(name).iterdir())
    assert total <= 30 * 2**20, f"bundled models take {total / 2**20:.1f} MB"


def test_model_cards_report_measured_quality():
    for name in BUNDLED:
        card = json.loads((bundled_path(name) / "probe_card.json").read_text())
        e = card["eval"]
        assert card["data_license"] == "CC BY-SA 4.0" and card["tokens_seen"] > 0
        if card["kind"] == "causal":
            assert e["gpt_ppl"] < e["bigram_ppl"] < e["unigram_ppl"]
        else:
            assert e["bert_masked_top1"] > e["unigram_masked_top1"]
        assert "held-out" in (bundled_path(name) / "README.md").read_text()


def test_gpt_beats_unigram_on_heldout_sample(gpt):
    ids = sample_ids(gpt)
    counts = Counter(ids.tolist())
    unigram_ppl = math.exp(-sum(c * math.log(c / len(ids)) for c in counts.values()) / len(ids))
    width = gpt.n_ctx
    chunks = [ids[s : s + width] for s in range(0, len(ids) - width, width)]
    run = gpt.run(torch.stack(chunks), hooks=["logits"])
    logits = run["logits"][:, :-1].flatten(0, 1)
    targets = torch.stack(chunks)[:, 1:].flatten()
    gpt_ppl = math.exp(torch.nn.functional.cross_entropy(logits, targets).item())
    assert gpt_ppl < 0.5 * unigram_ppl, (gpt_ppl, unigram_ppl)


def test_bert_beats_unigram_on_heldout_sample(bert):
    tok = bert.tokenizer
    ids = sample_ids(bert)
    body = bert.n_ctx - 2
    hits1 = hits5 = n = 0
    gold_all = []
    for s in range(0, len(ids) - body, body):
        chunk = torch.cat([torch.tensor([tok.cls_token_id]), ids[s : s + body], torch.tensor([tok.sep_token_id])])
        masked = chunk.clone()
        where = torch.arange(1 + s % 7, len(chunk) - 1, 7)  # every 7th token, ~14%
        masked[where] = tok.mask_token_id
        logits = bert.run(masked[None], hooks=["logits"])["logits"][0, where]
        top5 = logits.topk(5).indices
        gold = chunk[where]
        hits1 += (top5[:, 0] == gold).sum().item()
        hits5 += (top5 == gold[:, None]).any(-1).sum().item()
        n += len(gold)
        gold_all += gold.tolist()
    common = [t for t, _ in Counter(gold_all).most_common(5)]  # oracle: the sample's own frequent tokens
    uni1 = sum(g == common[0] for g in gold_all) / n
    uni5 = sum(g in common for g in gold_all) / n
    print(f"bert top-1 {hits1 / n:.3f} vs oracle unigram {uni1:.3f}; top-5 {hits5 / n:.3f} vs {uni5:.3f}")
    assert hits1 / n > 1.3 * uni1, (hits1 / n, uni1)
    assert hits5 / n > uni5, (hits5 / n, uni5)


# -- behaviour a random model would fail ----------------------------------------------------------
def next_prob(model, prefix: str, word: str) -> float:
    run = model.run(prefix, hooks=["logits"])
    return float(run.logits_at().softmax(-1)[model.tokenizer.encode(word, add_special_tokens=False)[0]])


def test_gpt_knows_frequent_phrases(gpt):
    assert gpt.run("The United", hooks=["logits"]).predictions(k=1).token.item() == " States"
    assert " be" in gpt.run("The robot must").predictions(k=3).token.tolist()


def test_gpt_function_word_depends_on_context(gpt):
    """' the' is unlikely right after 'of the' and likely after 'one of': the context is used."""
    after_the = next_prob(gpt, "It is one of the", " the")
    after_of = next_prob(gpt, "It is one of", " the")
    assert after_the < 0.01 and after_of > 0.3, (after_the, after_of)


def test_bert_fills_frequent_phrases(bert):
    """Fillers that need the context on both sides of the slot; a random model ranks them ~2000th."""
    for text, word in [
        ("It is one [MASK] the largest cities in the world.", " of"),
        ("Paris is the capital [MASK] France.", " of"),
    ]:
        assert word in bert.run(text).predictions(k=5).token.tolist(), text
