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

import warnings
from types import ModuleType
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

# In a notebook without ipywidgets, the first import of tqdm.auto (transformers and huggingface_hub make
# it) warns "IProgress not found" on stderr: noise under every first cell that loads a model. Only that
# message is silenced; probe's own progress bars use plain tqdm on a terminal.
warnings.filterwarnings("ignore", message="IProgress not found")

# public name -> module that defines it; imported on first access
_LAZY = {
    "load": "probe.core.model",
    "Model": "probe.core.model",
    "Run": "probe.core.run",
    "compare": "probe.analysis.compare",
    "report": "probe.pages",
    "models": "probe.cards",
    "verify": "probe.analysis.verify",
    "default_models": "probe.defaults",
    "ablate": "probe.analysis.intervene",
    "steer": "probe.analysis.intervene",
    "patching": "probe.analysis.intervene",
    "PatchContext": "probe.core.patch",
    "attribute": "probe.analysis.attribute",
    "attribute_generation": "probe.analysis.attribute",
    "dla": "probe.analysis.dla",
    "attribution_patching": "probe.analysis.atp",
    "path_patching": "probe.analysis.paths",
    "circuit": "probe.analysis.circuit",
    "agreement": "probe.analysis.agreement",
    "attention_neurons": "probe.analysis.inside_head",
    "head_scores": "probe.analysis.heads",
    "train_lens": "probe.analysis.tuned_lens",
    "load_lens": "probe.analysis.tuned_lens",
    "TunedLens": "probe.analysis.tuned_lens",
    "factors": "probe.analysis.factors",
    "cka": "probe.analysis.factors",
    "dashboard": "probe.app",
    "extract": "probe.analysis.extract",
    "load_activations": "probe.analysis.extract",
    "fit_probes": "probe.analysis.probing",
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
    "attribute_generation",
    "dla",
    "attribution_patching",
    "path_patching",
    "circuit",
    "agreement",
    "attention_neurons",
    "head_scores",
    "train_lens",
    "load_lens",
    "TunedLens",
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
    """The public names and probe's subpackages, not this module's own imports (warnings, TYPE_CHECKING)."""
    subpackages = {n for n, v in globals().items() if isinstance(v, ModuleType) and v.__name__.startswith("probe.")}
    return sorted(set(__all__) | subpackages)


if TYPE_CHECKING:  # for type checkers and IDEs only
    from probe.analysis.attribute import attribute, attribute_generation
    from probe.analysis.compare import compare
    from probe.analysis.extract import extract, load_activations
    from probe.analysis.factors import cka, factors
    from probe.analysis.intervene import ablate, patching, steer
    from probe.analysis.probing import fit_probes
    from probe.analysis.tuned_lens import TunedLens, load_lens, train_lens
    from probe.analysis.verify import verify
    from probe.app import dashboard
    from probe.cards import models
    from probe.core.model import Model, load
    from probe.core.patch import PatchContext
    from probe.core.run import Run
    from probe.defaults import default_models
    from probe.pages import report
