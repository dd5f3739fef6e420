"""What a ``patch={...}`` argument means: hook names or globs resolved to the values or functions that
replace an activation. (The writing hooks themselves still live in ``capture``.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from probe.core.capture import resolve_names
from probe.errors import PatchError

if TYPE_CHECKING:
    from probe.core.model import Model


def resolve_patch(model: Model, patch: dict) -> dict:
    """{name or glob: tensor | fn} -> {hook name: tensor | fn}; unknown names raise ``HookNameError``."""
    if not isinstance(patch, dict):
        raise PatchError(f"patch must be a dict {{hook name: tensor or fn}}, got {type(patch).__name__}")
    out = {}
    for key, spec in patch.items():
        if not isinstance(key, str):
            raise PatchError(f"patch keys are hook names, got {key!r}")
        if not isinstance(spec, torch.Tensor) and not callable(spec):
            raise PatchError(
                f"patch for '{key}' is a {type(spec).__name__}; pass a tensor or a function fn(value, ctx) -> value"
            )
        for name in resolve_names([key], model.hook_names, model.name):
            out[name] = spec
    return out
