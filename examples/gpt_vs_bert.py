"""GPT vs BERT: how do they fill "The robot must [MASK] hurt the human."? Side by side, layer by layer.

python examples/gpt_vs_bert.py
python examples/gpt_vs_bert.py -m gpt2 -m bert-base-uncased --text "Paris is the [MASK] of France."
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import parse  # noqa: E402

import probe  # noqa: E402
from probe.analysis.compare import compare  # noqa: E402
from probe.pages import report  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    args = parse(__doc__.splitlines()[0], argv)
    models = [probe.load(m) for m in args.model]  # load once, use for the table and the report
    frame = compare(args.text, models, k=10, rescore=True)
    for (name, method), part in frame.groupby(["model", "method"], sort=False):
        words = ", ".join(f"{w} {p:.1%}" for w, p in zip(part["word"].head(5), part["prob"].head(5)))
        print(f"{name:>12} {method:<10} {words}")
    print(frame.agreement.to_string(index=False))
    print(frame.layers.to_string(index=False))
    path = report(args.text, models, args.out / "gpt_vs_bert.html", plotly_js=args.plotly_js)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
