"""GPT vs BERT (any causal and masked LMs): how does each fill the [MASK] slot, and when does it decide?

Three kinds of evidence, one long frame:

- ``masked``: a masked LM's distribution at its own mask token (both sides of the slot are seen);
- ``next_token``: a causal LM's next-token distribution from the text left of the slot;
- ``rescored``: every candidate word (the union of all models' top-k) put into the slot, and the whole
  sentence scored by the causal LM (sum of token log-probs, so the right context counts and words of
  several tokens are handled), normalised over the candidate set.

Tokens become words the same way for every tokenizer: byte-level BPE (``Ġthe``), WordPiece (``##ing``)
and SentencePiece (``▁the``) markers and spaces are stripped; special tokens, word pieces that continue
the previous word, punctuation-only tokens and partial UTF-8 bytes are dropped from word lists.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from probe import _validate as check
from probe.analysis.reading import Reading, Slot, fit_slot, read_text
from probe.core.names import act_name
from probe.defaults import DEFAULT_TEXT, FALLBACK_MODELS, MASK, default_models
from probe.errors import InputError, NoHeadError

if TYPE_CHECKING:
    from probe.analysis._compare_frame import CompareFrame
    from probe.core.model import Model
    from probe.core.run import Run

DEFAULT_MODELS = FALLBACK_MODELS  # the bundled pair; compare()/report() default to default_models()
COLUMNS = ["model", "kind", "method", "rank", "word", "prob", "token", "token_id", "log_prob"]

__all__ = [
    "compare",
    "compare_readings",
    "to_word",
    "is_word",
    "Slot",
    "DEFAULT_TEXT",
    "DEFAULT_MODELS",
    "MASK",
    "CompareFrame",
]


def __getattr__(name: str):  # CompareFrame subclasses pandas.DataFrame: import pandas only when asked
    if name == "CompareFrame":
        from probe.analysis._compare_frame import CompareFrame

        return CompareFrame
    raise AttributeError(f"module 'probe.analysis.compare' has no attribute {name!r}")


# -- words ---------------------------------------------------------------------------------------
def to_word(token: str) -> str:
    """A token (raw piece or decoded) -> the word it spells: ``"Ġnot"``, ``" not"``, ``"▁not"``, ``"##not"`` -> ``"not"``."""
    word = token[2:] if token.startswith("##") else token
    return word.lstrip("Ġ▁ \t\n").rstrip()


_BYTE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def is_word(word: str) -> bool:
    """True for a usable word: has a letter or digit, and no partial UTF-8 byte (``�`` or ``<0xF0>``)."""
    return bool(word) and "\ufffd" not in word and not _BYTE.search(word) and any(ch.isalnum() for ch in word)


def marker_style(tokenizer) -> str:
    """How a tokenizer marks word boundaries: "bpe" (Ġ), "sentencepiece" (▁) or "wordpiece" (##)."""
    pieces = tokenizer.convert_ids_to_tokens(tokenizer.encode("the cat sat down", add_special_tokens=False))
    if any(p.startswith("Ġ") for p in pieces):
        return "bpe"
    if any(p.startswith("▁") for p in pieces):
        return "sentencepiece"
    return "wordpiece"


def starts_word(piece: str, style: str) -> bool:
    """Does raw piece ``piece`` begin a new word (rather than continue the one before it)?"""
    if style == "wordpiece":
        return not piece.startswith("##")
    return piece.startswith("Ġ" if style == "bpe" else "▁")


# -- per model -----------------------------------------------------------------------------------
def _load(model: Model | str) -> Model:
    from probe.core.model import Model, load

    if isinstance(model, Model):
        return model
    if not isinstance(model, str):
        raise InputError(f"models must be names, paths or probe Models, got {type(model).__name__}")
    return load(model)


def slot_hooks(model: Model) -> list[str]:
    """What ``compare`` reads of a run: the residual stream into every block, out of the last, and the logits."""
    n = model.n_layers
    return [act_name("resid_pre", i) for i in range(n)] + [act_name("resid_post", n - 1), "logits"]


def word_distribution(model: Model, logits: torch.Tensor, k: int, slot: Slot) -> list[dict]:
    """The ``k`` most likely *words* in a [vocab] logit vector (see the module docstring for the rules).

    Returns:
        Rows {rank, word, prob, token, token_id, log_prob}; prob is the token's own probability.
    """
    tok = model.tokenizer
    style = marker_style(tok)
    special = set(tok.all_special_ids)
    log_probs = logits.detach().float().log_softmax(-1)
    order = log_probs.argsort(descending=True)
    rows: list[dict] = []
    seen: set[str] = set()
    for start in range(0, min(len(order), 5000), 200):  # scan down the ranking until k words are found
        ids = order[start : start + 200].tolist()
        pieces = tok.convert_ids_to_tokens(ids)
        for tid, piece, text in zip(ids, pieces, model.to_str_tokens(ids), strict=True):
            if piece is None or tid in special:  # None: an id past the tokenizer (padded embedding rows)
                continue
            if slot.wants_word_start and not starts_word(piece, style):
                continue
            word = to_word(text)
            if not is_word(word) or word in seen:
                continue
            seen.add(word)
            lp = float(log_probs[tid])
            rows.append(
                {
                    "rank": len(rows) + 1,
                    "word": word,
                    "prob": math.exp(lp),
                    "token": text,
                    "token_id": tid,
                    "log_prob": lp,
                }
            )
            if len(rows) == k:
                return rows
    return rows


def sentence_log_probs(
    model: Model, texts: list[str], batch_size: int = 32, prepend_bos: bool | None = None
) -> list[float]:
    """Total log-probability of each text under a causal LM: sum over its tokens of log p(token | before).

    Each text is read as ``Model.run`` reads it: by default from the model's start token
    (``Model.start_token_id``: GPT-2's and SmolLM2's ``<|endoftext|>``), so the first word is scored
    too; with ``prepend_bos=False`` (or no start token) the first token is the given context.
    """
    if model.kind != "causal":
        raise InputError(f"{model.name} is {model.kind}; sentence scoring needs a causal LM")
    tok = model.tokenizer
    rows = []
    for text in texts:
        ids = model._token_ids([text], prepend_bos)[0]  # no library warning for long text: the error below says it
        if len(ids) < 2:
            raise InputError(f"{text!r} is too short to score; give the sentence some words")
        if len(ids) > model.n_ctx:
            raise InputError(
                f"the filled sentence has {len(ids)} tokens, more than {model.name}'s context of {model.n_ctx}; "
                "shorten it or pass truncate=True (--truncate)"
            )
        rows.append(ids)
    scores = []
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    for s in range(0, len(rows), batch_size):
        chunk = rows[s : s + batch_size]
        width = max(len(r) for r in chunk)
        # right padding is harmless for a causal LM: no real position can attend to the later pad tokens
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in chunk])
        logits = model.run(ids, hooks=["logits"])["logits"].float()  # [batch, pos, vocab]
        log_probs = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None].to(logits.device))[..., 0]
        for i, r in enumerate(chunk):
            scores.append(float(log_probs[i, : len(r) - 1].sum()))
    return scores


