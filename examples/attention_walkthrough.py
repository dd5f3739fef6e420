"""Attention, step by step: every head at once, which heads are focused, then one head up close.

python examples/attention_walkthrough.py
python examples/attention_walkthrough.py -m tiny-gpt --text "The cat sat on the mat."
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import parse, text_for  # noqa: E402

import probe  # noqa: E402
from probe.pages import page  # noqa: E402
from probe.pages.html import Section, figure_block  # noqa: E402
from probe.viz.attention import entropy  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    args = parse(__doc__.splitlines()[0], argv)
    sections = []
    for name in args.model:
        model = probe.load(name)
        text = text_for(model, args.text)
        run = model.run(text, hooks=["blocks.*.attn.hook_pattern"])  # only what we need
        bits = entropy(run)  # [layer, head] mean entropy in bits
        layer, head = divmod(int(bits.argmin()), model.n_heads)  # the most focused head
        print(f"{model.name}: most focused head is layer {layer} head {head} ({bits[layer, head]:.2f} bits)")
        section = Section(title=f"{model.name} ({model.kind})", intro="From all heads to one.", text=text)
        section.blocks += [
            figure_block(
                run.plot.attention_grid(),
                "1. Every head",
                "Rows are layers, columns heads; each square is one head's pattern.",
            ),
            figure_block(
                run.plot.attention_entropy(),
                "2. Which heads focus?",
                "Mean entropy in bits: low values are heads that look at one token.",
            ),
            figure_block(
                run.plot.attention(layer, head),
                f"3. The most focused head: layer {layer}, head {head}",
                "Each row is a query token; its colours show how it splits its attention over the keys.",
            ),
            figure_block(run.plot.attention_heads(), "4. Explore", "Pick any layer and head."),
        ]
        sections.append(section)
    path = page(
        sections,
        args.out / "attention_walkthrough.html",
        title="probe: attention walk-through",
        text=args.text,
        plotly_js=args.plotly_js,
    )
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
