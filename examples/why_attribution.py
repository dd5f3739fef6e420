"""Which tokens drove the prediction? Integrated gradients (captum) per token, for each model.

python examples/why_attribution.py
python examples/why_attribution.py -m tiny-gpt --text "Paris is the capital of"
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import text_for  # noqa: E402
from _why import parse  # noqa: E402

import probe  # noqa: E402
from probe.pages import page  # noqa: E402
from probe.pages.html import Section, figure_block, table_block  # noqa: E402
from probe.viz import attribution  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    args = parse(__doc__.splitlines()[0], argv, text="The robot must [MASK] hurt the human.")
    sections = []
    for name in args.model:
        model = probe.load(name)
        text = text_for(model, args.text)
        section = Section(
            title=f"{model.name} ({model.kind})", intro="Attribution of the model's own answer.", text=text
        )
        for method in ("integrated_gradients", "occlusion"):
            frame = probe.attribute(model, text, method=method)  # [position, token, attribution, method]
            a = frame.attrs
            print(f"{model.name} {method}: target {a['target']!r}, log-prob {a['target_value']:.3f}")
            if method == "integrated_gradients":
                span = a["target_value"] - a["baseline_value"]
                print(
                    f"  sum {frame['attribution'].sum():.4f} = f(x) - f(baseline) {span:.4f} (delta {a['convergence_delta']:.1e})"
                )
            section.blocks.append(
                figure_block(attribution(frame), method, f"baseline: the {a['baseline']} token's embedding")
            )
        section.blocks.append(
            table_block(frame, "Occlusion as a frame", "probe.attribute(model, text, method='occlusion')")
        )
        sections.append(section)
    path = page(sections, args.out / "why_attribution.html", title="probe: attribution", text=args.text)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
