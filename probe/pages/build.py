"""``probe.report``: one self-contained HTML page about how some models read one sentence."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from probe.analysis.compare import DEFAULT_TEXT, MASK, Slot
from probe.analysis.reading import Reading, read_text
from probe.core.names import act_name
from probe.errors import InputError
from probe.pages.html import (
    Section,
    check_plotly_js,
    figure_block,
    note_block,
    output_path,
    plotly_source,
    render,
    table_block,
    write_atomic,
)

if TYPE_CHECKING:
    from pathlib import Path

    from probe.core.model import Model
    from probe.core.run import Run

# Short explanations printed under each figure: what it shows and how to read it.
CAPTIONS = {
    "tokens": "The text as the model's tokenizer splits it, one cell per token with its id underneath. "
    "Blue cells start a word, orange cells continue the word before them, grey cells are special tokens. "
    "A middle dot · marks a space that belongs to the token; <0xF0> is one byte of a character split over "
    "several tokens.",
    "predictions": "The model's own output at the slot: the {k} most likely tokens and their probabilities.",
    "logit_lens": "The logit lens: the model's output head applied to the residual stream after every block, at "
    "every position. Each cell shows that layer's most likely token; darker means more confident. Read a "
    "column bottom-up to watch a prediction form. Hover for the top 3 (and, for GPT-style models, the rank of the "
    "token that actually comes next).",
    "tuned_lens": "The logit lens (left) and the tuned lens (right) side by side, on one colour scale: the tuned lens "
    "reads the same grid with the residual stream of every layer first carried into the "
    "last layer's basis by an affine translator trained for {model} (KL to the model's own output, {steps} steps "
    "on {corpus}). The logit lens reads early layers badly because their basis drifts; on held-out text the tuned "
    "lens is closer to the output at every layer: mean KL {tuned:.2f} against {logit:.2f} nats for the logit lens.",
    "lens_target": "The model's final answer {answer} at the slot, followed through the layers: its probability "
    "(left) and its rank among all tokens (right, 1 = top). A rank that drops early means the layers "
    "before the output already knew.",
    "attention_grid": "Every attention head at once: rows are layers, columns are heads. In each small square a row "
    "is a query token and its colours show where that token looks (columns = keys, left to right in text order). "
    "Long texts, and models with many heads, are pooled into blocks of tokens (the one-head view below keeps "
    "every token).",
    "attention_heads": "One head at a time, with token labels. Pick a layer in the menu (top left) and a head with "
    "the slider. Each row is a query token; the row's colours are its attention weights over the keys and sum to 1.",
    "attention_neurons": "Inside one head (L{layer}H{head}: of all heads, the one that looks hardest at a single "
    "token other than the first): the slot's query vector above every key vector (one column per dimension), "
    "their elementwise product, whose row sums are the scores, and the softmax of the scaled scores, which is "
    "that head's pattern row. Blue negative, red positive.",
    "attention_entropy": "How spread out each head's attention is, averaged over the tokens, in bits. 0 bits: every "
    "token attends to exactly one token. High values: attention is spread evenly (hover for the uniform value).",
    "residual_norms": "The size (L2 norm) of the residual stream, the running representation every block reads "
    "and adds to, at each layer and token. Unusually large tokens often serve as 'attention sinks'.",
    "neurons": "The {k} MLP neurons of the last block that fire most strongly anywhere in the text (rows) and "
    "their activation at every token (red positive, blue negative). Neurons that light up on one token only are "
    "good places to start looking for features.",
    "compare": "Each panel is one model and one way of asking it. A masked model (BERT) sees both sides of the "
    "slot. A causal model (GPT) predicting the next word sees only the left side; rescored, it fills every "
    "candidate word into the whole sentence and compares the sentences' likelihoods, so the right side counts "
    "too. Words are ordered by how much all models like them; #n is the word's rank in that panel.",
    "compare_layers": "For every model, the rank of its final top word at every layer (logit lens at the slot; "
    "rank among all tokens, punctuation included; special tokens are never a masked model's filler). Where a line reaches the top tells when that model "
    "settled on its answer.",
    "candidates": "The top {k} words of every list with their probabilities (rescored: the sentence's share of "
    "the candidates' total likelihood).",
    "agreement": "How much the models' word lists agree: overlap@k is the share of top-k words two lists have in "
    "common; Spearman and Kendall correlations compare the order of the words both lists contain "
    "(1 = same order, -1 = reversed; n/a when the lists share fewer than 5 words).",
}


def model_hooks(model: Model) -> list[str]:
    """What a model section shows: the default hooks, the last layer's MLP neurons, and every layer's queries
    and keys (as the scores use them: after rotary where the model rotates) for the neuron view."""
    rotary = act_name("rot_q", 0) in model.hook_names
    qk = [act_name(kind, i) for i in range(model.n_layers) for kind in (("rot_q", "rot_k") if rotary else ("q", "k"))]
    return list(dict.fromkeys(model.default_hooks + [act_name("post", model.n_layers - 1), *qk]))


def reads_note(run: Run) -> str:
    """Which tokens a run read, in words: the start token first or not (``prepend_bos``), and how many."""
    n = run.lengths[0]
    if run.prepend_bos:
        start = run.token_strs(0)[0]
        return f"It reads {n} tokens, its start token {start} first (prepend_bos=True, as every probe call by default):"
    if run.model.kind == "causal":
        return f"It reads {n} tokens, the text's own, with no start token before them (prepend_bos=False):"
    return f"It reads {n} tokens, its tokenizer's special tokens included:"


HEADLINE_FIELDS = 12  # the card rows shown open; the rest fold away


def _card_rows(card: dict[str, Any]) -> list[tuple[str, Any]]:
    """A card flattened to (field, value) rows: the headline fields first, nested dicts as a.b."""
    from probe.cards import heldout_summary

    first = ["name", "kind", "family", "params", "layers", "heads", "d_model", "d_mlp", "context", "vocab"]
    rows = [(k, card[k]) for k in first if k in card]
    summary = heldout_summary(card)
    if summary:
        rows.append(("held-out", summary))

    def flat(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                flat(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, (list, tuple)):
            rows.append((prefix, f"[{len(value)} values]" if len(value) > 8 else ", ".join(map(str, value))))
        else:
            rows.append((prefix, value))

    for key, value in card.items():
        if key not in first and key != "shape":  # shape repeats the headline fields
            flat(key, value)
    return rows[:80]


def tuned_lens_blocks(run: Run) -> list:
    """The tuned-lens view and its per-layer KL when probe ships a lens for these very weights, else nothing."""
    from probe.analysis.tuned_lens import shipped_lens
    from probe.viz.lens import lens_compare, lens_kl

    lens = shipped_lens(run.model)
    kl = lens.meta.get("held_out_kl") if lens is not None else None
    if lens is None or not kl:
        return []
    import pandas as pd

    frame = pd.DataFrame(kl)
    frame.attrs["model"] = run.model.name
    caption = CAPTIONS["tuned_lens"].format(
        model=run.model.name,
        steps=lens.meta["steps"],
        corpus=lens.meta.get("corpus", "a corpus"),
        tuned=frame["tuned_lens"].mean(),
        logit=frame["logit_lens"].mean(),
    )
    return [
        # top 1 in the hover, and none on the logit side (the logit lens above has it): page size
        figure_block(lens_compare(run, lens, k=1, left_hover=False), "Tuned lens", caption),
        figure_block(lens_kl(frame), "Tuned lens against logit lens, layer by layer", CAPTION_KL),
    ]


CAPTION_KL = (
    "How far each layer's reading is from the model's own output on held-out text (KL divergence, log scale; "
    "lower is closer), for the logit lens and the tuned lens."
)


def model_section(reading: Reading, name: str, k: int = 10, run: Run | None = None) -> Section:
    """Card, tokens, predictions, logit lens, attention and activations of one model on the text, as
    ``reading`` (``probe.analysis.reading``) says the model reads it; ``run``: ``reading.run(model_hooks(model))``
    when the caller has it already."""
    import pandas as pd

    from probe.cards import card

    model = reading.model
    run = run if run is not None else reading.run(model_hooks(model))
    plots = run.plot
    kind_note = {
        "causal": "A causal (GPT-style) model reads left to right"
        + (", so at the slot it has seen only the text before [MASK]." if MASK in reading.text else "."),
        "masked": "A masked (BERT-style) model sees the whole sentence at once and fills in its mask token.",
        "encoder": "An encoder without a language-model head: it has attention and activations but no predictions.",
    }[model.kind]
    shown = " ".join(run.token_strs(0)) if reading.read is None else reading.read
    section = Section(title=f"{name} ({model.kind})", intro=f"{kind_note} {reads_note(run)}", text=shown)
    if reading.truncated:
        section.blocks.append(
            note_block(
                f"The text is longer than {model.name}'s context of {model.n_ctx} tokens; it was cut to the window above."
            )
        )
    rows = _card_rows(card(model))
    section.blocks.append(
        table_block(
            pd.DataFrame(rows, columns=["field", "value"]),
            "Model card",
            "What this model is, from its probe_card.json and config.",
            fold=HEADLINE_FIELDS,
        )
    )
    section.blocks.append(figure_block(plots.tokens(), "Tokens", CAPTIONS["tokens"]))
    if model.kind != "encoder":
        top = run.predictions(k=k)
        answer = repr(top["token"].iloc[0])
        section.blocks.append(
            figure_block(plots.predictions(k=k), "Predictions at the slot", CAPTIONS["predictions"].format(k=k))
        )
        section.blocks.append(figure_block(plots.logit_lens(), "Logit lens", CAPTIONS["logit_lens"]))
        section.blocks += tuned_lens_blocks(run)
        section.blocks.append(
            figure_block(
                plots.lens_target(int(top["token_id"].iloc[0])),
                "The final answer, layer by layer",
                CAPTIONS["lens_target"].format(answer=answer),
            )
        )
    long_text = run.lengths[0] > 64
    section.blocks.append(
        figure_block(
            plots.attention_grid(max_tokens=grid_tokens(model, long_text)),
            "Attention: all heads",
            CAPTIONS["attention_grid"],
        )
    )
    section.blocks.append(
        figure_block(
            plots.attention_heads(max_tokens=48 if long_text else 128),
            "Attention: one head at a time",
            CAPTIONS["attention_heads"],
        )
    )
    layer, head = sharpest_head(run)
    section.blocks.append(
        figure_block(
            plots.attention_neurons(layer, head),
            f"How head L{layer}H{head} attends from the slot",
            CAPTIONS["attention_neurons"].format(layer=layer, head=head),
        )
    )
    section.blocks.append(figure_block(plots.attention_entropy(), "Attention entropy", CAPTIONS["attention_entropy"]))
    section.blocks.append(figure_block(plots.residual_norms(), "Residual-stream norm", CAPTIONS["residual_norms"]))
    neurons = min(16, model.d_mlp)
    section.blocks.append(
        figure_block(plots.neurons(k=neurons), "Top MLP neurons", CAPTIONS["neurons"].format(k=neurons))
    )
    return section


def sharpest_head(run: Run) -> tuple[int, int]:
    """(layer, head) whose pattern at the slot puts the most weight on one token other than the first (the
    attention sink most heads park on): the head the neuron view explains."""
    model, slot = run.model, run.position_of(None)
    best, found = -1.0, (model.n_layers - 1, 0)
    for layer in range(model.n_layers):
        row = run[act_name("pattern", layer)][0, :, slot, 1:]  # [head, keys after the first]
        if row.numel() and float(row.max()) > best:
            best = float(row.max())
            found = (layer, int(row.max(-1).values.argmax()))
    return found


GRID_CELLS = 60_000  # attention cells in the all-heads grid: each panel is a thumbnail a few pixels per token


def grid_tokens(model: Model, long_text: bool = False) -> int:
    """How many token blocks the all-heads grid pools each pattern into: 40 (32 for long texts), fewer
    when there are many panels (SmolLM2's 270 heads: 14), never under 8. The one-head view keeps
    every token."""
    fit = int((GRID_CELLS / (model.n_layers * model.n_heads)) ** 0.5)
    return max(8, min(32 if long_text else 40, fit))


def _pct(p: float) -> str:
    return f"{p:.0%}" if p >= 0.095 else f"{p:.1%}" if p >= 0.001 else f"{p:.1e}"


def answer_text(frame) -> str:
    """The comparison's finding in one paragraph: what each model puts first, and under which reading
    (a causal model's next word from the left context, or the whole sentence with each candidate filled in)."""
    sentences, finals = [], {}
    for name in frame.attrs.get("models", []):
        part = frame[frame.model == name]
        top = {m: g.sort_values("rank").iloc[0] for m, g in part.groupby("method") if len(g)}
        if "masked" in top:
            w = top["masked"]
            sentences.append(f"{name}, seeing the whole sentence, fills the blank with '{w.word}' ({_pct(w.prob)}).")
            finals[name] = w.word
        elif "next_token" in top:
            w = top["next_token"]
            line = f"Reading left to right, {name} guesses '{w.word}' ({_pct(w.prob)})"
            finals[name] = w.word
            if "rescored" in top:
                r = top["rescored"]
                line += f"; reading the whole sentence (each candidate filled in and scored) it puts '{r.word}' first ({_pct(r.prob)})"
                finals[name] = r.word
            sentences.append(line + ".")
    if len(finals) > 1 and len(set(finals.values())) == 1:
        sentences.append(
            f"Read whole, {'both' if len(finals) == 2 else 'all'} put '{next(iter(finals.values()))}' first."
        )
    return " ".join(sentences)


def comparison_section(models: list[Model], text: str, k: int = 10, truncate: bool = False, frame=None) -> Section:
    """The GPT-vs-BERT view: words side by side, the layer-by-layer rank, agreement numbers, the frame
    (``frame``: the comparison already computed, e.g. for the page's answer)."""
    from probe.analysis.compare import compare

    usable = [m for m in models if m.kind != "encoder"]
    section = Section(
        title="Comparison",
        intro="How the models fill the slot, side by side and layer by layer.",
        id="comparison",
    )
    skipped = [m.name for m in models if m.kind == "encoder"]
    if skipped:
        section.blocks.append(note_block(f"Left out of the comparison (no language-model head): {', '.join(skipped)}."))
    if not usable:
        return section
    if frame is None:
        frame = compare(text, usable, k=k, rescore=True, truncate=truncate)
    if frame.attrs.get("truncated"):
        section.blocks.append(
            note_block(f"Cut to fit the context (a window around the slot): {', '.join(frame.attrs['truncated'])}.")
        )
    section.blocks.append(figure_block(frame.plot(), "Candidate words", CAPTIONS["compare"]))
    section.blocks.append(figure_block(frame.plot_layers(), "Layer by layer", CAPTIONS["compare_layers"]))
    if len(frame.agreement):
        section.blocks.append(table_block(frame.agreement, "Agreement", CAPTIONS["agreement"]))
    section.blocks.append(table_block(candidates_table(frame, k), "All candidates", CAPTIONS["candidates"].format(k=k)))
    return section


def candidates_table(frame, k: int):
    """Rank x list table: each cell "word (prob)", one column per (model, method)."""
    import pandas as pd

    columns = {}
    for (model, method), part in frame.groupby(["model", "method"], sort=False):
        part = part.sort_values("rank").head(k)
        columns[f"{model} · {method}"] = [
            f"{w} ({p:.1%})" if p >= 0.001 else f"{w} ({p:.1e})" for w, p in zip(part["word"], part["prob"])
        ]
    width = max((len(v) for v in columns.values()), default=0)
    table = {"rank": list(range(1, width + 1))}
    table.update({name: values + [""] * (width - len(values)) for name, values in columns.items()})
    return pd.DataFrame(table)


def report(
    text: str = DEFAULT_TEXT,
    models: Sequence[Model | str] | Model | str | None = None,
    path: str | os.PathLike = "report.html",
    *,
    k: int = 10,
    title: str | None = None,
    truncate: bool = False,
    plotly_js: str = "inline",
    sections: Sequence[str] | None = None,
    corrupted: str | None = None,
    prepend_bos: bool | None = None,
) -> Path:
    """Write one self-contained HTML report of how ``models`` read ``text``; works offline.

    Takes (text, models, path), like ``probe.compare(text, models)``; all three also as keywords.

    Args:
        text: a sentence; put ``[MASK]`` where a word is missing (needed when a masked model is among the models).
        models: names, paths or loaded Models; None: ``probe.default_models()`` (the real pretrained pair
            when installed, else the bundled tiny pair).
        path: the .html file to write (atomically: an existing report is replaced only when complete).
        k: candidates per prediction list.
        title: page title; default "probe report: <models>".
        truncate: cut a text longer than a model's context to a window around the slot instead of raising.
        plotly_js: "inline" (default: the page is one self-contained file) or "beside" (plotly.js is written
            once next to the page and shared, for folders of many reports).
        sections: extra "why" sections after the model sections, any of "attribution" (integrated
            gradients per token), "generation" (what each token a causal model writes next was read from), "patching" (activation patching; needs ``corrupted``), "factors"
            (NMF neuron factors) and "cka" (layer similarity). Default: none (the report as before).
        corrupted: for "patching": the text with one word changed (same number of tokens).
        prepend_bos: how causal models read the text, in every section (None: each ``Model.prepend_bos``,
            True by default: from the start token, as ``Model.run`` does); each model section says so.

    Returns:
        The path written. The page has a comparison section (two or more models) and one section per
        model: card, tokens, predictions, logit lens, attention, activations. plotly.js is inlined once
        (``plotly_js="inline"``) or written once beside the page (``"beside"``).

    Example:
        >>> probe.report("The robot must [MASK] hurt the human.", ["tiny-gpt", "tiny-bert"], "report.html")
    """
    from probe import _validate as check
    from probe.analysis.compare import _unique_names, check_order, load_models
    from probe.pages.why import validate, why_sections

    check_order(text, models, "report")
    truncate = check.boolean(truncate, "truncate")
    path = output_path(path)  # fail before any model work
    if title is not None and not isinstance(title, str):
        raise InputError(f"title must be a string, got {title!r}")
    check_plotly_js(plotly_js)
    notice = None
    if models is None:
        from probe.defaults import default_models

        models, notice = default_models()
    extra = validate(sections, corrupted)
    loaded = [m.reading(prepend_bos) for m in load_models(models, k)]
    Slot.parse(text, need_mask=any(m.kind == "masked" for m in loaded))  # the text's errors before any model work
    readings = [read_text(m, text, truncate=truncate) for m in loaded]  # parsed and tokenised once per model
    runs = [r.run(model_hooks(r.model)) for r in readings]  # one forward each, for the comparison and the sections
    names = _unique_names(loaded)
    sections = []
    answer = ""
    if len(loaded) > 1:
        from probe.analysis.compare import compare_readings

        usable = [(r, run) for r, run in zip(readings, runs, strict=True) if r.model.kind != "encoder"]
        frame = None
        if usable:
            frame = compare_readings([r for r, _ in usable], k=k, truncate=truncate, runs=[run for _, run in usable])
        answer = answer_text(frame) if frame is not None else ""
        sections.append(comparison_section(loaded, text, k, truncate, frame=frame))
    sections += [model_section(r, n, k, run) for r, n, run in zip(readings, names, runs, strict=True)]
    sections += why_sections(extra, readings, names, text, corrupted)
    for i, s in enumerate(sections):
        s.id = s.id or f"model-{i}"
    title = title or f"probe report: {', '.join(names)}"
    subtitle = "How each model reads the sentence below: what it predicts, where it looks, and when it decides."
    if notice:  # the real models are not installed: say which ones were used instead, and how to get them
        subtitle += f" Note: {notice}."
    src = plotly_source(path, plotly_js, sections)
    page_html = render(sections, title=title, subtitle=subtitle, text=text, plotly_src=src, answer=answer)
    return write_atomic(path, page_html)
