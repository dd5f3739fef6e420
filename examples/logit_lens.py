"""The logit lens: what would each layer predict if the model stopped there?

python examples/logit_lens.py
python examples/logit_lens.py -m tiny-gpt --text "Paris is the capital of"
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import parse, text_for  # noqa: E402

import probe  # noqa: E402
from probe.pages import page  # noqa: E402
from probe.pages.html import Section, figure_block, table_block  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    args = parse(__doc__.splitlines()[0], argv)
    sections = []
    for name in args.model:
        model = probe.load(name)
        text = text_for(model, args.text)
        run = model.run(text)
        answer = run.predictions(k=1)  # the model's final answer at the slot
        target = int(answer["token_id"].iloc[0])
        lens = run.logit_lens(k=3, target=target)  # [layer, rank, token, prob, target_rank, target_prob]
        print(f"{model.name}: final answer {answer['token'].iloc[0]!r}")
        print(lens[lens["rank"] == 1][["layer", "token", "prob", "target_rank"]].to_string(index=False))
        section = Section(
            title=f"{model.name} ({model.kind})", intro="The model's head applied to every layer.", text=text
        )
        section.blocks += [
            figure_block(
                run.plot.logit_lens(),
                "Every layer, every position",
                "Cell text: that layer's top token; colour: its probability.",
            ),
            figure_block(
                run.plot.lens_target(target),
                f"When does {answer['token'].iloc[0]!r} win?",
                "Rank and probability of the final answer at the slot, layer by layer.",
            ),
            table_block(lens, "The lens as a frame", "run.logit_lens(k=3, target=...)"),
        ]
        sections.append(section)
    path = page(
        sections, args.out / "logit_lens.html", title="probe: logit lens", text=args.text, plotly_js=args.plotly_js
    )
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
