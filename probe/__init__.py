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

import sys
import types
from typing import TYPE_CHECKING

from probe.errors import (
    DependencyError,
    HookNameError,
    InputError,
    LoadError,
    NoHeadError,
    PatchError,
    ProbeError,
)

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
    "ablate": "probe.intervene",
    "steer": "probe.intervene",
    "patching": "probe.intervene",
    "PatchContext": "probe.hooks",
    "attribute": "probe.attribute",
    "factors": "probe.factors",
    "cka": "probe.factors",
    "dashboard": "probe.dashboard",
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
    "ablate",
    "steer",
    "patching",
    "PatchContext",
    "attribute",
    "factors",
    "cka",
    "dashboard",
    "extract",
    "load_activations",
    "fit_probes",
    "ProbeError",
    "LoadError",
    "HookNameError",
    "InputError",
    "NoHeadError",
    "PatchError",
    "DependencyError",
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


class _Package(types.ModuleType):
    """Importing a submodule sets it as an attribute of the package; where a public function has its
    module's name (``probe.factors``, ``probe.attribute``, ``probe.compare``, ``probe.report``), keep the
    function, so ``probe.factors(...)`` works even after ``from probe.factors import linear_cka``."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == value.__name__ and hasattr(value, name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # for type checkers and IDEs only
    from probe.attribute import attribute
    from probe.cards import models
    from probe.compare import compare
    from probe.dashboard import dashboard
    from probe.defaults import default_models
    from probe.extract import extract, load_activations
    from probe.factors import cka, factors
    from probe.hooks import PatchContext
    from probe.intervene import ablate, patching, steer
    from probe.model import Model, load
    from probe.probing import fit_probes
    from probe.report import report
    from probe.run import Run
    from probe.verify import verify
