"""Optional report sections that ask *why*: attribution, direct logit attribution, activation patching,
neuron factors, CKA.

``probe.report(..., sections=["attribution", "generation", "dla", "heads", "patching", "circuit", "factors", "cka"])`` adds one section per
name, after the model sections. Each reads the same text the model sections read (a causal model sees
the left context of the [MASK]) and goes through the same escaped blocks as every other section.
"""

from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING

from probe.analysis.compare import MASK
from probe.analysis.reading import Reading, read_text
from probe.errors import InputError
from probe.pages.html import Section, figure_block, note_block, table_block

if TYPE_CHECKING:
    from probe.core.model import Model

SECTIONS = ("attribution", "generation", "dla", "heads", "patching", "circuit", "factors", "cka")

CAPTIONS = {
    "attribution": "Integrated gradients: how much each token of the text raised (red) or lowered (blue) the "
    "log-probability of the model's answer {target}, relative to the same text with those tokens replaced by "
    "the {baseline} token. The values add up to the log-probability gained ({span:+.3f}; convergence error "
    "{delta:.1e} after {steps} integration steps). Special tokens and the slot itself are held fixed and get 0.",
    "generation": "The model continues the text by itself ({generated}); every token it writes is attributed "
    "to the tokens it read at that step, the text and the tokens it generated before (integrated gradients, "
    "each row adding up to its own log-probability gain{worst}). Rows are generated tokens, columns tokens "
    "read; the line marks where the text ends.",
    "dla": "Direct logit attribution of {target} over {contrast} (the model's two most likely answers at the "
    "slot): what each attention head, each layer's attention bias and each MLP writes along the direction that "
    "separates them, read through the final norm frozen at this run's scale{head}. Red pushes {target}, blue "
    "{contrast}. The writes, the embeddings ({embeds}) and a constant ({constant:+.3f}: biases no component "
    "writes) add up to the model's own logit difference, {logit_diff:+.3f}.",
    "dla_top": "The {n} writes with the largest share, heads and MLPs together.",
    "heads": "Head detectors on {batch} sequences of {length} random tokens written twice: the share of each "
    "head's attention on the previous token, on an earlier copy of the current token, on the token after that "
    "copy (induction: the copy mechanism of in-context learning) and on the first token (the attention sink). "
    "A head attending uniformly would score the share in each panel's title.",
    "patching": "Activation patching: the corrupted text is run with one clean residual-stream vector put back "
    "(one layer, one position at a time). 1 means that vector alone restores the clean behaviour ({metric}), 0 "
    "means it does nothing. Columns are the clean text's tokens.",
    "patching_heads": "The same with one attention head's output (all positions) put back at a time.",
    "circuit": "The {k} edges (sender → receiver) that edge attribution patching scores highest for {metric}, "
    "out of {total}. Run on the clean text with every other edge ablated (each receiver reads the corrupted "
    "write of every sender outside its kept edges), they carry {faithfulness:.0%} of the clean-minus-corrupted "
    "difference (faithfulness {faithfulness:.3f}; 1 = all of it). Red edges push the clean answer, blue the "
    "corrupted one; width is the edge's estimate.",
    "agreement": "Every head scored four ways: exact patching (the head's clean output put back alone), "
    "attribution patching (its first-order estimate), EAP-IG (the gradient integrated over the embedding path) and "
    "DLA (its direct write to the answer, clean minus corrupted). They answer different questions and need not "
    "agree; Spearman's rho says how alike they rank the heads, the hover the share of top heads both name.",
    "factors": "Non-negative matrix factorisation of the MLP neurons of every layer: {k} groups of neurons that "
    "fire together. Each token takes the colour of its strongest group, paler when that group is weak. Hover "
    "for the group's top neurons. Negative activations (GELU dips below 0) are clipped: {clipped:.0%} of values.",
    "factor_neurons": "The neurons that load most on each factor (layer, neuron index, NMF loading).",
    "cka": "Linear CKA between the residual stream after every layer: 1 means two layers represent the tokens "
    "the same way up to rotation and scale. Across models, tokens are averaged within each word. Compared over "
    "{n} {items}: the report's text and {refs} reference sentences (over a single short sentence almost any two "
    "layers score close to 1).",
}


