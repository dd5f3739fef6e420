"""probe.compare: words across tokenizers, the slot, rescoring against a direct computation, agreement."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

import probe
from probe.analysis.compare import (
    COLUMNS,
    Slot,
    agreement,
    compare,
    is_word,
    kendall,
    marker_style,
    sentence_log_probs,
    spearman,
    to_word,
    word_distribution,
)
from probe.errors import InputError, NoHeadError

TEXT = "The robot must [MASK] hurt the human."


# -- words across tokenizers ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "token, word",
    [
        ("Ġnot", "not"),
        (" not", "not"),
        ("▁not", "not"),
        ("##not", "not"),
        ("not", "not"),
        ("Ġ", ""),
        ("  human ", "human"),
    ],
)
def test_to_word_strips_every_tokenizers_marker(token, word):
    assert to_word(token) == word


@pytest.mark.parametrize(
    "word, ok", [("not", True), ("3", True), (",", False), ("...", False), ("", False), ("a\ufffd", False)]
)
def test_is_word_drops_punctuation_and_partial_bytes(word, ok):
    assert is_word(word) is ok


def _stub(tokenizer):
    """Just what word_distribution needs from a Model: the tokenizer and decoded tokens."""
    return SimpleNamespace(
        tokenizer=tokenizer,
        to_str_tokens=lambda ids: [tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in ids],
    )


def _wordpiece():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "##s", "not", ",", "never", "rob", "##ot"]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def _sentencepiece():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = [
        ("<unk>", 0.0),
        ("<mask>", 0.0),
        ("▁the", -1.0),
        ("▁not", -1.0),
        ("n", -2.0),
        ("▁", -2.0),
        (",", -2.0),
        ("▁never", -1.0),
    ]
    vocab += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    tok = Tokenizer(models.Unigram(vocab, unk_id=0))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", mask_token="<mask>")


def _logits(tokenizer, ranked: list[str]) -> torch.Tensor:
    """Logits that rank the given raw pieces first, in order."""
    logits = torch.zeros(len(tokenizer))
    for i, piece in enumerate(ranked):
        logits[tokenizer.convert_tokens_to_ids(piece)] = 10.0 - i
    return logits


def test_word_lists_agree_across_bpe_wordpiece_and_sentencepiece(tiny_gpt):
    slot = Slot.parse(TEXT, need_mask=True)
    bpe = tiny_gpt.tokenizer
    cases = [
        # (tokenizer, pieces ranked first, expected words): specials, continuations, punctuation dropped
        (_wordpiece(), ["[MASK]", "##s", ",", "not", "never", "the"], ["not", "never", "the"]),
        (_sentencepiece(), ["<mask>", "n", ",", "▁not", "▁never", "▁the"], ["not", "never", "the"]),
        (bpe, ["<|endoftext|>", "The", "Ġ,", ",", "Ġhuman", "Ġrobot", "Ġthe"], ["human", "robot", "the"]),
    ]
    styles = []
    for tok, ranked, expected in cases:
        ranked = [p for p in ranked if tok.convert_tokens_to_ids(p) not in (None, tok.unk_token_id)]
        rows = word_distribution(_stub(tok), _logits(tok, ranked), k=3, slot=slot)
        assert [r["word"] for r in rows] == expected, ranked
        assert [r["rank"] for r in rows] == [1, 2, 3]
        probs = _logits(tok, ranked).softmax(-1)
        assert rows[0]["prob"] == pytest.approx(float(probs[rows[0]["token_id"]]), rel=1e-5)
        styles.append(marker_style(tok))
    assert styles == ["wordpiece", "sentencepiece", "bpe"]


def test_continuations_are_allowed_when_the_slot_is_glued_to_a_word(tiny_gpt):
    tok = tiny_gpt.tokenizer
    glued = Slot.parse("The ro[MASK] must not hurt.", need_mask=False)
    assert not glued.wants_word_start
    rows = word_distribution(_stub(tok), _logits(tok, ["The", "Ġhuman"]), k=2, slot=glued)
    assert [r["word"] for r in rows] == ["The", "human"]


# -- the slot ------------------------------------------------------------------------------------
def test_slot_parse_and_fill():
    slot = Slot.parse(TEXT, need_mask=True)
    assert (slot.left, slot.space, slot.right) == ("The robot must", " ", " hurt the human.")
    assert slot.fill("not") == "The robot must not hurt the human."
    assert slot.masked_text("<mask>") == "The robot must <mask> hurt the human."
    end = Slot.parse("The robot must", need_mask=False)
    assert end.fill("not") == "The robot must not"


@pytest.mark.parametrize(
    "text, need, match",
    [("The robot must hurt.", True, r"no \[MASK\]"), ("[MASK] and [MASK]", False, "2"), ("   ", False, "no text")],
)
def test_slot_errors_name_the_fix(text, need, match):
    with pytest.raises(InputError, match=match):
        Slot.parse(text, need_mask=need)


# -- compare -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def frame(tiny_gpt, tiny_bert):
    return compare(TEXT, [tiny_gpt, tiny_bert], k=5)


def test_compare_frame_shape_and_attrs(frame, tiny_gpt, tiny_bert):
    assert list(frame.columns) == COLUMNS
    assert set(frame["method"]) == {"next_token", "masked", "rescored"}
    for (_, method), part in frame.groupby(["model", "method"]):
        assert part["rank"].tolist() == list(range(1, len(part) + 1))
        assert part["word"].is_unique
        if method != "rescored":
            assert len(part) == 5
    rescored = frame[frame["method"] == "rescored"]
    union = set(frame[frame["method"] != "rescored"]["word"])
    assert set(rescored["word"]) == union  # every model's candidates, scored by the GPT
    assert rescored["prob"].sum() == pytest.approx(1.0, abs=1e-6)
    assert frame.attrs["text"] == TEXT and frame.attrs["k"] == 5
    assert type(frame[frame["method"] == "masked"]).__name__ == "CompareFrame"  # filters keep .plot()
    layers = frame.layers
    for model in (tiny_gpt, tiny_bert):
        part = layers[layers["model"] == model.name]
        assert part["layer"].tolist() == list(range(model.n_layers + 1))
    assert len(frame.agreement) == 3  # three ranked lists, three pairs
    assert isinstance(frame.plot(), go.Figure) and isinstance(frame.plot_layers(), go.Figure)


def test_layer_view_ends_at_the_models_own_rank(frame, tiny_bert):
    run = tiny_bert.run(TEXT)
    probs = run.logits_at().softmax(-1)  # at the mask
    probs[tiny_bert.tokenizer.all_special_ids] = 0  # never fillers, so never ranked
    top = frame[(frame["model"] == tiny_bert.name) & (frame["method"] == "masked")].iloc[0]
    expected = int((probs > probs[int(top["token_id"])]).sum()) + 1
    last = frame.layers[frame.layers["model"] == tiny_bert.name].iloc[-1]
    assert last["target_rank"] == expected and last["word"] == top["word"]


def _direct_log_likelihood(model, sentence: str) -> float:
    """Sum of log p(token | before) with the HF model itself, BOS first, no batching or padding."""
    tok = model.tokenizer
    ids = torch.tensor([[tok.bos_token_id] + tok(sentence)["input_ids"]])
    with torch.no_grad():
        logits = model.hf(ids).logits[0].float()
    return float(logits[:-1].log_softmax(-1).gather(-1, ids[0, 1:, None]).sum())


def test_rescoring_follows_the_models_own_sentence_likelihood(frame, tiny_gpt):
    rescored = frame[frame["method"] == "rescored"]
    direct = {w: _direct_log_likelihood(tiny_gpt, TEXT.replace("[MASK]", w)) for w in rescored["word"]}
    np.testing.assert_allclose(rescored["log_prob"].to_numpy(), [direct[w] for w in rescored["word"]], rtol=1e-4)
    assert rescored["word"].iloc[0] == max(direct, key=direct.get)
    assert list(rescored["word"]) == sorted(direct, key=lambda w: -direct[w])
    values = np.array(list(direct.values()))
    softmax = np.exp(values - values.max()) / np.exp(values - values.max()).sum()
    np.testing.assert_allclose(sorted(rescored["prob"], reverse=True), sorted(softmax, reverse=True), rtol=1e-3)


def test_sentence_scores_handle_multi_token_words_and_padding(tiny_gpt):
    sentences = [TEXT.replace("[MASK]", w) for w in ("not", "unrobotically", "never ever")]
    assert len(tiny_gpt.tokenizer(" unrobotically")["input_ids"]) > 1  # really several tokens
    batched = sentence_log_probs(tiny_gpt, sentences)  # one right-padded batch
    direct = [_direct_log_likelihood(tiny_gpt, s) for s in sentences]
    np.testing.assert_allclose(batched, direct, rtol=1e-4)


def test_masked_models_get_their_own_mask_token(tiny_bert):
    frame = compare(TEXT, [tiny_bert], k=3, rescore=True)
    assert set(frame["method"]) == {"masked"}  # no causal model, nothing to rescore
    assert frame.agreement.empty


def test_causal_only_without_mask_predicts_the_next_word(tiny_gpt):
    frame = compare("The robot must", [tiny_gpt], k=3)
    rescored = frame[frame["method"] == "rescored"]
    word = rescored["word"].iloc[0]
    assert rescored["log_prob"].iloc[0] == pytest.approx(
        _direct_log_likelihood(tiny_gpt, f"The robot must {word}"), rel=1e-4
    )


def test_compare_errors(tiny_bert, tiny_gpt):
    with pytest.raises(InputError, match=r"no \[MASK\]"):
        compare("The robot must not hurt the human.", [tiny_gpt, tiny_bert])
    with pytest.raises(InputError, match="k must be"):
        compare(TEXT, [tiny_gpt], k=0)
    with pytest.raises(InputError, match="no models"):
        compare(TEXT, [])


def test_encoder_without_head_is_refused(minilm):
    with pytest.raises(NoHeadError, match="no language-model head|without a language-model head"):
        compare(TEXT, [minilm])


# -- agreement -----------------------------------------------------------------------------------
def _rows(model: str, words: list[str]) -> list[dict]:
    return [{"model": model, "method": "m", "word": w, "rank": i + 1} for i, w in enumerate(words)]


def test_agreement_numbers():
    same = agreement(_rows("a", list("pqrst")) + _rows("b", list("pqrst")), k=5)[0]
    assert same["overlap_at_k"] == 1.0 and same["spearman"] == pytest.approx(1) and same["kendall"] == pytest.approx(1)
    rev = agreement(_rows("a", list("pqrst")) + _rows("b", list("tsrqp")), k=5)[0]
    assert rev["spearman"] == pytest.approx(-1) and rev["kendall"] == pytest.approx(-1)
    part = agreement(_rows("a", list("pqrs")) + _rows("b", list("pxqy")), k=4)[0]
    assert part["overlap_at_k"] == 0.5 and part["shared"] == 2
    assert math.isnan(part["spearman"]) and math.isnan(part["kendall"])  # 2 shared words: noise, "n/a"
    four = agreement(_rows("a", list("pqrs")) + _rows("b", list("srqp")), k=4)[0]
    assert four["shared"] == 4 and math.isnan(four["spearman"])
    none = agreement(_rows("a", list("pq")) + _rows("b", list("xy")), k=2)[0]
    assert none["overlap_at_k"] == 0 and math.isnan(none["spearman"])


def test_rank_correlations_match_pandas_definitions():
    rng = np.random.default_rng(0)
    a, b = rng.permutation(12).tolist(), rng.permutation(12).tolist()
    ra, rb = pd.Series(a).rank(), pd.Series(b).rank()
    assert spearman(a, b) == pytest.approx(np.corrcoef(ra, rb)[0, 1])
    concordant = sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i in range(12) for j in range(i + 1, 12))
    assert kendall(a, b) == pytest.approx(concordant / 66)


def test_text_faults_are_said_before_any_model_loads(monkeypatch, tmp_path):
    import probe.analysis.compare as module

    def boom(*args, **kwargs):
        raise AssertionError("loaded models for a text that could not be read")

    monkeypatch.setattr(module, "load_models", boom)
    for text in ("", "   ", "No mask here.", "A [MASK] and a [MASK]."):
        with pytest.raises(InputError):
            probe.compare(text, ["tiny-gpt", "tiny-bert"])
        with pytest.raises(InputError):
            probe.report(text, None, tmp_path / "r.html")  # the default pair has a masked model
    with pytest.raises(AssertionError, match="loaded models"):  # next-word only: no [MASK] needed
        probe.compare("No mask here.", ["tiny-gpt"])


def test_layer_chart_of_models_of_different_depth_is_by_share_of_depth():
    """A 6-layer and a 30-layer model end at the same x (their last block); equal depths keep layer numbers."""
    import pandas as pd

    from probe.viz.compare import compare_layers

    def records(model: str, n_layers: int) -> list[dict]:
        return [
            {"model": model, "word": "not", "n_layers": n_layers, "layer": la, "target_rank": n_layers - la + 1,
             "target_prob": 0.1}
            for la in range(n_layers + 1)
        ]  # fmt: skip

    mixed = pd.DataFrame()
    mixed.attrs["layers"] = records("deep", 30) + records("shallow", 6)
    fig = compare_layers(mixed)
    deep, shallow = fig.data
    assert deep.x[0] == shallow.x[0] == 0 and deep.x[-1] == shallow.x[-1] == 1 and len(deep.x) == 31
    assert shallow.x[3] == 0.5 and "after block 2" in shallow.customdata[3]
    assert list(fig.layout.xaxis.ticktext) == ["embeddings", "25%", "50%", "75%", "last block"]
    same = pd.DataFrame()
    same.attrs["layers"] = records("a", 30) + records("b", 30)
    fig = compare_layers(same)
    assert list(fig.data[0].x) == list(range(31)) and list(fig.layout.xaxis.tickvals) == [0, 5, 10, 15, 20, 25, 30]
