"""A tour of probe's API: load, run, predictions, logit lens, tidy frames, generation and figures.

python examples/api_tour.py                      # tiny-gpt and tiny-bert
python examples/api_tour.py -m gpt2 --out /tmp   # any causal or masked model
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import parse, text_for  # noqa: E402

import probe  # noqa: E402
from probe.pages import page  # noqa: E402
from probe.pages.html import Section, figure_block, table_block  # noqa: E402
from probe.viz import generation  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    args = parse(__doc__.splitlines()[0], argv)
    sections = []
    for name in args.model:
        model = probe.load(name)  # a bundled name, a local checkpoint folder or a hub id
        print(model)
        text = text_for(model, args.text)
        print("tokens:", model.tokenize(text))

        run = model.run(text)  # default hooks: residual stream, attention patterns, logits
        print(run)
        top = run.predictions(k=5)  # next token (causal) or [MASK] filler (masked)
        print(top.to_string(index=False))
        lens = run.logit_lens(k=1)  # what every layer would predict at the same position
        print(lens[["layer", "token", "prob"]].to_string(index=False))
        frame = run.to_frame("blocks.0.hook_resid_pre")  # tidy long frame: position, token, dim, value
        print(frame.head(3).to_string(index=False))

        section = Section(title=f"{model.name} ({model.kind})", intro="What one forward pass gives you.", text=text)
        section.blocks += [
            figure_block(run.plot.tokens(), "Tokens", "The text as the model's tokens, with ids."),
            figure_block(run.plot.predictions(k=10), "Predictions", "The model's top-10 at the slot."),
            figure_block(run.plot.logit_lens(), "Logit lens", "Each layer's top guess at each position."),
            table_block(top, "Top-5 as a frame", "run.predictions(k=5)"),
        ]
        if model.kind == "causal":
            generated, steps = model.generate(text, max_new_tokens=6, k=5)
            print("generated:", generated)
            section.blocks.append(figure_block(generation(steps), "Generation", f"Greedy continuation: {generated!r}"))
        sections.append(section)
    path = page(sections, args.out / "api_tour.html", title="probe: API tour", text=args.text, plotly_js=args.plotly_js)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
