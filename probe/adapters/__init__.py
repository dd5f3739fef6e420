"""Model families. Adding one (DistilBERT, RoBERTa, Pythia, Llama) is one small file and one line here."""

from __future__ import annotations

from probe.adapters.base import Adapter, Point
from probe.adapters.bert import BertAdapter
from probe.adapters.gpt2 import GPT2Adapter
from probe.adapters.llama import LlamaAdapter

# model_type (config.json) -> adapter; Mistral and Qwen2 have Llama's shape and module names
ADAPTERS: dict[str, type[Adapter]] = {
    "gpt2": GPT2Adapter,
    "bert": BertAdapter,
    "llama": LlamaAdapter,
    "mistral": LlamaAdapter,
    "qwen2": LlamaAdapter,
}

__all__ = ["ADAPTERS", "Adapter", "Point"]