def validate(sections, corrupted: str | None) -> list[str]:
    """Known section names, in the order given; 'patching' needs a corrupted text."""
    if isinstance(sections, str):
        sections = [sections]
    sections = list(dict.fromkeys(sections or []))
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise InputError(f"unknown report section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
    for needs in ("patching", "circuit"):
        if needs in sections and not corrupted:
            raise InputError(
                f"the '{needs}' section needs corrupted= (--corrupted): the text with one word changed, "
                "e.g. 'The robot must [MASK] help the human.'"
            )
    return sections


def _read(reading: Reading) -> str:
    """The text a why-analysis reads: there must be some (a causal model needs words left of [MASK])."""
    if reading.read is None:
        model = reading.model
        raise InputError(f"{MASK} opens the text, so {model.name} has no left context; put a word before {MASK}")
    return reading.read


def attribution_section(readings: list[Reading], names: list[str]) -> Section:
    from probe.analysis.attribute import attribute
    from probe.viz.attribution import attribution

    section = Section(title="Why: attribution", intro="Which tokens drove each model's answer.", id="attribution")
    for reading, name in zip(readings, names):
        model = reading.model
        if model.kind == "encoder":
            section.blocks.append(note_block(f"{name}: no language-model head, so no answer to attribute."))
            continue
        _read(reading)
        frame = attribute(model, reading)
        a = frame.attrs
        caption = CAPTIONS["attribution"].format(
            target=repr(a["target"]),
            baseline=a["baseline"],
            span=a["target_value"] - a["baseline_value"],
            delta=abs(a["convergence_delta"]),
            steps=a["n_steps"],
        )
        section.blocks.append(figure_block(attribution(frame), f"{name}: attribution of {a['target']!r}", caption))
        if a["warning"]:
            section.blocks.append(note_block(f"{name}: {a['warning']}."))
    return section


GENERATED = 6  # tokens the report's generation section writes and attributes


def generation_section(readings: list[Reading], names: list[str]) -> Section:
    from probe.analysis.attribute import attribute_generation
    from probe.viz.attribution import attribution_generation

    section = Section(
        title="Why: attribution over generation",
        intro="What each token a causal model writes next was read from.",
        id="generation",
    )
    for reading, name in zip(readings, names):
        model = reading.model
        if model.kind != "causal":
            section.blocks.append(note_block(f"{name}: a {model.kind} model generates nothing; see its attribution."))
            continue
        read = _read(reading)
        room = model.n_ctx - len(reading.ids[0])
        if room < 1:
            section.blocks.append(note_block(f"{name}: the text fills the context, so nothing is generated."))
            continue
        frame = attribute_generation(model, read, max_new_tokens=min(GENERATED, room), prepend_bos=reading.prepend_bos)
        a = frame.attrs
        worst = max((c for c in a["completeness"] if c is not None), default=None)
        caption = CAPTIONS["generation"].format(
            generated=repr(a["generated"]), worst="" if worst is None else f"; worst completeness error {worst:.1%}"
        )
        section.blocks.append(figure_block(attribution_generation(frame), f"{name}: {a['generated']!r}", caption))
        if a["warning"]:
            section.blocks.append(note_block(f"{name}: {a['warning']}."))
    return section


def dla_section(readings: list[Reading], names: list[str]) -> Section:
    from probe.analysis.dla import dla
    from probe.viz.dla import dla as view

    section = Section(
        title="Why: direct logit attribution",
        intro="Which heads and MLPs write each model's answer over its runner-up, directly into the output.",
        id="dla",
    )
    for reading, name in zip(readings, names):
        model = reading.model
        if model.kind == "encoder":
            section.blocks.append(note_block(f"{name}: no language-model head, so no logits to attribute."))
            continue
        _read(reading)
        logits = reading.run(["logits"])["logits"][0, reading.position]
        target, contrast = (int(i) for i in logits.topk(2).indices)
        frame = dla(model, reading, target, contrast=contrast, unit="head")
        a = frame.attrs
        embeds = frame[frame["layer"].isna()]
        caption = CAPTIONS["dla"].format(
            target=repr(a["target"]),
            contrast=repr(a["contrast"]),
            head=" (and, in a masked model, through every later LayerNorm and the MLM head's transform)"
            if model.kind == "masked"
            else "",
            embeds=", ".join(f"{c} {v:+.3f}" for c, v in zip(embeds["component"], embeds["attribution"], strict=True)),
            constant=a["constant"],
            logit_diff=a["logit_diff"],
        )
        title = f"{name}: {a['target']!r} over {a['contrast']!r}"
        section.blocks.append(figure_block(view(frame), title, caption))
        top = frame.assign(size=frame["attribution"].abs()).nlargest(10, "size")[["component", "attribution"]]
        section.blocks.append(table_block(top, f"{name}: largest writes", CAPTIONS["dla_top"].format(n=len(top))))
    return section


def heads_section(readings: list[Reading], names: list[str]) -> Section:
    from probe.analysis.heads import head_scores
    from probe.viz.heads import head_scores as view

    section = Section(
        title="Why: head detectors",
        intro="Which heads copy, look back one token or park their attention on the first token; the text does not matter here.",
        id="heads",
    )
    for reading, name in zip(readings, names):
        frame = head_scores(reading.model)
        caption = CAPTIONS["heads"].format(batch=frame.attrs["batch"], length=frame.attrs["length"])
        section.blocks.append(figure_block(view(frame), f"{name}: head detectors", caption))
    return section


def _pair(reading: Reading, corrupted: str) -> tuple[str, str, tuple]:
    """(clean text read, corrupted text read, metric) of a clean/corrupted experiment: the logit difference
    between the two texts' top answers (the clean answer's log-probability when they agree)."""
    model = reading.model
    corrupt = read_text(model, corrupted, truncate=reading.truncated)
    clean, bad = _read(reading), _read(corrupt)
    answer = int(model.run(reading.ids, hooks=["logits"])["logits"][0, reading.position].argmax())
    rival = int(model.run(corrupt.ids, hooks=["logits"])["logits"][0, corrupt.position].argmax())
    return clean, bad, ("logit_diff", answer, rival) if rival != answer else ("logprob", answer)


def patching_section(readings: list[Reading], names: list[str], text: str, corrupted: str) -> Section:
    from probe.analysis.intervene import patching
    from probe.viz.patching import patching as view

    section = Section(
        title="Why: activation patching",
        intro="Where the difference between the clean and the corrupted text lives.",
        id="patching",
        text=f"clean: {text}  |  corrupted: {corrupted}",
    )
    for reading, name in zip(readings, names):
        model = reading.model
        if model.kind == "encoder":
            section.blocks.append(note_block(f"{name}: no language-model head, so nothing to patch against."))
            continue
        clean, bad, metric = _pair(reading, corrupted)
        frame = patching(model, clean, bad, metric=metric, over="resid_pre")
        caption = CAPTIONS["patching"].format(metric=_metric_words(model, metric))
        section.blocks.append(figure_block(view(frame), f"{name}: residual stream", caption))
        heads = patching(model, clean, bad, metric=metric, over="heads")
        section.blocks.append(figure_block(view(heads), f"{name}: attention heads", CAPTIONS["patching_heads"]))
    return section


def _metric_words(model: Model, metric: tuple) -> str:
    kind, *ids = metric
    words = [repr(model.to_str_tokens([i])[0]) for i in ids]
    return f"{kind}({', '.join(words)})"


def circuit_section(readings: list[Reading], names: list[str], text: str, corrupted: str) -> Section:
    from probe.analysis.agreement import agreement
    from probe.analysis.circuit import circuit
    from probe.analysis.edges import check_edges

    section = Section(
        title="Why: circuit",
        intro="Which edges between heads and MLPs carry the difference between the clean and the corrupted text, "
        "and how much of it they carry alone.",
        id="circuit",
        text=f"clean: {text}  |  corrupted: {corrupted}",
    )
    for reading, name in zip(readings, names):
        model = reading.model
        if model.kind == "encoder":
            section.blocks.append(note_block(f"{name}: no language-model head, so nothing to trace."))
            continue
        try:
            check_edges(model)
        except InputError as err:
            section.blocks.append(note_block(f"{name}: no circuit; {err}."))
            continue
        clean, bad, metric = _pair(reading, corrupted)
        found = circuit(model, clean, bad, metric, edges=20)
        caption = CAPTIONS["circuit"].format(
            k=len(found.edges),
            metric=_metric_words(model, metric),
            total=found.attrs["total_edges"],
            faithfulness=found.faithfulness,
        )
        section.blocks.append(figure_block(found.plot(), f"{name}: circuit", caption))
        section.blocks.append(table_block(found.edges, f"{name}: kept edges", "Largest |estimate| first."))
        methods = ("exact", "atp", "ig", "dla") if metric[0] == "logit_diff" else ("exact", "atp", "ig")
        agreed = agreement(model, clean, bad, metric, methods=methods)
        section.blocks.append(figure_block(agreed.plot(), f"{name}: do the methods agree?", CAPTIONS["agreement"]))
    return section


def factors_section(readings: list[Reading], names: list[str]) -> Section:
    from probe.analysis.factors import factors

    section = Section(title="Why: neuron factors", intro="Groups of MLP neurons that fire together.", id="factors")
    for reading, name in zip(readings, names):
        model, read = reading.model, _read(reading)
        k = min(6, reading.ids.shape[1])
        frame = factors(model, [read], n_components=k, top_k=5)
        caption = CAPTIONS["factors"].format(k=k, clipped=frame.attrs["clipped_fraction"])
        section.blocks.append(figure_block(frame.plot(), f"{name}: tokens by factor", caption))
        section.blocks.append(table_block(frame.neurons, f"{name}: top neurons per factor", CAPTIONS["factor_neurons"]))
    return section


def cka_section(models: list[Model], names: list[str], text: str) -> Section:
    from probe.analysis.factors import cka
    from probe.viz.cka import cka as view

    section = Section(title="Why: layer similarity (CKA)", intro="How alike the layers' representations are.", id="cka")
    plain = text.replace(MASK, "").replace("  ", " ").strip()  # every model reads the same words
    texts = [plain, *REFERENCE_TEXTS]

    def caption(frame) -> str:
        items = "words" if frame.attrs.get("aligned_by") == "word" else "tokens"
        return CAPTIONS["cka"].format(n=frame.attrs["n_items"], items=items, refs=len(REFERENCE_TEXTS))

    for model, name in zip(models, names):
        frame = cka(model, texts=texts)
        section.blocks.append(figure_block(view(frame), f"{name}: layer x layer", caption(frame)))
    for (ma, na), (mb, nb) in combinations(list(zip(models, names)), 2):
        frame = cka(ma, mb, texts)
        section.blocks.append(figure_block(view(frame), f"{na} vs {nb}", caption(frame)))
    return section


# CKA compares how layers arrange many tokens; one sentence is too few (any two layers then look alike),
# so the section adds these: ordinary sentences of different kinds, ~120 tokens together
REFERENCE_TEXTS = (
    "The old fisherman mended his nets while the tide came in.",
    "Water boils at a lower temperature high in the mountains.",
    "She counted seven red boats and two white ones in the harbour.",
    "If it rains tomorrow, the match will be played indoors.",
    "The committee rejected the proposal after a long debate.",
    "Birds flew south as the first snow covered the hills.",
    "He could not remember where he had left the keys.",
    "Prices rose sharply in the spring and fell again by autumn.",
    "A small robot carried the boxes from the truck to the shelf.",
    "Reading before sleep helps many people relax.",
    "The bridge was closed for repairs until the end of the month.",
    "Their daughter learned to play the violin at the age of six.",
)


def why_sections(
    sections: list[str], readings: list[Reading], names: list[str], text: str, corrupted: str | None
) -> list[Section]:
    """The asked-for why sections, each from the models' readings of the text (parsed once, in ``report``)."""
    out = []
    for name in sections:
        if name == "attribution":
            out.append(attribution_section(readings, names))
        elif name == "generation":
            out.append(generation_section(readings, names))
        elif name == "dla":
            out.append(dla_section(readings, names))
        elif name == "heads":
            out.append(heads_section(readings, names))
        elif name == "patching":
            out.append(patching_section(readings, names, text, corrupted))
        elif name == "circuit":
            out.append(circuit_section(readings, names, text, corrupted))
        elif name == "factors":
            out.append(factors_section(readings, names))
        else:
            out.append(cka_section([r.model for r in readings], names, text))
    return out