# -- agreement -----------------------------------------------------------------------------------
def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    for r, i in enumerate(order):
        ranks[i] = float(r)
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rho of two equally long lists of (distinct) ranks; NaN for fewer than 2 items."""
    if len(a) < 2:
        return float("nan")
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / var if var else float("nan")


def kendall(a: list[float], b: list[float]) -> float:
    """Kendall's tau (tau-a; ranks have no ties here) of two equally long lists; NaN for fewer than 2."""
    n = len(a)
    if n < 2:
        return float("nan")
    score = 0
    for i in range(n):
        for j in range(i + 1, n):
            score += 1 if (a[i] - a[j]) * (b[i] - b[j]) > 0 else -1 if (a[i] - a[j]) * (b[i] - b[j]) < 0 else 0
    return score / (n * (n - 1) / 2)


MIN_SHARED = 5  # words two lists must share before their rank correlation means anything


def agreement(rows: list[dict], k: int) -> list[dict]:
    """Pairwise agreement of every two ranked word lists (a list = one model and method).

    Returns:
        Records {a, b, overlap_at_k, shared, spearman, kendall}: overlap@k = |top-k(a) ∩ top-k(b)| / k;
        the correlations compare the two rankings over the words both lists contain, and are NaN ("n/a")
        when fewer than ``MIN_SHARED`` words are shared (two shared words give Spearman ±1: noise).
    """
    lists: dict[str, dict[str, int]] = {}
    for r in rows:
        lists.setdefault(f"{r['model']} · {r['method']}", {})[r["word"]] = r["rank"]
    names = list(lists)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ra, rb = lists[a], lists[b]
            top_a = {w for w, r in ra.items() if r <= k}
            top_b = {w for w, r in rb.items() if r <= k}
            shared = [w for w in ra if w in rb]
            xs, ys = [ra[w] for w in shared], [rb[w] for w in shared]
            out.append(
                {
                    "a": a,
                    "b": b,
                    "overlap_at_k": len(top_a & top_b) / k,
                    "shared": len(shared),
                    "spearman": spearman(xs, ys) if len(shared) >= MIN_SHARED else math.nan,
                    "kendall": kendall(xs, ys) if len(shared) >= MIN_SHARED else math.nan,
                }
            )
    return out


