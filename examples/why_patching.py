"""Where does a one-word change matter? Activation patching over layers x positions and heads, plus
a head ablation and a steered generation.

python examples/why_patching.py
python examples/why_patching.py -m tiny-gpt --text "The robot must not hurt the" --corrupted "The robot will not hurt the"
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import text_for  # noqa: E402
from _why import parse  # noqa: E402

import probe  # noqa: E402
from probe.pages import page  # noqa: E402
from probe.pages.html import Section, figure_block, note_block  # noqa: E402
from probe.viz import patching as patching_view  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    args = parse(
        __doc__.splitlines()[0],
        argv,
        text="The robot must [MASK] hurt the human.",
        corrupted="The robot will [MASK] hurt the human.",
    )
    sections = []
    for name in args.model:
        model = probe.load(name)
        clean, bad = text_for(model, args.text), text_for(model, args.corrupted)
        answer = int(model.run(clean).logits_at().argmax())
        rival = int(model.run(bad).logits_at().argmax())
        metric = ("logit_diff", answer, rival) if answer != rival else ("logprob", answer)
        section = Section(title=f"{model.name} ({model.kind})", intro="clean vs corrupted", text=f"{clean} | {bad}")
        for over in ("resid_pre", "heads"):
            frame = probe.patching(model, clean, bad, metric=metric, over=over)
            best = frame.loc[frame["normalized_effect"].abs().idxmax()]
            print(f"{model.name} {over}: {frame.attrs['metric']}, strongest {best.to_dict()}")
            section.blocks.append(figure_block(patching_view(frame), over, "1 = the clean behaviour restored"))
        ablated = probe.ablate(model, clean, heads=[(0, 0)])
        top = ablated.predictions(k=1)["token"].iloc[0]
        section.blocks.append(note_block(f"With head 0.0 zero-ablated the top prediction is {top!r}."))
        if model.kind == "causal":
            text, _ = probe.steer(
                model, clean, (" love", " hate"), layer=model.n_layers // 2, scale=4, max_new_tokens=8
            )
            section.blocks.append(note_block(f"Steered towards ' love' - ' hate': {text!r}"))
        sections.append(section)
    path = page(sections, args.out / "why_patching.html", title="probe: activation patching", text=args.text)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
