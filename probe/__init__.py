"""probe: look inside transformer language models through one hook API.

>>> import probe
>>> gpt = probe.load("tiny-gpt")
>>> run = gpt.run("The robot must not hurt the")
>>> run.predictions(k=5)          # next-token distribution
>>> run.logit_lens(target="human")  # what every layer would predict

``import probe`` is cheap: torch and transformers are imported the first time a model is loaded or a
public name that needs them is touched (module ``__getattr__`` below), so the CLI starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from probe.errors import HookNameError, InputError, LoadError, NoHeadError, ProbeError

__version__ = "0.2.0"

# public name -> module that defines it; imported on first access
_LAZY = {
    "load": "probe.model",
    "Model": "probe.model",
    "Run": "probe.run",
    "compare": "probe.compare",
    "report": "probe.report",
    "models": "probe.cards",
    "verify": "probe.verify",
    "default_models": "probe.defaults",
    "extract": "probe.extract",
    "load_activations": "probe.extract",
    "fit_probes": "probe.probing",
}

__all__ = [
    "load",
    "Model",
    "Run",
    "compare",
    "report",
    "models",
    "verify",
    "default_models",
    "extract",
    "load_activations",
    "fit_probes",
    "ProbeError",
    "LoadError",
    "HookNameError",
    "InputError",
    "NoHeadError",
    "__version__",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'probe' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs only
    from probe.cards import models
    from probe.compare import compare
    from probe.defaults import default_models
    from probe.extract import extract, load_activations
    from probe.model import Model, load
    from probe.probing import fit_probes
    from probe.report import report
    from probe.run import Run
    from probe.verify import verify