# -- the public function -------------------------------------------------------------------------
def check_order(text, models, where: str) -> None:
    """``compare`` and ``report`` take (text, models): say so when a sentence is where models go, or back."""
    from probe.core.model import Model

    call = f"probe.{where}(text, models{', path' if where == 'report' else ''})"
    if isinstance(text, Model) or (isinstance(text, (list, tuple)) and text):
        raise InputError(
            f"{call} takes the text first and the models second; got {type(text).__name__} as text. "
            f"Swap them, or use keywords: probe.{where}(text='...', models=[...])"
        )
    if not isinstance(text, str):
        check.text(text)
    given = [models] if isinstance(models, (str, Model)) else models if isinstance(models, (list, tuple)) else []
    for m in given:
        if isinstance(m, str) and _looks_like_sentence(m):
            raise InputError(
                f"{m!r} was passed as a model but looks like a sentence; {call} takes the text first, "
                f"so swap them, or use keywords: probe.{where}(text='...', models=[...])"
            )
    # the text's own faults are said before any model is loaded (seconds each): empty, several [MASK]s, and
    # no [MASK] when a model known to be masked is asked (None: the default pair, which has one)
    from probe.core.loading import KINDS

    kinds = [m.kind if isinstance(m, Model) else KINDS.get(str(m)) for m in given]
    Slot.parse(text, need_mask=models is None or "masked" in kinds)


def _looks_like_sentence(name: str) -> bool:
    """A string that is no model name or folder: has [MASK] or a space, and is not an existing path."""
    from pathlib import Path

    return (MASK in name or " " in name.strip()) and not Path(name).expanduser().exists()


def load_models(models, k: int) -> list[Model]:
    """One model (name, path or Model) or a sequence of them -> loaded Models; checks ``k`` too.

    ``None``: ``default_models()`` (the real pretrained pair when installed, else the bundled one).
    """
    if models is None:
        models = default_models()[0]
    if isinstance(models, str) or not isinstance(models, Sequence):
        models = [models]
    if not models:
        raise InputError("no models given; pass at least one, e.g. ['tiny-gpt', 'tiny-bert']")
    check.integer(k, "k", minimum=1)
    return [_load(m) for m in models]


