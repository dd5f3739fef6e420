"""Probing classifiers with control tasks: ``probe.fit_probes`` over an extraction or a frame.

A probe is a standardised, class-balanced logistic regression (scikit-learn) fitted per hook and scored
by cross-validation whose folds split by *document*, so no token of a test text was seen in training.
With ``control=True`` the same probe is fitted on a control task after Hewitt & Liang (2019): every
word type (token id; for one-row-per-text data, every text) gets a random label drawn from the real
labels' distribution. A probe that only memorises word identity does as well on the control task, so
``selectivity = accuracy - control_accuracy`` says how much the representation, not the probe, knows.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from probe.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

COLUMNS = ["hook", "layer", "accuracy", "control_accuracy", "selectivity", "n", "n_classes", "metric"]
GROUP_COLUMNS = ("doc_id", "text_index")


def fit_probes(
    out_or_frame: str | os.PathLike | pd.DataFrame,
    label: str | Sequence | np.ndarray,
    *,
    hooks: Sequence[str] | str | None = None,
    control: bool = True,
    cv: int = 5,
    task: str = "auto",
    max_rows: int | None = 20_000,
    seed: int = 0,
    scoring: str = "accuracy",
) -> tuple[pd.DataFrame, go.Figure]:
    """Fit one linear probe per hook for ``label`` and report accuracy, control accuracy and selectivity.

    Args:
        out_or_frame: an extraction folder (``probe.extract``), a Parquet file (``Run.to_parquet``) or a
            DataFrame of such rows (hook columns hold one array per row).
        label: a column name (a carried text-level label, or a token-level column you added) or one value
            per row, in the rows' order (``load_activations`` / ``pyarrow.dataset`` order).
        hooks: hook names or globs to probe; None -> every hook column.
        control: also fit the control task and report selectivity.
        cv: folds, split by document (GroupKFold on doc_id / text_index).
        task: "classification", "regression" (ridge, scored by R^2) or "auto" (regression only for
            float labels with more than 20 distinct values).
        max_rows: rows sampled (seeded) when there are more, to bound the fit time; None for all.
        seed: for the sampling and the control labels.
        scoring: "accuracy" or "balanced_accuracy" (mean recall over classes: use it for rare labels,
            where always answering the majority class already scores high).

    Returns:
        (DataFrame [hook, layer, accuracy, control_accuracy, selectivity, n, n_classes, metric], Figure):
        layer is the block index in the hook name (-1 outside the blocks); accuracy is the mean over
        folds of ``scoring`` (R^2 for regression; metric says which); the figure plots accuracy per layer with the
        control shaded.

    Example:
        >>> scores, fig = probe.fit_probes("acts", "starts_word", hooks="blocks.*.hook_resid_post")
    """
    import fnmatch

    import pandas as pd

    if cv < 2:
        raise InputError("cv must be at least 2 folds")
    if scoring not in ("accuracy", "balanced_accuracy"):
        raise InputError(f"scoring={scoring!r} is not one of accuracy, balanced_accuracy")
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise InputError("probing needs scikit-learn: pip install 'probe[probing]'") from None
    if task not in ("auto", "classification", "regression"):
        raise InputError(f"task={task!r} is not one of auto, classification, regression")
    meta, hook_cols, matrix = _open(out_or_frame)
    if isinstance(label, str):
        if label not in meta.columns:
            raise InputError(f"no label column '{label}'; columns are: {', '.join(meta.columns)}")
        y_all = meta[label].to_numpy()
    else:
        y_all = np.asarray(label)
        if len(y_all) != len(meta):
            raise InputError(f"label has {len(y_all)} values for {len(meta)} rows; give one per row")
    names = hook_cols
    if hooks is not None:
        patterns = [hooks] if isinstance(hooks, str) else list(hooks)
        names = [n for n in hook_cols if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
        missing = [p for p in patterns if not fnmatch.filter(hook_cols, p)]
        if missing:
            raise InputError(f"hook(s) {', '.join(missing)} not in the data; it holds {', '.join(hook_cols)}")
    if not names:
        raise InputError("the data holds no hook columns; extract some with probe.extract(..., hooks=...)")
    keep = ~pd.isna(y_all)
    group_col = next((c for c in GROUP_COLUMNS if c in meta.columns), None)
    if group_col is None:
        raise InputError("rows need a doc_id (or text_index) column so folds can split by document")
    rows = np.flatnonzero(keep)
    rng = np.random.default_rng(seed)
    if max_rows is not None and len(rows) > max_rows:
        rows = np.sort(rng.choice(rows, size=max_rows, replace=False))
    y = y_all[rows]
    groups = meta[group_col].to_numpy()[rows]
    regression = task == "regression" or (
        task == "auto" and np.issubdtype(np.asarray(y).dtype, np.floating) and len(np.unique(y)) > 20
    )
    n_classes = 0 if regression else len(np.unique(y))
    if not regression and n_classes < 2:
        raise InputError(f"label has {n_classes} class(es) among the rows; a probe needs at least two")
    n_docs = len(np.unique(groups))
    if n_docs < 2:
        raise InputError(f"only {n_docs} document(s); folds split by document, so give at least two")
    folds = min(cv, n_docs)
    types = _types(meta, rows, group_col)
    y_control = _control_labels(y, types, rng) if control else None
    notes = []
    if y_control is not None and not regression and len(np.unique(y_control)) < 2:
        kinds = len(np.unique(types))
        notes.append(
            f"control task skipped: the rows hold {kinds} word type(s) (with positions='mask' every row is the "
            "mask token), so its labels have one class; control_accuracy and selectivity are NaN"
        )
        y_control = None

    results = []
    for name in names:
        x = matrix(name, rows)
        metric = "r2" if regression else scoring
        acc = _score(x, y, groups, folds, metric)
        ctl = _score(x, y_control, groups, folds, metric) if y_control is not None else np.nan
        results.append(
            {
                "hook": name,
                "layer": _layer(name),
                "accuracy": acc,
                "control_accuracy": ctl,
                "selectivity": acc - ctl,
                "n": len(rows),
                "n_classes": n_classes,
                "metric": metric,
            }
        )
    frame = pd.DataFrame(results, columns=COLUMNS)
    frame.attrs["notes"] = notes
    from probe.core.plotting import view

    label_name = label if isinstance(label, str) else "label"
    return frame, view("probe_accuracy")(frame, title=f"Linear probes for '{label_name}'")


def _open(data):
    """-> (metadata frame, hook column names, matrix(name, rows) -> float32 [rows, d])."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        hook_cols = [c for c in data.columns if _is_hook(c)]
        meta = data.drop(columns=hook_cols).reset_index(drop=True)

        def matrix(name, rows):
            values = data[name].to_numpy()[rows]
            return np.stack([np.asarray(v, dtype=np.float32).ravel() for v in values])

        return meta, hook_cols, matrix
    import pyarrow.dataset as ds

    from probe.analysis.extract import load_activations

    path = Path(data).expanduser()
    if not path.exists():
        raise InputError(f"{path} does not exist; give an extraction folder, a Parquet file or a DataFrame")
    schema = ds.dataset(path, format="parquet").schema
    hook_cols = [f.name for f in schema if (f.metadata or {}).get(b"probe.shape")]
    meta = ds.dataset(path, format="parquet").to_table(columns=[c for c in schema.names if c not in hook_cols])
    meta = meta.to_pandas()

    def matrix(name, rows):
        values, _ = load_activations(path, name, columns=[])
        return np.nan_to_num(values[rows].astype(np.float32))

    return meta, hook_cols, matrix


