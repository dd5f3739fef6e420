"""One text as one model reads it, parsed and tokenised once.

``read_text(model, text)`` splits the text at its [MASK] (``Slot``), fits it to the model's context when
asked, picks what the model reads (a causal model: the left side; a masked model: its own mask token in
place), applies the start-token rule (``prepend_bos``) and tokenises it. The report builds one
``Reading`` per model and hands it to every section (predictions, attribution, patching, factors), which
no longer parse or tokenise the text again; frames made from it carry ``reading.attrs()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probe.analysis.compare import MASK, Slot, model_text, run_slot
from probe.errors import InputError

if TYPE_CHECKING:
    import torch

    from probe.core.model import Model


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

    @property
    def tokens(self) -> list[str]:
        return self.model.to_str_tokens(self.ids[0])

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
    )
