"""Model families. Adding one (DistilBERT, RoBERTa, Pythia, Llama) is one small file and one line here."""

from __future__ import annotations

from probe.adapters.base import Adapter, Point
from probe.adapters.bert import BertAdapter
from probe.adapters.gpt2 import GPT2Adapter

ADAPTERS: dict[str, type[Adapter]] = {"gpt2": GPT2Adapter, "bert": BertAdapter}

__all__ = ["ADAPTERS", "Adapter", "Point"]
