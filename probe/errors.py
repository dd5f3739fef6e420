"""Every user-facing failure is a ProbeError: one line naming the problem and the fix."""

from __future__ import annotations

__all__ = ["ProbeError", "LoadError", "HookNameError", "InputError", "NoHeadError", "PatchError", "DependencyError"]


class ProbeError(Exception):
    """Base class. The CLI prints ``str(err)`` as one line and exits with code 2."""


class LoadError(ProbeError):
    """A model could not be loaded (unknown name, hub unreachable, unsafe checkpoint, unknown family)."""


class HookNameError(ProbeError, KeyError):
    """A hook name or pattern matches no hook point of the model."""

    def __str__(self) -> str:  # KeyError would repr() the message; we want it plain
        return str(self.args[0])


class InputError(ProbeError, ValueError):
    """Inputs the model cannot take: empty text, too long, no [MASK] where one is needed, bad position."""


class NoHeadError(ProbeError):
    """The model has no language-model head, so it has no token distribution to show."""


class PatchError(InputError):
    """A patch that cannot be applied: wrong shape, a hook that never fires, an edit that returns junk."""


class DependencyError(ProbeError):
    """An optional package an analysis needs is not installed (captum, scikit-learn)."""


def need(module: str, extra: str = "why"):
    """Import an optional dependency or raise DependencyError saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        package = {"sklearn": "scikit-learn"}.get(top, top)
        raise DependencyError(
            f"this analysis needs {package}, which is not installed; pip install 'probe[{extra}]' (or {package})"
        ) from None
