"""One text as one model reads it, parsed and tokenised once.

``read_text(model, text)`` splits the text at its [MASK] (``Slot``), fits it to the model's context when
asked, picks what the model reads (a causal model: the left side; a masked model: its own mask token in
place), applies the start-token rule (``prepend_bos``) and tokenises it. The report builds one
``Reading`` per model and hands it to every section (predictions, attribution, patching, factors), which
no longer parse or tokenise the text again; frames made from it carry ``reading.attrs()``.

The slot helpers live here too: ``Slot`` (the text around the [MASK]), ``model_text`` (what a model
reads of it), ``fit_slot``/``run_slot`` (a window around the slot that fits the context).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probe.defaults import DEFAULT_TEXT, MASK
from probe.errors import InputError

if TYPE_CHECKING:
    import torch

    from probe.core.model import Model
    from probe.core.run import Run


# -- the slot ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Slot:
    """The text around the [MASK]: ``left + space + WORD + right``."""

    left: str
    space: str
    right: str

    @classmethod
    def parse(cls, text: str, need_mask: bool) -> Slot:
        if not isinstance(text, str) or not text.strip():
            raise InputError(
                "no text given; pass a sentence with one [MASK], e.g. 'The robot must [MASK] hurt the human.'"
            )
        count = text.count(MASK)
        if count > 1:
            raise InputError(
                f"the text has {count} {MASK} markers; compare and report fill one slot, so keep exactly one "
                "(for one of several masks: model.run(text).predictions(position=...))"
            )
        if count == 0:
            if need_mask:
                raise InputError(
                    f"the text has no {MASK}; masked models fill a slot, so put {MASK} where a word is missing, "
                    f"e.g. '{DEFAULT_TEXT}'"
                )
            return cls(text.rstrip(), " ", "")  # causal models only: the slot is the next word
        before, after = text.split(MASK)
        left = before.rstrip()
        return cls(left, before[len(left) :], after)

    def fill(self, word: str) -> str:
        return f"{self.left}{self.space}{word}{self.right}"

    def masked_text(self, mask_token: str) -> str:
        return self.fill(mask_token)

    def cut(self, keep_left: int, keep_right: int, tokenizer) -> Slot:
        """Keep the last ``keep_left`` tokens of the left text and the first ``keep_right`` of the right."""
        return Slot(
            _keep_tokens(self.left, keep_left, tokenizer, end=True),
            self.space,
            _keep_tokens(self.right, keep_right, tokenizer, end=False),
        )

    @property
    def wants_word_start(self) -> bool:
        """A filler after a space starts a new word; one glued to the left text may continue it."""
        return bool(self.space) and bool(self.left)


def model_text(model: Model, slot: Slot, text: str) -> str | None:
    """The text a model reads for the slot: its own mask token in place (masked), or the left context
    (causal: a GPT only sees what comes before). None means "just the BOS token" (slot at the start)."""
    if MASK not in text:
        return text
    if model.kind == "causal":
        return slot.left or None
    mask_token = model.tokenizer.mask_token
    return slot.masked_text(mask_token) if mask_token else slot.fill("").strip()


def _token_offsets(text: str, tokenizer) -> list[tuple[int, int]]:
    from probe.core.model import quiet_length_warning

    if not text:
        return []
    with quiet_length_warning(tokenizer):
        return tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]


def _keep_tokens(text: str, keep: int, tokenizer, end: bool) -> str:
    """The last (``end``) or first ``keep`` tokens of ``text``, cut at a token boundary in the string."""
    offsets = _token_offsets(text, tokenizer)
    if keep >= len(offsets):
        return text
    if keep <= 0:
        return ""
    return text[offsets[len(offsets) - keep][0] :] if end else text[: offsets[keep - 1][1]]


def fit_slot(
    model: Model,
    slot: Slot,
    texts: Callable[[Slot], list[str]],
    extra: int = 0,
    right: bool = True,
    prepend_bos: bool | None = None,
) -> Slot:
    """Cut ``slot``'s left and right text (never the slot) until every text the model reads fits its context.

    Args:
        texts: the texts the model will read, made from a slot (e.g. the masked sentence).
        extra: tokens the caller adds to each text (a BOS token put first).
        right: whether the right text counts; if not, only the left is cut (a GPT's next word).

    Returns:
        The slot itself when everything fits, else a window around the slot as balanced as the two sides allow.
    """
    tok = model.tokenizer
    for _ in range(50):  # each pass cuts at least the overshoot; more than a few passes never happen
        longest = max(len(ids) for ids in model._token_ids(texts(slot), prepend_bos)) + extra
        over = longest - model.n_ctx
        if over <= 0:
            return slot
        n_left = len(_token_offsets(slot.left, tok))
        n_right = len(_token_offsets(slot.right, tok)) if right else 0
        total = max(n_left + n_right - over, 0)  # tokens the two sides may keep together
        if n_right <= total // 2:  # a short side keeps everything, the other side gets the rest
            keep_right = n_right
        elif n_left <= total - total // 2:
            keep_right = total - n_left
        else:
            keep_right = total // 2
        keep_left = total - keep_right
        if keep_left >= n_left and keep_right >= n_right:  # nothing left to cut: the slot alone is too long
            break
        slot = slot.cut(keep_left, keep_right if right else len(_token_offsets(slot.right, tok)), tok)
    raise InputError(f"the text cannot be cut to fit {model.name}'s context of {model.n_ctx} tokens")


def run_slot(model: Model, slot: Slot, truncate: bool = False, prepend_bos: bool | None = None) -> Slot:
    """The slot as ``model`` will read it for its own prediction: cut to its context when ``truncate``."""
    if not truncate:
        return slot
    if model.kind == "causal":  # reads the left side only
        return fit_slot(model, slot, lambda s: [s.left], right=False, prepend_bos=prepend_bos) if slot.left else slot
    mask = model.tokenizer.mask_token  # masked models (and encoders, as the report runs them) read the mask
    return fit_slot(model, slot, lambda s: [s.masked_text(mask) if mask else s.fill("")])


@dataclass(frozen=True, eq=False)
class Reading:
    """What ``model`` reads of ``text``.

    Attributes:
        model: the model (its ``prepend_bos`` default already applied).
        text: the text as given, [MASK] and all.
        slot: the text around the [MASK] (fitted to the model's context when ``truncated``).
        read: the string the model reads; None when that is its start token alone ([MASK] opens the text).
        ids: [1, n] the token ids read, start token included where the rule puts one.
        prepend_bos: whether the start token was put first.
        position: where the model predicts: a masked model's mask token, a causal model's last token.
        truncated: whether the text was cut to fit the context.
    """

    model: Model
    text: str
    slot: Slot
    read: str | None
    ids: torch.Tensor
    prepend_bos: bool
    position: int
    truncated: bool = False
    parsed: Slot | None = None  # the text's slot before any cut (``slot`` is the window read)

    @property
    def tokens(self) -> list[str]:
        return self.model.to_str_tokens(self.ids[0])

    def run(self, hooks: Sequence[str] | None = None) -> Run:
        """``model.run`` on exactly these ids, the run marked as read by this reading's start-token rule."""
        run = self.model.run(self.ids, hooks=hooks)
        run.prepend_bos = self.prepend_bos  # given as ids, read by the rule
        return run

    def attrs(self) -> dict[str, Any]:
        """What a frame made from this reading records in ``.attrs["reading"]``."""
        return {
            "model": self.model.name,
            "text": self.text,
            "read": self.read,
            "tokens": self.tokens,
            "prepend_bos": self.prepend_bos,
            "position": self.position,
            "truncated": self.truncated,
        }


def read_text(model: Model, text: str, *, truncate: bool = False, prepend_bos: bool | None = None) -> Reading:
    """Parse ``text`` for ``model`` once: see the module docstring. Errors (no text, two [MASK]s, a masked
    model without one, nothing left of the [MASK] for a causal model, too long) are one ``InputError``."""
    from probe.core.tokens import position_in

    model = model.reading(prepend_bos)
    slot = Slot.parse(text, need_mask=model.kind == "masked")
    fitted = run_slot(model, slot, truncate)
    shown = fitted.left if fitted != slot and MASK not in text else text  # model_text reads the whole text then
    read = model_text(model, fitted, shown)
    if model.kind == "causal":
        try:
            ids = model.document_ids(read)
        except InputError:
            if read:
                raise
            raise InputError(
                f"{MASK} opens the text, so {model.name} has no left context; put a word before {MASK}"
            ) from None
    else:
        ids, _ = model.encode([read], truncate=truncate)
    return Reading(
        model=model,
        text=text,
        slot=fitted,
        read=read,
        ids=ids,
        prepend_bos=model.reads_bos(),  # False for masked models: they have no start token
        position=position_in(model, ids[0], None),
        truncated=fitted != slot,
        parsed=slot,
    )
