"""One parity harness for every family: tiny random checkpoints (hidden 32, 2 layers) saved with a tokenizer.

Each family is a ``Spec``: a builder of the HF model from a tokenizer plus the few facts the checks need.
Adding a family (llama, qwen2, mistral) is one builder and one ``SPECS`` row. Per family:
- every residual-stream hook, pattern and the logits equal HF's hidden_states / attentions / logits on a
  right-padded batch; q/k/v/z are tied to the patterns (softmax(q k^T) and pattern @ v == z);
- every hook shared with TransformerLens 4's bridge equals the bridge's value (skipped where the bridge
  has no such family or transformer_lens is not installed);
- the residual identities of the block layout hold, the logit lens's head reproduces the logits, and
  hooks a family lacks are absent.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
from conftest import _save, _tokenizer

import probe

TOL = dict(atol=1e-5, rtol=1e-4)
# benchmarks/gpu_check.sh sets cuda: the same parity checks with the models on the GPU
DEVICE = os.environ.get("PROBE_TEST_DEVICE", "cpu")
TEXTS = {
    "causal": ["The robot must not hurt the human.", "The cat sat on the mat."],
    "masked": ["The robot must [MASK] hurt the human.", "The cat [MASK] on the mat."],
}


@dataclass(frozen=True)
class Spec:
    build: Callable  # tokenizer -> HF model (random weights)
    kind: str
    tokenizer: str = "gpt"  # "gpt" (BPE, eos) or "bert" ([CLS] ... [SEP], [PAD], [MASK])
    no_bridge: str = ""  # why TransformerLens 4's bridge cannot be compared ("" = it boots from a local folder)
    layout: str = "pre_ln"  # residual identities: "pre_ln", "parallel", "post_ln" (BERT-like), "none"
    scale: Callable[[int], float] = lambda d_head: d_head**-0.5  # attention score scale
    last_hidden: str = "ln_final"  # HF's last hidden state: "ln_final"(resid_post), "raw", or "head_in"
    absent: tuple[str, ...] = ()  # hooks the family must not have (block 0 names)
    not_in_bridge: tuple[str, ...] = ()  # name endings of probe hooks the bridge has no counterpart for
    extra: dict = field(default_factory=dict)


def _gpt_neo(tok):
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    # layer 1 is local with a window of 4 keys, shorter than the texts
    cfg = GPTNeoConfig(
        vocab_size=len(tok),
        max_position_embeddings=64,
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        intermediate_size=64,
        attention_types=[[["global", "local"], 1]],
        window_size=4,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return GPTNeoForCausalLM(cfg)


def _gpt_neox(tok, parallel=True):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    cfg = GPTNeoXConfig(
        vocab_size=len(tok),
        max_position_embeddings=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        partial_rotary_factor=0.5,  # Pythia's rotary_pct 0.25 on d_head 8 would rotate only 2 dims
        use_parallel_residual=parallel,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return GPTNeoXForCausalLM(cfg)


def _opt(tok, post_ln=False):
    from transformers import OPTConfig, OPTForCausalLM

    cfg = OPTConfig(
        vocab_size=len(tok),
        max_position_embeddings=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        ffn_dim=64,
        # opt-350m's shape: post-LN, embeddings narrower than the residual stream, projected in and out
        word_embed_proj_dim=16 if post_ln else 32,
        do_layer_norm_before=not post_ln,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return OPTForCausalLM(cfg)


def _roberta(tok):
    from transformers import RobertaConfig, RobertaForMaskedLM

    cfg = RobertaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=66,  # 64 usable positions after padding_idx + 1
        pad_token_id=tok.pad_token_id,
    )
    return RobertaForMaskedLM(cfg)


def _distilbert(tok):
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    cfg = DistilBertConfig(
        vocab_size=len(tok),
        dim=32,
        n_layers=2,
        n_heads=4,
        hidden_dim=64,
        max_position_embeddings=64,
        pad_token_id=tok.pad_token_id,
    )
    return DistilBertForMaskedLM(cfg)


def _llama_like(model_type: str):
    """Llama-shaped (llama, qwen2, mistral): the same tiny model as conftest's fixtures."""
    from conftest import llama_like

    return lambda tok: llama_like(model_type, tok)


def _eos_pad(tok):
    tok.pad_token = tok.eos_token  # OPT's real tokenizer has <pad>; ours needs one for pad_token_id
    return tok