def _is_hook(column: str) -> bool:
    return column == "logits" or "hook_" in column


def _layer(name: str) -> int:
    match = re.match(r"blocks\.(\d+)\.", name)
    return int(match.group(1)) if match else -1


def _types(meta, rows, group_col) -> np.ndarray:
    """The word type of each row for the control task: its token id, or its text for one row per text."""
    if "token_id" in meta.columns:
        ids = meta["token_id"].to_numpy()[rows]
        if (ids >= 0).any():
            return ids
    return meta[group_col].to_numpy()[rows]


def _control_labels(y: np.ndarray, types: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hewitt & Liang: each type gets one label drawn from the empirical label distribution."""
    unique, inverse = np.unique(types, return_inverse=True)
    drawn = rng.choice(y, size=len(unique), replace=True)
    return drawn[inverse]


def _score(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, scoring: str) -> float:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if scoring == "r2":
        model = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
    else:
        model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=300))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            scores = cross_val_score(
                model, x, y, groups=groups, cv=GroupKFold(n_splits=folds), scoring=scoring, error_score="raise"
            )
        except ValueError as err:  # e.g. a fold whose training documents all carry one class
            reason = str(err).strip().splitlines()[0]
            raise InputError(
                f"a probe could not be fitted ({reason}); give more documents per class or fewer folds (cv)"
            ) from None
    return float(np.mean(scores))
