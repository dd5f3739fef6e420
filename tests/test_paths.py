"""probe.path_patching: the direct path from one head into another's q, k or v input, equal to
TransformerLens 4's ``get_act_patch_direct_path`` and to the same edit made by hand (post-LN models:
tests/test_circuit.py); refused where a head has no input of its own (grouped-query k/v)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import one_line_error

import probe
from probe.analysis.reading import read_text
from probe.errors import InputError

CLEAN, BAD = "The robot must not hurt the", "The human must not hurt the"
METRIC = ("logit_diff", " human", " robot")


@pytest.fixture(scope="module")
def loud_gpt(tmp_path_factory):
    """A tiny GPT-2 initialised 10x wider than usual, so one head's path moves the logits measurably."""
    from conftest import _save, _tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(2)
    tok = _tokenizer("gpt")
    cfg = GPT2Config(
        vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=3, n_head=4, n_inner=64, initializer_range=0.2
    )
    path = _save(GPT2LMHeadModel(cfg).eval(), tok, tmp_path_factory.mktemp("loud-gpt"))
    return path, probe.load(path)


@pytest.mark.parametrize("component", ["q", "k", "v"])
def test_equals_transformerlens_direct_path(loud_gpt, component):
    tiny_gpt_path, tiny_gpt = loud_gpt
    pytest.importorskip("transformer_lens")
    from transformer_lens import patching
    from transformer_lens.model_bridge import TransformerBridge

    ours = probe.path_patching(tiny_gpt, CLEAN, BAD, sender=(0, 1), metric=METRIC, component=component)
    bridge = TransformerBridge.boot_transformers(
        tiny_gpt_path, hf_model=copy.deepcopy(tiny_gpt.hf), tokenizer=tiny_gpt.tokenizer
    )
    clean_ids, bad_ids = read_text(tiny_gpt, CLEAN).ids, read_text(tiny_gpt, BAD).ids
    with torch.no_grad():  # TL multiplies the cached z by its W_O: inference tensors would refuse that
        _, clean_cache = bridge.run_with_cache(clean_ids)
        _, bad_cache = bridge.run_with_cache(bad_ids)
    t, u = (tiny_gpt.tokenizer.encode(w)[0] for w in (" human", " robot"))
    theirs = patching.get_act_patch_direct_path(
        bridge,
        bad_ids,
        clean_cache,
        bad_cache,
        lambda lg: lg[0, -1, t] - lg[0, -1, u],
        0,
        1,
        component=component,
        verbose=False,
    )
    assert len(ours) == (tiny_gpt.n_layers - 1) * tiny_gpt.n_heads
    assert ours["effect"].abs().max() > 1e-3
    for row in ours.itertuples():
        assert row.value == pytest.approx(theirs[row.layer, row.head].item(), abs=1e-5)


def test_equals_the_same_edit_made_by_hand(loud_gpt):
    """Sender 0.1's write, z_1 @ W_O[rows of head 1], added to block 1's input as head 3 alone reads it
    (its own ln_1, its own query columns), and nowhere else."""
    tiny_gpt = loud_gpt[1]
    frame = probe.path_patching(tiny_gpt, CLEAN, BAD, sender=(0, 1), receivers=[(1, 3)], metric=METRIC)
    assert abs(frame["effect"].item()) > 1e-3
    hf = tiny_gpt.hf.transformer
    d, h = tiny_gpt.d_model, tiny_gpt.n_heads
    dh = d // h
    clean = tiny_gpt.run(CLEAN, hooks=["blocks.0.attn.hook_z"])
    bad = tiny_gpt.run(BAD, hooks=["blocks.0.attn.hook_z", "blocks.1.hook_resid_pre", "logits"])
    w_o = hf.h[0].attn.c_proj.weight[dh : 2 * dh]  # Conv1D: [in, out]; head 1's rows
    with torch.no_grad():
        delta = (clean["blocks.0.attn.hook_z"][0, :, 1] - bad["blocks.0.attn.hook_z"][0, :, 1]) @ w_o
        q = hf.h[1].attn.c_attn(hf.h[1].ln_1(bad["blocks.1.hook_resid_pre"][0] + delta))[:, :d]
        q3 = q.unflatten(-1, (h, dh))[:, 3]

    def put(value, ctx):
        value[0, :, 3] = q3
        return value

    by_hand = tiny_gpt.run(bad.ids, hooks=["logits"], patch={"blocks.1.attn.hook_q": put})
    t, u = (tiny_gpt.tokenizer.encode(w)[0] for w in (" human", " robot"))
    expected = float(by_hand["logits"][0, -1, t] - by_hand["logits"][0, -1, u])
    assert frame["value"].item() == pytest.approx(expected, abs=1e-5)
    assert frame["effect"].item() == pytest.approx(expected - frame.attrs["corrupted_value"], abs=1e-5)
    assert frame.attrs["sender"] == (0, 1)