SPECS: dict[str, Spec] = {
    "gpt_neo": Spec(_gpt_neo, "causal", scale=lambda d: 1.0),  # GPT-Neo does not scale its scores
    "gpt_neox": Spec(
        _gpt_neox,
        "causal",
        layout="parallel",
        absent=("hook_pos_embed", "blocks.0.hook_resid_mid"),
        not_in_bridge=("attn.hook_rot_q", "attn.hook_rot_k"),  # TL 4.3's NeoX bridge has no rotated q/k
    ),
    "gpt_neox_sequential": Spec(
        lambda t: _gpt_neox(t, parallel=False),
        "causal",
        absent=("hook_pos_embed",),
        not_in_bridge=("attn.hook_rot_q", "attn.hook_rot_k"),
    ),
    "opt": Spec(_opt, "causal", absent=("project_in.hook_out", "project_out.hook_out")),
    "opt_350m_shape": Spec(
        lambda t: _opt(t, post_ln=True),
        "causal",
        layout="none",
        last_hidden="head_in",
        absent=("ln_final.hook_normalized",),
        # TransformerLens 4.3's OPT bridge feeds post-LN attention a flattened [batch * pos, d] input and fails
        no_bridge="TransformerLens 4.3's bridge fails on post-LN OPT (do_layer_norm_before=False)",
    ),
    **{name: Spec(_llama_like(name), "causal", absent=("hook_pos_embed",)) for name in ("llama", "qwen2", "mistral")},
    "roberta": Spec(_roberta, "masked", tokenizer="bert", layout="post_ln", last_hidden="raw"),
    "distilbert": Spec(
        _distilbert,
        "masked",
        tokenizer="bert",
        no_bridge="TransformerLens's bridge has no DistilBERT adapter",
        layout="post_ln",
        last_hidden="raw",
        absent=("token_type_embed.hook_out",),
    ),
}


@dataclass
class Case:
    name: str
    spec: Spec
    path: str
    model: probe.Model


@pytest.fixture(scope="session", params=list(SPECS))
def case(request, tmp_path_factory) -> Case:
    spec = SPECS[request.param]
    torch.manual_seed(0)
    tok = _tokenizer(spec.tokenizer)
    if spec.tokenizer == "gpt" and request.param.startswith("opt"):
        tok = _eos_pad(tok)
    path = _save(spec.build(tok).eval(), tok, tmp_path_factory.mktemp(request.param))
    return Case(request.param, spec, path, probe.load(path, device=DEVICE))


def _real(run) -> torch.Tensor:
    return run.mask.bool()  # [batch, pos]: right padding is compared nowhere


def _hf(model, run):
    """HF's own forward with the eager kernel (the one that returns attention weights)."""
    current = model.hf.config._attn_implementation
    model.hf.set_attn_implementation("eager")
    try:
        with torch.inference_mode():
            return model.hf(
                **model.adapter.body_inputs(run.ids, run.mask), output_hidden_states=True, output_attentions=True
            )
    finally:
        model.hf.set_attn_implementation(current)


def test_loads_with_kind_and_padding(case):
    m = case.model
    assert m.kind == case.spec.kind
    assert m.adapter.family == case.name.split("_sequential")[0].split("_350m")[0]
    assert m.tokenizer.pad_token_id is not None
    assert m.d_head * m.n_heads == m.d_model
    run = m.run(TEXTS[m.kind])
    assert run.lengths[0] != run.lengths[1]  # a right-padded batch
    assert run["logits"].shape == (2, run.ids.shape[1], m.vocab_size)


def test_every_hook_equals_hf_on_padded_batch(case):
    m, spec = case.model, case.spec
    run = m.run(TEXTS[m.kind], hooks=m.hook_names)
    out = _hf(m, run)
    real = _real(run)
    n = m.n_layers
    assert len(out.hidden_states) == n + 1
    for i in range(n):
        torch.testing.assert_close(run.resid(i)[real], out.hidden_states[i][real], **TOL, msg=f"hidden_states[{i}]")
    last = run[f"blocks.{n - 1}.hook_resid_post"]
    if spec.last_hidden == "ln_final":
        last = run["ln_final.hook_normalized"]
    elif spec.last_hidden == "head_in":  # OPT-350m: HF's last hidden state is after project_out
        last = run["project_out.hook_out"]
    torch.testing.assert_close(last[real], out.hidden_states[n][real], **TOL, msg="last hidden state")
    pattern = run.attention()  # [layer, batch, head, q, k]
    theirs = torch.stack(out.attentions)
    for b, length in enumerate(run.lengths):  # real queries over real keys
        ours_b, theirs_b = pattern[:, b, :, :length, :length], theirs[:, b, :, :length, :length]
        torch.testing.assert_close(ours_b, theirs_b, **TOL, msg=f"patterns of text {b}")
    torch.testing.assert_close(run["logits"][real], out.logits[real], **TOL, msg="logits")


