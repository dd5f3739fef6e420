"""Model families. Adding one (say Llama) is one small file and one ``Family`` row in ``FAMILIES``.

This module is torch-free: the registry is plain data (``probe models`` and the loader's "unsupported
architecture" message read it without importing torch); the adapter classes are imported on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from probe.core.adapters.base import Adapter, Point

    ADAPTERS: dict[str, type[Adapter]]


@dataclass(frozen=True)
class Family:
    """A supported model family: HF ``model_type``, its adapter, and checkpoints to try it on.

    ``examples`` are (hub id, kind) pairs, kind as ``Model.kind``: "causal", "masked" or "encoder".
    """

    model_type: str
    adapter: str  # "module:Class" inside probe.core.adapters, imported lazily
    examples: tuple[tuple[str, str], ...]


FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in [
        Family("gpt2", "gpt2:GPT2Adapter", (("gpt2", "causal"), ("distilgpt2", "causal"))),
        Family("bert", "bert:BertAdapter", (("bert-base-uncased", "masked"),)),
        Family("gpt_neo", "gpt_neo:GPTNeoAdapter", (("EleutherAI/gpt-neo-125m", "causal"),)),
        Family("gpt_neox", "gpt_neox:GPTNeoXAdapter", (("EleutherAI/pythia-70m", "causal"),)),
        Family("opt", "opt:OPTAdapter", (("facebook/opt-125m", "causal"),)),
        Family("roberta", "roberta:RobertaAdapter", (("FacebookAI/roberta-base", "masked"),)),
        Family("distilbert", "distilbert:DistilBertAdapter", (("distilbert/distilbert-base-uncased", "masked"),)),
        # Mistral and Qwen2 have Llama's shape and module names: one adapter
        Family("llama", "llama:LlamaAdapter", (("HuggingFaceTB/SmolLM2-135M", "causal"),)),
        Family("mistral", "llama:LlamaAdapter", (("mistralai/Mistral-7B-v0.1", "causal"),)),
        Family("qwen2", "llama:LlamaAdapter", (("Qwen/Qwen2.5-0.5B", "causal"),)),
    ]
}


def adapter_class(model_type: str) -> type[Adapter]:
    """The adapter class for an HF ``config.model_type`` (KeyError if unsupported)."""
    module, cls = FAMILIES[model_type].adapter.split(":")
    return getattr(import_module(f"probe.core.adapters.{module}"), cls)


def supported() -> str:
    """The supported families with an example checkpoint each, as one line for error messages.

    Example: "gpt2 (e.g. gpt2), bert (e.g. bert-base-uncased), gpt_neo (e.g. EleutherAI/gpt-neo-125m), ..."
    """
    return ", ".join(f"{f.model_type} (e.g. {f.examples[0][0]})" for f in FAMILIES.values())


def __getattr__(name: str):
    if name == "ADAPTERS":  # model_type -> adapter class; importing them imports torch, hence lazy
        return {model_type: adapter_class(model_type) for model_type in FAMILIES}
    if name in ("Adapter", "Point"):
        return getattr(import_module("probe.core.adapters.base"), name)
    raise AttributeError(f"module 'probe.core.adapters' has no attribute {name!r}")


__all__ = ["ADAPTERS", "FAMILIES", "Adapter", "Family", "Point", "adapter_class", "supported"]