def compare(
    text: str = DEFAULT_TEXT,
    models: Sequence[Model | str] | Model | str | None = None,
    k: int = 10,
    rescore: bool = True,
    truncate: bool = False,
    prepend_bos: bool | None = None,
) -> CompareFrame:
    """How do several LMs fill the [MASK] in ``text``? Side by side, and layer by layer.

    Takes (text, models), like ``probe.report`` and the ``probe compare TEXT -m ...`` command.

    Args:
        text: a sentence with one ``[MASK]`` (each masked model gets its own mask token there; causal
            models read the text left of it). Without [MASK], causal-only comparisons predict the next word.
        models: names, paths or loaded Models; causal and masked LMs can be mixed. None: the best pair
            installed (``probe.default_models()``: SmolLM2-135M + minilm-mlm, else tiny-gpt + tiny-bert).
        k: words per model and method.
        rescore: also rank the union of all candidates by each causal model's full-sentence likelihood.
        truncate: a text longer than a model's context is cut, at token boundaries, to a window around
            the slot (as balanced as the two sides allow) instead of raising; ``.attrs["truncated"]``
            names the models that read a cut text.
        prepend_bos: causal models read the text from their start token (None: ``Model.prepend_bos``,
            True by default), as ``Model.run`` does; False: the bare tokens.

    Returns:
        CompareFrame (a DataFrame) [model, kind, method, rank, word, prob, token, token_id, log_prob]:
        method is "masked", "next_token" or "rescored"; prob is the token probability ("masked",
        "next_token") or the sentence likelihood normalised over the candidates ("rescored"); token is
        the predicted token, or for "rescored" the word's tokens joined by "|" (token_id is then <NA>);
        log_prob is the token's log-probability or the whole filled sentence's.

        ``.attrs``: text, k, models, read (per model: prepend_bos and the tokens it read), agreement (records, also ``.agreement``: overlap@k, Spearman and
        Kendall per pair of lists) and layers (records, also ``.layers``: the logit-lens rank of each
        model's top word at every layer). ``.plot()`` and ``.plot_layers()`` draw them.

    Example:
        >>> frame = probe.compare("The robot must [MASK] hurt the human.", ["tiny-gpt", "tiny-bert"])
        >>> frame[frame.method == "masked"].head()
        >>> frame.attrs["agreement"]
    """

    check_order(text, models, "compare")
    rescore, truncate = check.boolean(rescore, "rescore"), check.boolean(truncate, "truncate")
    loaded = load_models(models, k)
    for m in loaded:
        _fills_slots(m)
    Slot.parse(text, need_mask=any(m.kind == "masked" for m in loaded))  # the text's faults before any model work
    readings = [read_text(m, text, truncate=truncate, prepend_bos=prepend_bos) for m in loaded]
    return compare_readings(readings, k=k, rescore=rescore, truncate=truncate)