def test_q_k_v_z_tie_to_the_pattern(case):
    """pattern == softmax(scale * q k^T + mask) and z == pattern @ v: q/k/v/z are sliced and split right."""
    m, spec = case.model, case.spec
    run = m.run(TEXTS[m.kind], hooks=m.hook_names)
    real = _real(run)
    for i in range(m.n_layers):
        p = f"blocks.{i}.attn."
        q, k, v, z = (run[p + h] for h in ("hook_q", "hook_k", "hook_v", "hook_z"))  # [batch, pos, head, d_head]
        pattern = run[p + "hook_pattern"]  # [batch, head, q, k]
        if p + "hook_rot_q" in run:  # rotary: the scores use q and k after rotation
            if hasattr(m.adapter, "rotary_dim"):  # GPT-NeoX: rotating hook_q/hook_k as HF does gives them
                rq, rk = _rotary(m, q, k, run.ids.shape[1])
                torch.testing.assert_close(run[p + "hook_rot_q"], rq, **TOL)
                torch.testing.assert_close(run[p + "hook_rot_k"], rk, **TOL)
            q, k = run[p + "hook_rot_q"], run[p + "hook_rot_k"]
        groups = m.n_heads // k.shape[2]  # grouped-query attention: each K/V head serves `groups` q heads
        k, v = k.repeat_interleave(groups, dim=2), v.repeat_interleave(groups, dim=2)
        torch.testing.assert_close(torch.einsum("bhqk,bkhd->bqhd", pattern, v)[real], z[real], **TOL)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * spec.scale(m.d_head)
        pos = run.ids.shape[1]
        allowed = run.mask.bool()[:, None, None, :].expand(-1, 1, pos, -1)
        if m.kind == "causal":
            allowed = allowed & torch.ones(pos, pos, dtype=torch.bool, device=q.device).tril()
        if case.name == "gpt_neo" and i == 1:  # local layer: window of 4 keys
            allowed = allowed & torch.ones(pos, pos, dtype=torch.bool, device=q.device).triu(-3)
        expected = scores.masked_fill(~allowed, -math.inf).softmax(-1)
        rows = real[:, None, :].expand(-1, m.n_heads, -1)  # real query rows
        torch.testing.assert_close(pattern[rows], expected[rows], **TOL, msg=f"layer {i} pattern from q, k")


def _rotary(model, q, k, pos):
    from transformers.models.gpt_neox.modeling_gpt_neox import apply_rotary_pos_emb

    cos, sin = model.adapter.body.rotary_emb(q, torch.arange(pos, device=q.device)[None])
    # HF applies it on [batch, head, pos, d_head]
    qr, kr = apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
    return qr.transpose(1, 2), kr.transpose(1, 2)


def test_probe_verify_passes(case):
    pytest.importorskip("pandas")  # verify returns a frame (the GPU check may run without pandas)
    table = probe.verify(case.model)
    assert table.attrs["ok"], table[~table["ok"]].to_string()
    assert len(table) >= 2 * case.model.n_layers + 2


def test_residual_identities(case):
    m, layout = case.model, case.spec.layout
    run = m.run(TEXTS[m.kind], hooks=m.hook_names)
    for i in range(m.n_layers):
        h = lambda n, i=i: run[f"blocks.{i}.{n}"]  # noqa: E731
        if layout == "pre_ln":
            torch.testing.assert_close(h("hook_resid_mid"), h("hook_resid_pre") + h("hook_attn_out"), **TOL)
            torch.testing.assert_close(h("hook_resid_post"), h("hook_resid_mid") + h("hook_mlp_out"), **TOL)
        elif layout == "parallel":
            total = h("hook_resid_pre") + h("hook_attn_out") + h("hook_mlp_out")
            torch.testing.assert_close(h("hook_resid_post"), total, **TOL)
        elif layout == "post_ln":
            torch.testing.assert_close(h("ln1.hook_in"), h("hook_resid_pre") + h("attn.o.hook_out"), **TOL)
            torch.testing.assert_close(h("hook_resid_mid"), h("hook_attn_out") + h("hook_mlp_out"), **TOL)
    if "hook_pos_embed" in m.hook_names and m.kind == "causal" and "project_in.hook_out" not in m.hook_names:
        torch.testing.assert_close(run["blocks.0.hook_resid_pre"], run["hook_embed"] + run["hook_pos_embed"], **TOL)


