"""CompareFrame: the DataFrame ``probe.compare`` returns, with its agreement, layers and plots attached.

Kept apart from ``probe.compare`` so that ``import probe`` does not import pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import plotly.graph_objects as go


class CompareFrame(pd.DataFrame):
    """A long frame [model, kind, method, rank, word, prob, token, token_id, log_prob] plus views.

    Everything extra lives in ``.attrs`` (plain records), so it survives filtering, sorting and pickling;
    filtered frames stay CompareFrames.
    """

    @property
    def _constructor(self):
        return CompareFrame

    @property
    def agreement(self) -> pd.DataFrame:
        """[a, b, overlap_at_k, shared, spearman, kendall]: one row per pair of ranked word lists."""
        return pd.DataFrame(
            self.attrs.get("agreement", []), columns=["a", "b", "overlap_at_k", "shared", "spearman", "kendall"]
        )

    @property
    def layers(self) -> pd.DataFrame:
        """[model, kind, layer, n_layers, depth, word, target_rank, target_prob]: the logit-lens rank of each
        model's final top word at every layer (layer 0 = embeddings, n_layers = output)."""
        columns = ["model", "kind", "layer", "n_layers", "depth", "word", "target_rank", "target_prob"]
        return pd.DataFrame(self.attrs.get("layers", []), columns=columns)

    def plot(self, top: int | None = None) -> go.Figure:  # type: ignore[override]
        """Side-by-side bar charts, one panel per model and method, words on a shared axis."""
        from probe.core.plotting import view

        return view("comparison")(self, top=top)

    def plot_layers(self) -> go.Figure:
        """The rank of each model's final top word at every layer (logit lens), all models in one chart."""
        from probe.core.plotting import view

        return view("compare_layers")(self)
