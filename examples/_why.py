"""Options of the "why" examples: --model (default: probe.default_models(), the real models when
installed, else the bundled tiny ones), --text, --out."""

from __future__ import annotations

import argparse
from pathlib import Path


def parse(description: str, argv: list[str] | None, text: str, **extra: str) -> argparse.Namespace:
    from probe.defaults import default_models

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument(
        "--model", "-m", action="append", help="model name or folder; repeat (default: probe.default_models())"
    )
    ap.add_argument("--text", default=text, help="the sentence; [MASK] marks the slot")
    for name, default in extra.items():
        ap.add_argument(f"--{name}", default=default)
    ap.add_argument("--out", type=Path, default=Path("."), help="folder for the HTML page")
    args = ap.parse_args(argv)
    if not args.model:
        args.model, notice = default_models()
        if notice:
            print(notice)
    args.out.mkdir(parents=True, exist_ok=True)
    return args