def test_logit_lens_head_is_the_models_own(case):
    """The lens's head (final norm + unembedding, or MLM head) on the last residual gives the model's logits."""
    m = case.model
    run = m.run(TEXTS[m.kind])
    with torch.inference_mode():
        lens = m.adapter.head(run[f"blocks.{m.n_layers - 1}.hook_resid_post"])
    torch.testing.assert_close(lens, run["logits"], **TOL)
    pytest.importorskip("pandas")
    frame = run.logit_lens(k=3, index=0)  # a batch says whose lens
    assert sorted(frame["layer"].unique()) == list(range(m.n_layers + 1))


def test_missing_hooks_are_absent_not_faked(case):
    for name in case.spec.absent:
        assert name not in case.model.hook_names
    core = ["hook_embed", "blocks.0.hook_resid_pre", "blocks.0.attn.hook_pattern", "blocks.0.hook_resid_post"]
    assert all(n in case.model.hook_names for n in core)


def test_single_hooks_equal_full_capture(case):
    """Early exit, the sdpa kernel and the flattened-MLP reshape do not change a value."""
    m = case.model
    text = TEXTS[m.kind]
    full = m.run(text, hooks=m.hook_names)
    for name in [
        "hook_embed",
        "blocks.0.mlp.hook_pre",
        "blocks.0.hook_mlp_out",
        "blocks.1.attn.hook_q",
        "blocks.1.hook_resid_post",
    ]:
        alone = m.run(text, hooks=[name])
        torch.testing.assert_close(alone[name], full[name], **TOL, msg=name)


def test_every_shared_hook_equals_transformerlens_bridge(case):
    if case.spec.no_bridge:
        pytest.skip(case.spec.no_bridge)
    pytest.importorskip("transformer_lens")
    from transformer_lens.model_bridge import TransformerBridge

    m = case.model
    text = TEXTS[m.kind][0]
    run = m.run(text, hooks=m.hook_names)
    # a fresh copy of the weights: booting the bridge changes the HF model it wraps (attention kernel)
    hf = type(m.hf).from_pretrained(case.path).eval().to(DEVICE)
    bridge = TransformerBridge.boot_transformers(case.path, hf_model=hf, tokenizer=m.tokenizer)
    kwargs = {"attention_mask": run.mask} if m.kind == "masked" else {}
    logits, cache = bridge.run_with_cache(run.ids, **kwargs)
    shared = [n for n in m.hook_names if n in cache or n == "logits"]
    expected_missing = {n for n in m.hook_names if case.spec.not_in_bridge and n.endswith(case.spec.not_in_bridge)}
    for name in shared:
        theirs = logits if name == "logits" else cache[name]
        torch.testing.assert_close(run[name], theirs.reshape(run[name].shape), **TOL, msg=lambda s, n=name: f"{n}: {s}")
    # probe's names are the bridge's: every probe hook of these families exists in the bridge's cache
    assert set(m.hook_names) - set(shared) == expected_missing


def test_models_lists_every_family_with_an_example():
    pytest.importorskip("pandas")
    from probe.core.adapters import FAMILIES

    frame = probe.models().set_index("name")
    for family in FAMILIES.values():
        for hub_id, kind in family.examples:
            assert frame.loc[hub_id, "family"] == family.model_type
            assert frame.loc[hub_id, "kind"] == kind


def test_unsupported_architecture_names_the_supported_ones(tmp_path):
    import json

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bloom", "architectures": ["BloomForCausalLM"]}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(probe.LoadError) as err:
        probe.load(tmp_path)
    message = str(err.value)
    assert "\n" not in message and "bloom" in message
    for name in ("gpt_neox (e.g. EleutherAI/pythia-70m)", "opt", "roberta", "distilbert", "gpt_neo"):
        assert name in message


def test_registry_is_torch_free():
    import subprocess
    import sys

    code = "import sys, probe.core.adapters as a; a.supported(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("hook", ["blocks.0.attn.hook_q", "blocks.0.attn.hook_v", "blocks.0.mlp.hook_pre"])
