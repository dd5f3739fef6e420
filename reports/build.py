"""Regenerate the report gallery: every example's page on probe.default_models(), plus index.html.

python reports/build.py                      # writes reports/*.html and the one plotly.js file they share
python reports/build.py -m PATH -m PATH --out /tmp/gallery   # other models, elsewhere
python reports/build.py --self-contained     # inline plotly.js into every page instead

The pages share one plotly.js file beside them (the report writer's plotly_js="beside"): four pages with
their own copy would add ~20 MB to the history at every regeneration.
"""

from __future__ import annotations

import argparse
import html
import importlib.util
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = [
    ("gpt_vs_bert", "GPT vs BERT", "The full report: how each model fills the slot, side by side and layer by layer."),
    ("api_tour", "API tour", "Tokens, predictions, logit lens and generation: what one forward pass gives you."),
    ("attention_walkthrough", "Attention walk-through", "From all heads at once to the most focused head."),
    ("logit_lens", "Logit lens", "What each layer would predict, and when the final answer wins."),
]


def _example(name: str):
    spec = importlib.util.spec_from_file_location(f"probe_example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def index_html(entries: list[tuple[str, str, str, int]], models: list[str], text: str, shared: str = "") -> str:
    rows = "\n".join(
        f'<li><a href="{html.escape(file)}">{html.escape(title)}</a> <span class="size">({size / 1e6:.1f} MB)</span>'
        f'<br><span class="what">{html.escape(what)}</span></li>'
        for file, title, what, size in entries
    )
    offline = (
        f"The pages work offline and share <code>{html.escape(shared)}</code>: keep the folder together."
        if shared
        else "Each page is self-contained and works offline."
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>probe report gallery</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; margin: 32px; color: #1f2328; }}
li {{ margin: 12px 0; }} a {{ color: #1f77b4; font-size: 18px; }} .what, .size {{ color: #57606a; }}
code {{ background: #f6f8fa; padding: 2px 6px; border-radius: 4px; }}
</style></head><body>
<h1>probe report gallery</h1>
<p>Made by <code>python reports/build.py</code> with the models {html.escape(", ".join(models))}
on the sentence <code>{html.escape(text)}</code>. {offline}</p>
<ul>
{rows}
</ul>
</body></html>
"""


def main(argv: list[str] | None = None) -> Path:
    from probe.defaults import DEFAULT_TEXT, default_models
    from probe.pages.html import plotly_js_file, write_atomic

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model",
        "-m",
        action="append",
        help="model name or folder; repeat (default: probe.default_models(): smollm2-135m + minilm-mlm when installed, else tiny-gpt + tiny-bert)",
    )
    ap.add_argument("--text", default=DEFAULT_TEXT)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--self-contained", action="store_true", help="inline plotly.js into every page")
    args = ap.parse_args(argv)
    models = args.model or default_models()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    passed = sum((["--model", m] for m in models), []) + ["--text", args.text, "--out", str(args.out)]
    passed += [] if args.self_contained else ["--shared-plotly"]
    entries = []
    for name, title, what in EXAMPLES:
        start = time.perf_counter()
        path = _example(name).main(passed)
        print(f"{name}: {path} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        entries.append((path.name, title, what, path.stat().st_size))
    shared = "" if args.self_contained else plotly_js_file(args.out)
    index = write_atomic(args.out / "index.html", index_html(entries, models, args.text, shared))
    print(f"wrote {index}")
    return index


if __name__ == "__main__":
    main()