def compare_readings(
    readings: Sequence[Reading],
    k: int = 10,
    rescore: bool = True,
    truncate: bool = False,
    runs: Sequence[Run | None] | None = None,
) -> CompareFrame:
    """``compare`` on texts already read (``probe.analysis.reading.read_text``, one per model, the same
    text): nothing is parsed or tokenised again. ``runs``: each reading's run when the caller has one with
    ``slot_hooks(model)`` in it (the report's model sections), so the model is not run twice."""
    from probe.analysis._compare_frame import CompareFrame

    if not readings:
        raise InputError("no models given; pass at least one, e.g. ['tiny-gpt', 'tiny-bert']")
    text = readings[0].text
    if any(r.text != text for r in readings):
        raise InputError("compare reads one text with every model; these readings are of different texts")
    check.integer(k, "k", minimum=1)
    runs = list(runs) if runs is not None else [None] * len(readings)
    if len(runs) != len(readings):
        raise InputError(f"got {len(runs)} runs for {len(readings)} readings; give one per reading, or none")
    names = _unique_names([r.model for r in readings])
    rows: list[dict] = []
    layers: list[dict] = []
    truncated: list[str] = []
    read: dict[str, dict] = {}
    for name, reading, run in zip(names, readings, runs, strict=True):
        model = reading.model
        _fills_slots(model)
        if reading.truncated:
            truncated.append(name)
        needed = slot_hooks(model)
        if run is None or not all(h in run for h in needed):
            run = reading.run(needed)
        pos = reading.position
        read[name] = {"prepend_bos": reading.prepend_bos, "tokens": reading.tokens}
        method = "masked" if model.kind == "masked" else "next_token"
        words = word_distribution(model, run.logits_at(pos), k, reading.parsed or reading.slot)
        rows += [{"model": name, "kind": model.kind, "method": method, **w} for w in words]
        if words:
            lens = run.logit_lens(k=1, position=pos, target=int(words[0]["token_id"])).drop_duplicates("layer")
            for layer, rank, prob in zip(lens["layer"], lens["target_rank"], lens["target_prob"], strict=True):
                layers.append(
                    {
                        "model": name,
                        "kind": model.kind,
                        "layer": int(layer),
                        "n_layers": model.n_layers,
                        "depth": int(layer) / model.n_layers,
                        "word": words[0]["word"],
                        "target_rank": int(rank),
                        "target_prob": float(prob),
                    }
                )
    if rescore:
        candidates = list(dict.fromkeys(r["word"] for r in rows))
        for name, reading in zip(names, readings, strict=True):
            model = reading.model
            if model.kind != "causal" or not candidates:
                continue
            slot = fitted = reading.parsed or reading.slot
            if truncate:
                fitted = fit_slot(model, slot, lambda s: [s.fill(w) for w in candidates])
                if fitted != slot and name not in truncated:
                    truncated.append(name)
            scores = sentence_log_probs(model, [fitted.fill(w) for w in candidates])
            top = max(scores)
            norm = math.log(sum(math.exp(s - top) for s in scores)) + top
            ranked = sorted(zip(candidates, scores), key=lambda ws: -ws[1])
            rows += [
                {
                    "model": name,
                    "kind": model.kind,
                    "method": "rescored",
                    "rank": i + 1,
                    "word": w,
                    "prob": math.exp(s - norm),
                    "token": _pieces(model, slot.space + w),
                    "token_id": None,
                    "log_prob": s,
                }
                for i, (w, s) in enumerate(ranked)
            ]
    frame = CompareFrame(rows, columns=COLUMNS)
    frame["token_id"] = frame["token_id"].astype("Int64")
    frame.attrs.update(
        text=text, k=k, models=names, read=read, agreement=agreement(rows, k), layers=layers, truncated=truncated
    )
    return frame


def _fills_slots(model: Model) -> None:
    """Raise unless ``model`` can fill a slot: it has a language-model head, and a mask token if masked."""
    if model.kind == "encoder":
        raise NoHeadError(
            f"{model.name} is an encoder without a language-model head, so it cannot fill a slot; "
            "compare causal or masked LMs (e.g. tiny-gpt, tiny-bert)"
        )
    if model.kind == "masked" and model.tokenizer.mask_token is None:
        raise InputError(f"{model.name} is masked but its tokenizer has no mask token; it cannot fill a slot")


def _pieces(model: Model, word: str) -> str:
    """How ``model`` spells a word in tokens, joined by "|" (" unhappy" -> " un|happy")."""
    ids = model.tokenizer(word, add_special_tokens=False)["input_ids"]
    return "|".join(model.to_str_tokens(ids))


def _unique_names(models: list[Model]) -> list[str]:
    names, seen = [], {}
    for m in models:
        seen[m.name] = seen.get(m.name, 0) + 1
        names.append(m.name if seen[m.name] == 1 else f"{m.name} #{seen[m.name]}")
    return names