def test_patches_write_back_through_every_point_kind(case, hook):
    """An identity edit changes nothing (the write-back reassembles fused/flattened values exactly);
    zeroing is what the model then carries (NeoX's per-head qkv slices, OPT's flattened MLP)."""
    m = case.model
    text = TEXTS[m.kind][0]
    plain = m.run(text, hooks=["logits", hook])
    same = m.run(text, hooks=["logits", hook], patch={hook: lambda value, ctx: value + 0})
    torch.testing.assert_close(same["logits"], plain["logits"], **TOL)
    zeroed = m.run(text, hooks=["logits", hook], patch={hook: lambda value, ctx: value * 0})
    assert zeroed[hook].abs().max() == 0
    # (random weights make attention nearly uniform, so zeroing q moves the logits only a little)
    assert (zeroed["logits"] - plain["logits"]).abs().max() > 0


def test_direct_logit_attribution_adds_up(case):
    """probe.dla on every family: the writes plus the constant make the model's own logit difference,
    heads included (grouped-query heads, fused q|k|v, parallel blocks, post-LN masked models)."""
    m = case.model
    text = "The robot must [MASK] hurt the human." if m.kind == "masked" else "The robot must not hurt the"
    target, contrast = (m.tokenizer.encode(w, add_special_tokens=False)[-1] for w in (" human", " robot"))
    if case.name == "opt_350m_shape":  # post-LN OPT has no final norm to freeze: said, not guessed
        with pytest.raises(probe.ProbeError, match="no final norm"):
            probe.dla(m, text, target)
        return
    for unit in ("component", "head"):
        frame = probe.dla(m, text, target, contrast=contrast, unit=unit)
        total = frame["attribution"].sum() + frame.attrs["constant"]
        assert total == pytest.approx(frame.attrs["logit_diff"], abs=1e-4), unit
    assert frame["head"].notna().sum() == m.n_layers * m.n_heads


def test_attention_neuron_view_softmax_is_the_models_pattern(case):
    """bertviz's neuron view on every family: scale * q.k over the visible keys, softmaxed, is the model's own
    pattern row (rotary q/k after rotation, grouped-query keys shared, GPT-Neo's unscaled local layers)."""
    m = case.model
    run = m.run(TEXTS[m.kind][0])
    for layer in range(m.n_layers):
        for head in (0, m.n_heads - 1):
            for query in (1, -1):
                view = probe.attention_neurons(run, layer, head, query=query)
                torch.testing.assert_close(view.probs, view.pattern, atol=1e-5, rtol=1e-4)
                torch.testing.assert_close(view.products.sum(-1), view.keys @ view.query)


def test_circuits_on_every_family(case, tmp_path):
    """Edges and circuits on every family and block form (sequential pre-LN, parallel, post-LN): a sender's
    edges add up to its node estimate, faithfulness is 1 with every edge and 0 with none; parallel blocks
    have no edge from a layer's heads to its own MLP. Post-LN OPT hooks no input of its norms: refused.
    On a copy with larger weights: at random init the metric moves by ~1e-5 and every check would pass."""
    import copy

    m = case.model
    hf = copy.deepcopy(m.hf).float().cpu()
    torch.manual_seed(4)
    with torch.no_grad():
        for param in hf.parameters():
            if param.dim() == 2:
                param.normal_(0, 0.3)
    m = probe.load(_save(hf, m.tokenizer, tmp_path))
    if m.kind == "causal":
        clean, bad, metric = (
            "The robot must not hurt the",
            "The human must not hurt the",
            ("logit_diff", " human", " robot"),
        )
    else:
        clean, bad, metric = (
            "The robot must [MASK] hurt the human.",
            "The human must [MASK] hurt the robot.",
            ("logit_diff", "not", "the"),
        )
    if case.name == "opt_350m_shape":
        with pytest.raises(probe.InputError, match="no path between its components"):
            probe.circuit(m, clean, bad, metric)
        return
    full = probe.circuit(m, clean, bad, metric, edges="all")
    assert abs(full.values["clean"] - full.values["corrupted"]) > 0.05
    assert full.faithfulness == pytest.approx(1.0, abs=1e-3)
    assert probe.circuit(m, clean, bad, metric, edges=0).faithfulness == pytest.approx(0.0, abs=1e-3)
    by_sender = full.scores.groupby("sender")["estimate"].sum()
    heads = probe.attribution_patching(m, clean, bad, metric, over="heads")
    assert heads["estimate"].abs().max() > 1e-2
    for row in heads.itertuples():
        assert by_sender[f"L{row.layer}H{row.head}"] == pytest.approx(row.estimate, abs=1e-5, rel=1e-4)
    own = full.scores[full.scores["sender"].str.startswith("L0H") & (full.scores["receiver"] == "MLP0")]
    assert own.empty == (m.adapter.block_form == "parallel")
