"""Groups of MLP neurons that fire together (NMF factors), and how alike the layers are (CKA).

python examples/why_factors.py
python examples/why_factors.py -m tiny-gpt -m tiny-bert
"""

from __future__ import annotations

import sys
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _why import parse  # noqa: E402

import probe  # noqa: E402
from probe.pages import page  # noqa: E402
from probe.pages.html import Section, figure_block, table_block  # noqa: E402
from probe.viz import cka as cka_view  # noqa: E402

TEXTS = [
    "The robot must not hurt the human.",
    "Paris is the capital of France, and Berlin is the capital of Germany.",
    "She went to the market to buy bread, milk and eggs.",
]


def main(argv: list[str] | None = None) -> Path:
    args = parse(__doc__.splitlines()[0], argv, text=TEXTS[0])
    texts = [args.text] + [t for t in TEXTS if t != args.text]
    models = [probe.load(name) for name in args.model]
    sections = []
    for model in models:
        frame = probe.factors(model, texts, n_components=6)  # [text_index, position, token, factor, weight]
        print(f"{model.name}: {frame.attrs['clipped_fraction']:.0%} of activations were negative and clipped")
        print(frame.neurons.groupby("factor").head(3).to_string(index=False))
        section = Section(title=f"{model.name} ({model.kind})", intro="NMF factors of every layer's MLP neurons.")
        section.blocks += [
            figure_block(frame.plot(), "Tokens by dominant factor", "Hover for the factor's top neurons."),
            table_block(frame.neurons, "Top neurons per factor", "frame.neurons"),
            figure_block(cka_view(probe.cka(model, texts=texts)), "Layer similarity", "linear CKA, layer x layer"),
        ]
        sections.append(section)
    pairs = Section(title="Across models", intro="Linear CKA, tokens averaged within each word.")
    for a, b in combinations(models, 2):
        frame = probe.cka(a, b, texts)
        pairs.blocks.append(figure_block(cka_view(frame), f"{a.name} vs {b.name}", f"{frame.attrs['n_items']} words"))
    if pairs.blocks:
        sections.append(pairs)
    path = page(sections, args.out / "why_factors.html", title="probe: neuron factors and CKA", text=args.text)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
