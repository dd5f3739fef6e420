"""Big-model options on CPU: device_map and dtype pass through to transformers; offload moves captures."""

from __future__ import annotations

import pytest
import torch

import probe

TEXT = "The robot must not hurt the human."
TOL = dict(atol=1e-5, rtol=1e-4)


def test_device_map_cpu_loads_and_runs_the_same(tiny_gpt, tiny_gpt_path, monkeypatch):
    pytest.importorskip("accelerate")
    from transformers import AutoModelForCausalLM

    seen = {}
    original = AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.update(kwargs)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    mapped = probe.load(tiny_gpt_path, device_map="cpu", dtype="float32")
    assert seen["device_map"] == "cpu" and seen["dtype"] == torch.float32  # handed to transformers as given
    ours, theirs = mapped.run(TEXT), tiny_gpt.run(TEXT)
    torch.testing.assert_close(ours["logits"], theirs["logits"], **TOL)


def test_device_map_auto_on_a_cpu_machine(tiny_bert_path):
    pytest.importorskip("accelerate")
    model = probe.load(tiny_bert_path, device_map="auto")
    assert model.run("The robot must [MASK] hurt the human.").predictions(k=2)["rank"].tolist() == [1, 2]


def test_device_and_device_map_together_is_one_clear_error(tiny_gpt_path):
    with pytest.raises(probe.LoadError, match="not both"):
        probe.load(tiny_gpt_path, device="cpu", device_map="auto")


def test_dtype_auto_keeps_the_stored_dtype():
    model = probe.load("tiny-gpt", dtype="auto")  # the bundled weights are stored in float16
    assert next(model.hf.parameters()).dtype == torch.float16


def test_offload_cpu_gives_the_same_values(tiny_gpt):
    plain = tiny_gpt.run(TEXT, hooks=tiny_gpt.hook_names)
    off = tiny_gpt.run(TEXT, hooks=tiny_gpt.hook_names, offload="cpu")
    assert off.keys() == plain.keys()
    for name in plain.keys():
        assert off[name].device.type == "cpu"
        torch.testing.assert_close(off[name], plain[name], **TOL)
    assert off.logit_lens(k=2)["layer"].nunique() == tiny_gpt.n_layers + 1


def test_offload_moves_every_capture_inside_the_hook(tiny_gpt):
    """The 'meta' device stands in for a second device on a CPU-only machine: every stored value moved."""
    run = tiny_gpt.run([TEXT, "A robot"], hooks=["blocks.*.hook_resid_post", "blocks.*.attn.hook_q"], offload="meta")
    assert run.keys() and all(run[name].device.type == "meta" for name in run.keys())
    assert run["blocks.0.attn.hook_q"].shape[:2] == run.ids.shape


def test_offload_to_a_non_device_is_one_clear_error(tiny_gpt):
    with pytest.raises(probe.InputError, match="offload='gpu0' is not a device"):
        tiny_gpt.run(TEXT, offload="gpu0")


def test_dtype_auto_on_a_delta_checkpoint_is_float32():
    from probe.defaults import available

    if not available("minilm-mlm"):
        pytest.skip("minilm-mlm needs its base package")
    model = probe.load("minilm-mlm", dtype="auto")
    assert next(model.hf.parameters()).dtype == torch.float32


def test_an_unreachable_hub_fails_in_seconds_and_says_so(monkeypatch):
    """Without HF_HUB_OFFLINE, a hub id on a machine that cannot reach the hub used to cost ~25 s of
    retries; probe asks once (3 s at most) and then looks only in the local cache."""
    import socket
    import time

    import transformers

    from probe.core import loading
    from probe.errors import LoadError

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(loading, "_REACHABLE", {})
    seen = {}
    real = transformers.AutoConfig.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", spy)
    start = time.perf_counter()
    with pytest.raises(LoadError, match="cannot be reached from this machine") as info:
        probe.load("someone/some-model")
    assert time.perf_counter() - start < 10 and "\n" not in str(info.value)
    assert seen.get("local_files_only") is True  # a model already in the local cache would still load
