"""probe: look inside transformer language models through one hook API.

>>> import probe
>>> gpt = probe.load("tiny-gpt")
>>> run = gpt.run("The robot must not hurt the")
>>> run.predictions(k=5)          # next-token distribution
>>> run.logit_lens(target="human")  # what every layer would predict
"""

from __future__ import annotations

from probe.cards import models
from probe.compare import compare
from probe.errors import HookNameError, InputError, LoadError, NoHeadError, ProbeError
from probe.model import Model, load
from probe.report import report
from probe.run import Run

__all__ = [
    "load",
    "Model",
    "Run",
    "compare",
    "report",
    "models",
    "ProbeError",
    "LoadError",
    "HookNameError",
    "InputError",
    "NoHeadError",
]
__version__ = "0.1.0"
