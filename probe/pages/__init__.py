"""Self-contained HTML reports: ``probe.report(text, models, path)``, and ``page`` for any figures.

One file per report, plotly.js inlined once (or, with ``plotly_js="beside"``, one shared file next to the
pages), no external URL, everything from text/tokens/models escaped.
"""

from __future__ import annotations

from probe.pages.build import report
from probe.pages.html import Block, Section, page

__all__ = ["report", "page", "Section", "Block"]
