"""Shared command-line options of the examples: --model (repeatable), --text, --out."""

from __future__ import annotations

import argparse
from pathlib import Path

from probe.defaults import DEFAULT_TEXT, default_models


def parse(description: str, argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument(
        "--model",
        "-m",
        action="append",
        help="model name or folder; repeat (default: probe.default_models(): smollm2-135m + minilm-mlm when installed, else tiny-gpt + tiny-bert)",
    )
    ap.add_argument("--text", default=DEFAULT_TEXT, help="the sentence; [MASK] marks the slot")
    ap.add_argument("--out", type=Path, default=Path("."), help="folder for the HTML page")
    ap.add_argument(
        "--shared-plotly",
        dest="plotly_js",
        action="store_const",
        const="beside",
        default="inline",
        help="write plotly.js once next to the page instead of inlining it (for a folder of pages)",
    )
    args = ap.parse_args(argv)
    args.model = args.model or default_models()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def text_for(model, text: str) -> str:
    """The sentence as a model reads it: masked models get their mask token, causal ones the left side."""
    from probe.analysis.compare import MASK

    if MASK not in text:
        return text
    if model.kind == "causal":
        return text.split(MASK)[0].rstrip() or text.replace(MASK, "").strip()
    return text.replace(MASK, model.tokenizer.mask_token or "")
