"""The one door from the lower layers up to the figures, pandas' ``df.plot`` pattern: results of the core
and analysis layers (``Run.plot``, ``CompareFrame.plot``, ``Factors.plot``, ``fit_probes``' figure) offer
a plot that imports ``probe.viz`` only when called. Nothing else below ``probe.viz`` imports it (the
import contract in pyproject.toml allows this module alone)."""

from __future__ import annotations


def view(name: str):
    """The view ``probe.viz.<name>`` (a function or class), imported on first use."""
    from probe import viz

    return getattr(viz, name)
