"""Argument checks at the public boundary (probe._validate) and behaviour at the edges: each wrong type, range or order is one ProbeError naming the
argument; behaviours at the edges (context limit, two [MASK]s, long texts, byte pieces, special tokens)."""

from __future__ import annotations

import logging
import warnings

import pandas as pd
import pytest
import torch

import probe
from probe.analysis.compare import Slot, compare, is_word
from probe.analysis.reading import fit_slot, run_slot
from probe.errors import HookNameError, InputError, NoHeadError
from probe.pages import report

TEXT = "The robot must [MASK] hurt the human."


def text_of_tokens(model, n: int) -> str:
    """A text the model reads as exactly ``n`` tokens (one per word here)."""
    text = " the" * (n - len(model.tokenize("")))
    assert len(model.tokenize(text)) == n
    return text


# -- wrong types and ranges: one InputError naming the argument ---------------------------------
BAD_CALLS = {
    "run(123)": (lambda g, b: g.run(123), "inputs"),
    "run(None)": (lambda g, b: g.run(None), "inputs"),
    "run(['a', 3])": (lambda g, b: g.run(["a", 3]), "inputs"),
    "hooks=123": (lambda g, b: g.run("hi", hooks=123), "hooks"),
    "hooks=['logits', 3]": (lambda g, b: g.run("hi", hooks=["logits", 3]), "hooks"),
    "batch_size='2'": (lambda g, b: g.run("hi", batch_size="2"), "batch_size"),
    "batch_size=2.5": (lambda g, b: g.run("hi", batch_size=2.5), "batch_size"),
    "batch_size=True": (lambda g, b: g.run("hi", batch_size=True), "batch_size"),
    "truncate='yes'": (lambda g, b: g.run("hi", truncate="yes"), "truncate"),
    "predictions(k='5')": (lambda g, b: g.run("hi").predictions(k="5"), "k"),
    "predictions(k=2.5)": (lambda g, b: g.run("hi").predictions(k=2.5), "k"),
    "predictions(k=True)": (lambda g, b: g.run("hi").predictions(k=True), "k"),
    "predictions(index='1')": (lambda g, b: g.run("hi").predictions(index="1"), "index"),
    "predictions(position=1.5)": (lambda g, b: g.run("hi").predictions(position=1.5), "position"),
    "logit_lens(target=3.0)": (lambda g, b: g.run("hi").logit_lens(target=3.0), "target"),
    "logit_lens(target=True)": (lambda g, b: g.run("hi").logit_lens(target=True), "target"),
    "logit_lens(target='')": (lambda g, b: g.run("hi").logit_lens(target=""), "target"),
    "logit_lens(target=' ')": (lambda g, b: g.run("hi").logit_lens(target=" "), "target"),
    "logit_lens(k=0)": (lambda g, b: g.run("hi").logit_lens(k=0), "k"),
    "logit_lens(k='3')": (lambda g, b: g.run("hi").logit_lens(k="3"), "k"),
    "generate(max_new_tokens='5')": (lambda g, b: g.generate("hi", max_new_tokens="5"), "max_new_tokens"),
    "generate(max_new_tokens=0)": (lambda g, b: g.generate("hi", max_new_tokens=0), "max_new_tokens"),
    "generate(k=0)": (lambda g, b: g.generate("hi", k=0), "k"),
    "generate(5)": (lambda g, b: g.generate(5), "prompt"),
    "generate(sample='yes')": (lambda g, b: g.generate("hi", sample="yes"), "sample"),
    "generate(seed='1')": (lambda g, b: g.generate("hi", sample=True, seed="1"), "seed"),
    "compare(k='3')": (lambda g, b: compare(TEXT, [g], k="3"), "k"),
    "compare(rescore='no')": (lambda g, b: compare(TEXT, [g], rescore="no"), "rescore"),
    "compare(truncate=1)": (lambda g, b: compare(TEXT, [g], truncate=1), "truncate"),
    "compare(text=5)": (lambda g, b: compare(5, [g]), "text"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_argument_is_an_input_error_naming_it(tiny_gpt, tiny_bert, case):
    call, argument = BAD_CALLS[case]
    with pytest.raises(InputError) as info:
        call(tiny_gpt, tiny_bert)
    message = str(info.value)
    assert argument in message and "\n" not in message, message


@pytest.mark.parametrize("key", [0, None, 1.5])
def test_run_getitem_takes_a_hook_name(tiny_gpt, key):
    run = tiny_gpt.run("The robot", hooks=["logits"])
    with pytest.raises(HookNameError, match="hook name"):
        run[key]


LOAD_CALLS = {
    "device='nonsense'": (dict(device="nonsense"), "device"),
    "device=5": (dict(device=5), "device"),
    "dtype='int32'": (dict(dtype="int32"), "dtype"),
    "dtype=torch.int64": (dict(dtype=torch.int64), "dtype"),
    "dtype='float99'": (dict(dtype="float99"), "dtype"),
    "allow_pickle='yes'": (dict(allow_pickle="yes"), "allow_pickle"),
}


@pytest.mark.parametrize("case", list(LOAD_CALLS))
def test_bad_load_argument(tiny_gpt_path, case):
    kwargs, argument = LOAD_CALLS[case]
    with pytest.raises(InputError, match=argument):
        probe.load(tiny_gpt_path, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_load_on_cuda_without_cuda(tiny_gpt_path):
    with pytest.raises(InputError, match="device='cuda'.*cpu"):
        probe.load(tiny_gpt_path, device="cuda")


def test_load_name_must_be_a_string():
    with pytest.raises(InputError, match="name_or_path"):
        probe.load(42)


def test_good_arguments_of_other_integer_types_still_work(tiny_gpt, tiny_gpt_path):
    import numpy as np

    run = tiny_gpt.run("The robot must", batch_size=np.int64(2))
    assert len(run.predictions(k=np.int64(3), position=np.int32(-1))) == 3
    assert probe.load(tiny_gpt_path, dtype="torch.float32", device="cpu").hf.dtype == torch.float32


# -- generate at the context limit --------------------------------------------------------------
def test_generate_with_a_full_context_says_nothing_can_be_generated(tiny_gpt):
    with pytest.raises(InputError, match="nothing can be generated"):
        tiny_gpt.generate(text_of_tokens(tiny_gpt, tiny_gpt.n_ctx), max_new_tokens=3)


def test_generate_with_an_overlong_prompt_does_not_suggest_truncate(tiny_gpt):
    with pytest.raises(InputError, match="nothing can be generated") as info:
        tiny_gpt.generate(text_of_tokens(tiny_gpt, tiny_gpt.n_ctx + 5))
    assert "truncate" not in str(info.value)


def test_generate_stopping_at_the_context_records_why(tiny_gpt):
    with pytest.warns(UserWarning, match="context"):
        _, steps = tiny_gpt.generate(text_of_tokens(tiny_gpt, tiny_gpt.n_ctx - 2), max_new_tokens=5)
    assert steps.step.nunique() == 2 and steps.attrs["stop_reason"] == "context"


def test_generate_records_a_normal_stop(tiny_gpt):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, steps = tiny_gpt.generate("The robot", max_new_tokens=2)
    assert steps.attrs["stop_reason"] == "max_new_tokens"


# -- two [MASK]s ---------------------------------------------------------------------------------
def test_two_masks_need_position(tiny_bert):
    run = tiny_bert.run("The [MASK] must [MASK] hurt the human.")
    for call in (run.predictions, run.logit_lens):
        with pytest.raises(InputError, match="2 .*position="):
            call()
    masks = [i for i, t in enumerate(run.token_strs()) if t.strip() == "[MASK]"]
    assert len(masks) == 2
    picked = run.predictions(k=3, position=masks[1])
    torch.testing.assert_close(
        torch.tensor(picked["logit"].to_numpy()), run["logits"][0, masks[1], picked["token_id"].tolist()]
    )


def test_two_masks_in_compare_and_report_name_the_count(tiny_bert, tmp_path):
    with pytest.raises(InputError, match="2"):
        compare("The [MASK] must [MASK] hurt.", [tiny_bert])
    with pytest.raises(InputError, match="2"):
        report("The [MASK] must [MASK] hurt.", [tiny_bert], tmp_path / "r.html")


# -- long texts ----------------------------------------------------------------------------------
def test_tokenize_counts_text_longer_than_the_context(tiny_gpt):
    import transformers

    long = text_of_tokens(tiny_gpt, tiny_gpt.n_ctx * 3)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("transformers")
    before = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_warning()
    logger.addHandler(handler)
    try:
        assert len(tiny_gpt.tokenize(long)) == tiny_gpt.n_ctx * 3
        with pytest.raises(InputError, match="truncate=True"):
            tiny_gpt.run(long)
    finally:
        logger.removeHandler(handler)
        transformers.logging.set_verbosity(before)
    assert not [r for r in records if "sequence length" in r.getMessage()]


LONG = (
    " ".join(["The cat sat on the mat."] * 30)
    + " The robot must [MASK] hurt the human. "
    + " ".join(["The dog sat on the log."] * 30)
)


def test_compare_long_text_without_truncate_points_to_it(tiny_gpt, tiny_bert):
    with pytest.raises(InputError, match=r"truncate=True \(--truncate\)"):
        compare(LONG, [tiny_gpt, tiny_bert])


def test_compare_truncate_reads_a_window_around_the_slot(tiny_gpt, tiny_bert):
    frame = compare(LONG, [tiny_gpt, tiny_bert], k=3, truncate=True)
    assert set(frame.attrs["truncated"]) == {tiny_gpt.name, tiny_bert.name}
    assert set(frame["method"]) == {"masked", "next_token", "rescored"}
    slot = Slot.parse(LONG, need_mask=True)
    window = run_slot(tiny_bert, slot, truncate=True)
    masked = window.masked_text(tiny_bert.tokenizer.mask_token)
    assert len(tiny_bert.tokenize(masked)) <= tiny_bert.n_ctx
    assert window.left and window.right and slot.left.endswith(window.left) and slot.right.startswith(window.right)
    assert len(tiny_bert.tokenize(window.left)) == pytest.approx(len(tiny_bert.tokenize(window.right)), abs=3)
    gpt_window = run_slot(tiny_gpt, slot, truncate=True)  # a GPT reads the left side only: keep all it can
    assert tiny_gpt.document_ids(gpt_window.left).shape[1] == tiny_gpt.n_ctx  # its start token included


def test_truncated_rescoring_scores_every_candidate_in_one_window(tiny_gpt):
    slot = Slot.parse(LONG, need_mask=False)
    words = ["not", "never ever"]
    fitted = fit_slot(tiny_gpt, slot, lambda s: [s.fill(w) for w in words], extra=1)
    assert max(len(tiny_gpt.tokenize(fitted.fill(w))) + 1 for w in words) <= tiny_gpt.n_ctx


def test_short_text_is_never_cut(tiny_bert):
    slot = Slot.parse(TEXT, need_mask=True)
    assert run_slot(tiny_bert, slot, truncate=True) is slot
    assert compare(TEXT, [tiny_bert], k=2, truncate=True).attrs["truncated"] == []


def test_report_truncate_notes_the_cut(tiny_gpt, tiny_bert, tmp_path):
    with pytest.raises(InputError, match="truncate=True"):
        report(LONG, [tiny_gpt, tiny_bert], tmp_path / "r.html")
    path = report(LONG, [tiny_gpt, tiny_bert], tmp_path / "r.html", truncate=True)
    assert path.read_text(encoding="utf-8").count("was cut to the window above") == 2


# -- one argument order for compare and report --------------------------------------------------
def test_compare_in_the_old_order_says_text_first(tiny_gpt):
    with pytest.raises(InputError, match="text first"):
        compare([tiny_gpt], TEXT)
    with pytest.raises(InputError, match="text first"):
        compare(tiny_gpt, TEXT)


def test_a_sentence_where_models_go_is_named(tiny_gpt):
    with pytest.raises(InputError, match="looks like a sentence"):
        compare("tiny-gpt", TEXT)
    with pytest.raises(InputError, match="looks like a sentence"):
        compare(TEXT, [tiny_gpt, "The cat sat on the [MASK]."])


def test_report_in_the_old_order_says_text_first(tiny_gpt, tmp_path):
    with pytest.raises(InputError, match="text first"):
        report([tiny_gpt], TEXT, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_compare_and_report_take_keywords(tiny_gpt, tmp_path):
    frame = compare(models=[tiny_gpt], text="The robot must", k=2)
    assert frame.attrs["text"] == "The robot must"
    path = report(path=tmp_path / "r.html", models=[tiny_gpt], text="The robot must", k=2)
    assert path.exists()


# -- messages that name the model, grammar -------------------------------------------------------
def test_no_head_error_names_the_model_not_a_path(minilm):
    with pytest.raises(NoHeadError) as info:
        minilm.run("a sentence").predictions()
    assert minilm.name in str(info.value) and "site-packages" not in str(info.value) and "/" not in str(info.value)


def test_generate_on_an_encoder_has_the_right_article(minilm):
    with pytest.raises(InputError, match="is an encoder model"):
        minilm.generate("a sentence")


def test_unknown_hook_without_a_close_match_points_to_probe_hooks(tiny_gpt):
    with pytest.raises(HookNameError, match=f"probe hooks {tiny_gpt.name}"):
        tiny_gpt.run("hi", hooks=["zzz"])


# -- special tokens and byte pieces --------------------------------------------------------------
def test_masked_predictions_leave_special_tokens_out(tiny_bert):
    run = tiny_bert.run(TEXT)
    special = set(tiny_bert.tokenizer.all_special_ids)
    every = run.predictions(k=tiny_bert.vocab_size)
    assert len(every) == tiny_bert.vocab_size - len(special)
    assert not special & set(every["token_id"])
    lens = run.logit_lens(k=tiny_bert.vocab_size)
    assert not special & set(lens["token_id"])
    probs = run.logits_at().softmax(-1)
    assert every["prob"].tolist() == pytest.approx(probs[every["token_id"].tolist()].tolist())  # not renormalised


def test_causal_predictions_keep_end_of_text(tiny_gpt):
    every = tiny_gpt.run("The robot").predictions(k=tiny_gpt.vocab_size)
    assert tiny_gpt.tokenizer.eos_token_id in set(every["token_id"])


@pytest.mark.parametrize("name", ["tiny-gpt", "tiny-bert"])
def test_bundled_tokenizers_register_every_shared_special(name):
    from probe.zoo.train import SPECIAL_TOKENS

    model = probe.load(name)
    assert set(model.tokenizer.all_special_tokens) == set(SPECIAL_TOKENS)


def test_bundled_bert_never_fills_the_mask_with_a_special_token():
    bert = probe.load("tiny-bert")
    top = bert.run(TEXT).predictions(k=50)
    assert "<|endoftext|>" not in set(top["token"])
    words = compare(TEXT, [bert], k=10)
    assert "<|endoftext|>" not in set(words["token"])


def test_partial_utf8_pieces_show_their_bytes(tiny_gpt, tmp_path):
    text = "🤖 robot"
    tokens = tiny_gpt.tokenize(text, prepend_bos=False)
    expected = [f"<0x{b:02X}>" for b in "🤖".encode()]
    assert tokens[: len(expected)] == expected and "\ufffd" not in "".join(tokens)
    run = tiny_gpt.run(text, hooks=["blocks.0.hook_resid_post"], prepend_bos=False)
    assert run.to_frame("blocks.0.hook_resid_post")["token"].unique()[: len(expected)].tolist() == expected
    table = pd.read_parquet(run.to_parquet(tmp_path / "bytes.parquet"))
    assert table["token"].tolist()[: len(expected)] == expected
    assert not is_word("<0xF0>") and is_word("robot")


def test_whole_characters_still_decode_as_text(tiny_gpt):
    assert "".join(tiny_gpt.tokenize("The robot", prepend_bos=False)) == "The robot"
    assert "".join(tiny_gpt.tokenize("The robot")) == "<|endoftext|>The robot"  # as run reads it


# -- the shared plotly.js option -----------------------------------------------------------------
def test_report_can_share_plotly_js_beside_the_page(tiny_gpt, tmp_path):
    inline = report("The robot must", [tiny_gpt], tmp_path / "inline.html", k=2)
    beside = report("The robot must", [tiny_gpt], tmp_path / "beside.html", k=2, plotly_js="beside")
    shared = list(tmp_path.glob("plotly-*.min.js"))
    assert len(shared) == 1
    doc = beside.read_text(encoding="utf-8")
    assert f'<script src="{shared[0].name}"' in doc
    assert beside.stat().st_size + shared[0].stat().st_size == pytest.approx(inline.stat().st_size, rel=0.05)
    assert "<script src=" not in inline.read_text(encoding="utf-8")


def test_bad_plotly_js_mode(tiny_gpt, tmp_path):
    with pytest.raises(InputError, match="plotly_js"):
        report("The robot must", [tiny_gpt], tmp_path / "r.html", plotly_js="cdn")


def test_public_names_survive_importing_every_module():
    """Every public name (probe.compare, probe.report, probe.extract, ...) stays what it names after every
    module of the package is imported, with no module-class tricks; import probe still imports no torch."""
    import subprocess
    import sys

    code = (
        "import importlib, pkgutil, sys, probe; assert 'torch' not in sys.modules; "
        "before = {n: getattr(probe, n) for n in probe._LAZY}; "
        "names = [m.name for m in pkgutil.walk_packages(probe.__path__, 'probe.')]; "
        "[importlib.import_module(n) for n in names]; "
        "assert len(names) > 40, names; "
        "wrong = [n for n in probe._LAZY if getattr(probe, n) is not before[n] "
        "or getattr(probe, n) is not getattr(importlib.import_module(probe._LAZY[n]), n)]; "
        "assert not wrong, wrong; assert callable(probe.compare) and callable(probe.report)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(
    ("typo", "meant"), [("tiny_gpt", "tiny-gpt"), ("Tiny-BERT", "tiny-bert"), ("tiny-gtp", "tiny-gpt")]
)
def test_a_misspelt_name_is_caught_before_the_hub(typo, meant, monkeypatch):
    import time

    import transformers

    def no_hub(*args, **kwargs):
        raise AssertionError("asked the hub for a misspelt local name")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", no_hub)
    start = time.monotonic()
    with pytest.raises(probe.LoadError, match=f"did you mean '{meant}'"):
        probe.load(typo)
    assert time.monotonic() - start < 5


def test_hub_names_are_not_taken_for_typos():
    from probe.core.loading import _near_name

    assert [_near_name(n) for n in ("gpt2", "bert-base-uncased", "distilgpt2", "openai-community/gpt2")] == [None] * 4
