"""Linear probes with control tasks: which layers encode word starts, parentheses and "after the [MASK]"?

python examples/probing.py                       # the default models (real ones when installed)
python examples/probing.py -m tiny-gpt --out /tmp

Needs no data download: the corpus is the Wikipedia sample in tests/data (CC BY-SA), cut into
sentences, with a few words put in parentheses and, for masked models, one word replaced by [MASK].
Every label is computed from the text itself (character offsets of each token), so it is exact:

- starts_word: the token begins a word (a property of the token type, which the control task can
  partly memorise: expect lower selectivity);
- in_parens: the token lies inside parentheses (needs the context: a selective probe must read it);
- after_mask: the token comes after the [MASK] (masked models; needs the context too).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "heldout_sample.txt"

import probe  # noqa: E402
from probe.pages import page  # noqa: E402
from probe.pages.html import Section, figure_block, note_block, table_block  # noqa: E402


def sentences(seed: int = 0, limit: int = 240) -> list[str]:
    """Sentences of the sample, a third with a random 2-4 word span put in parentheses."""
    rng = np.random.default_rng(seed)
    text = CORPUS.read_text(encoding="utf-8")
    out = []
    for s in re.split(r"(?<=[.!?])\s+", text):
        words = s.split()
        if not 6 <= len(words) <= 40:
            continue
        if "(" not in s and rng.random() < 0.34:
            i = int(rng.integers(1, len(words) - 3))
            j = i + int(rng.integers(2, 5))
            words = words[:i] + ["(" + " ".join(words[i:j]) + ")"] + words[j:]
        out.append(" ".join(words))
    return out[:limit]


def with_mask(texts: list[str], mask: str, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for t in texts:
        words = t.split()
        i = int(rng.integers(1, len(words) - 1))
        out.append(" ".join(words[:i] + [mask] + words[i + 1 :]))
    return out


def token_labels(model, texts: list[str], max_length: int) -> dict[tuple[int, int], dict[str, bool]]:
    """(doc_id, position) -> labels, from each token's character span as the tokenizer reports it."""
    enc = model.tokenizer(texts, add_special_tokens=True, return_offsets_mapping=True, verbose=False)
    special = set(model.tokenizer.all_special_ids)
    mask = model.tokenizer.mask_token
    labels = {}
    for doc, (text, ids, spans) in enumerate(zip(texts, enc["input_ids"], enc["offset_mapping"])):
        mask_at = text.find(mask) if mask and mask in text else -1
        for pos, (tid, (start, end)) in enumerate(list(zip(ids, spans))[:max_length]):
            if tid in special or end <= start:
                continue
            depth = text[:start].count("(") - text[:start].count(")")
            labels[(doc, pos)] = {
                "starts_word": start == 0 or text[start - 1].isspace() or text[start].isspace(),
                "in_parens": depth > 0 and not text[start:end].strip().startswith(")"),
                "after_mask": mask_at >= 0 and start >= mask_at + len(mask),
            }
    return labels


def probe_model(name: str, texts: list[str], work: Path) -> Section:
    model = probe.load(name)
    masked = model.kind == "masked"
    docs = with_mask(texts, model.tokenizer.mask_token) if masked else texts
    hooks = ["hook_embed"] + [f"blocks.{i}.hook_resid_post" for i in range(model.n_layers)]
    hooks = [h for h in hooks if h in model.hook_names]
    out = work / re.sub(r"\W", "_", model.name)
    probe.extract(model, docs, hooks=hooks, out=out, max_length=128, quiet=True)
    _, meta = probe.load_activations(out, hooks[-1], columns=["doc_id", "position"])
    labels = token_labels(model, docs, 128)
    section = Section(
        title=f"{model.name} ({model.kind})",
        intro=f"{len(docs)} sentences, {len(meta):,} tokens; logistic-regression probes scored by balanced "
        "accuracy (the labels are unbalanced), 5 folds split by sentence.",
    )
    names = ["starts_word", "in_parens"] + (["after_mask"] if masked else [])
    summary = []
    for label in names:
        y = np.array([labels.get((d, p), {}).get(label, np.nan) for d, p in zip(meta.doc_id, meta.position)], float)
        scores, fig = probe.fit_probes(out, y, hooks=hooks, cv=5, max_rows=6000, scoring="balanced_accuracy")
        fig.update_layout(title=f"{model.name}: '{label}'")
        best = scores.loc[scores.selectivity.idxmax()]
        print(
            f"{model.name:>14} {label:>12}: best layer {best.layer:>2} balanced accuracy {best.accuracy:.3f} "
            f"control {best.control_accuracy:.3f} selectivity {best.selectivity:.3f}"
        )
        summary.append(scores.assign(label=label))
        section.blocks.append(
            figure_block(fig, f"'{label}' per layer", "Line: probe accuracy; shaded: the control task's accuracy.")
        )
    import pandas as pd

    table = pd.concat(summary, ignore_index=True)[["label", "hook", "accuracy", "control_accuracy", "selectivity"]]
    section.blocks.append(table_block(table, "All scores", "probe.fit_probes(out, labels, hooks=...)"))
    return section


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", "-m", action="append", help="model name or folder; repeat (default: default_models())")
    ap.add_argument("--out", type=Path, default=Path("."), help="folder for probing.html")
    ap.add_argument("--sentences", type=int, default=240, help="corpus size (sentences of the sample)")
    args = ap.parse_args(argv)
    names, notice = probe.default_models()
    if args.model:
        names, notice = args.model, None
    if notice:
        print(notice, file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    texts = sentences(limit=args.sentences)
    with tempfile.TemporaryDirectory() as work:
        sections = [probe_model(name, texts, Path(work)) for name in names]
    intro = Section(
        title="What the probes test",
        blocks=[
            note_block(
                "Selectivity (Hewitt & Liang 2019) = accuracy minus the accuracy of the same probe on a control "
                "task where every token type gets a random label. 'starts_word' is a property of the token type, "
                "so the control task can partly memorise it; 'in_parens' and 'after_mask' need context."
            )
        ],
    )
    path = page([intro, *sections], args.out / "probing.html", title="probe: linear probes with control tasks")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