def test_grouped_query_k_and_v_receivers_are_key_value_heads(tmp_path):
    """A grouped-query model reads k/v once per key/value head: patching the path into KV head g moves the k
    of every query head in its group, and equals the same edit made by hand on the shared projection."""
    from conftest import _save, _tokenizer, llama_like

    torch.manual_seed(3)
    tok = _tokenizer("gpt")
    hf = llama_like("llama", tok)
    with torch.no_grad():  # weights large enough for one head's path to move the metric (init: ~1e-6)
        for param in hf.parameters():
            if param.dim() == 2:
                param.normal_(0, 0.3)
    llama = probe.load(_save(hf, tok, tmp_path))
    kv, h = llama.adapter.n_kv_heads, llama.n_heads
    assert kv < h
    frame = probe.path_patching(llama, CLEAN, BAD, sender=(0, 0), metric=METRIC)
    assert len(frame) == h * (llama.n_layers - 1) and not frame.attrs["kv_heads"]
    for comp in ("k", "v"):
        frame = probe.path_patching(llama, CLEAN, BAD, sender=(0, 0), metric=METRIC, component=comp)
        assert len(frame) == kv * (llama.n_layers - 1) and frame.attrs["kv_heads"]
        assert frame["effect"].abs().max() > 1e-3
    row = frame.loc[frame["effect"].abs().idxmax()]  # v of a key/value head of layer 1, by hand:
    hooks = ["blocks.0.attn.hook_z", "blocks.1.hook_resid_pre", "blocks.1.attn.hook_v"]
    clean, bad = llama.run(CLEAN, hooks=hooks), llama.run(BAD, hooks=hooks)
    block0, block1 = llama.adapter.blocks[0], llama.adapter.blocks[1]
    dh = llama.adapter.d_head
    with torch.no_grad():
        z = clean["blocks.0.attn.hook_z"][0, :, 0] - bad["blocks.0.attn.hook_z"][0, :, 0]
        delta = z @ block0.self_attn.o_proj.weight[:, :dh].T
        x = block1.input_layernorm(bad["blocks.1.hook_resid_pre"][0] + delta)
        v = block1.self_attn.v_proj(x).unflatten(-1, (kv, dh))[:, int(row["head"])]

    def put(value, ctx):
        value[0, :, int(row["head"])] = v
        return value

    by_hand = llama.run(bad.ids, hooks=["logits"], patch={"blocks.1.attn.hook_v": put})
    t, u = (llama.tokenizer.encode(w, add_special_tokens=False)[0] for w in METRIC[1:])
    assert row["value"] == pytest.approx(float(by_hand["logits"][0, -1, t] - by_hand["logits"][0, -1, u]), abs=1e-5)
    with pytest.raises(InputError, match=f"receiver head {kv} is out of range"):
        probe.path_patching(llama, CLEAN, BAD, sender=(0, 0), receivers=[(1, kv)], metric=METRIC, component="k")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sender": (-1, 0)}, "last layer"),
        ({"sender": (0, 0), "receivers": [(0, 2)]}, "does not come after"),
        ({"sender": (0, 0), "component": "z"}, "not one of q, k, v"),
        ({"sender": 3}, "must be a \\(layer, head\\) pair"),
        ({"sender": (0, 9)}, "sender head 9 is out of range"),
    ],
)
def test_bad_input_is_one_clear_line(tiny_gpt, kwargs, message):
    with pytest.raises(InputError, match=message):
        probe.path_patching(tiny_gpt, CLEAN, BAD, metric=METRIC, **kwargs)


def test_readme_snippet_runs_as_printed():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    code = next(b for b in readme.split("```python\n")[1:] if "probe.path_patching(" in b).split("```")[0]
    scope = {"probe": probe, "gpt": probe.load("tiny-gpt"), "clean": "The robot must not hurt the"}
    scope["corrupt"] = "The robot will not hurt the"
    exec(compile(code, "README.md", "exec"), scope)


def test_cli_patches_paths_with_sender(runner, tiny_gpt_path, tiny_gpt):
    from probe.cli import app

    base = ["patch", CLEAN, BAD, "-m", tiny_gpt_path, "--answer", " human", "--wrong", " robot", "--sender", "0.1"]
    result = runner.invoke(app, [*base, "--component", "k", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    expected = probe.path_patching(tiny_gpt, CLEAN, BAD, sender=(0, 1), metric=METRIC, component="k")
    assert [row["value"] for row in payload["rows"]] == pytest.approx(list(expected["value"]), abs=1e-6)
    assert payload["sender"] == [0, 1] and {row["component"] for row in payload["rows"]} == {"k"}
    one_line_error(runner.invoke(app, [*base[:-1], "0.x"]), "--sender '0.x' is not LAYER.HEAD")
    one_line_error(runner.invoke(app, [*base, "--method", "atp"]), "leave out --over and --method")
