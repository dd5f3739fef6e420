"""Which input tokens drove a prediction: gradient attribution with captum, per token.

The attributed function is the target's log-probability at the slot (causal: the next token after
the text; masked: the [MASK] filler), as a function of the token embeddings [batch, pos, d_model];
position embeddings and everything after them are the model's own. A target of several tokens is a
continuation scored by its summed log-probability (masked models: one [MASK] per token).

Special tokens (BOS, [CLS], [SEP], the [MASK] slot itself) and appended continuation tokens are held
fixed: the baseline equals the input there, so they receive exactly 0 and every method attributes
only into the text's own tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from probe.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from probe.analysis.reading import Reading
    from probe.core.model import Model

METHODS = ("integrated_gradients", "gradient_x_input", "saliency", "occlusion")
BASELINES = ("zero", "pad", "mask", "unk")
# Integrated gradients: Gauss-Legendre quadrature, IG_STEPS points to start with, in segments of SEGMENT
# points; segments whose sum misses their own f(end) - f(start) are halved until the whole is within
# `tolerance`, up to REFINE x IG_STEPS points (tests/test_attribute.py measures it on the real models).
IG_STEPS = 64
SEGMENT = 16
REFINE = 8
TOLERANCE = 0.01
WARN = 0.05  # completeness worse than this is flagged in .attrs["warning"] and on the CLI


def _target_ids(model: Model, target) -> list[int]:
    """A word, a token id, several ids or a continuation string -> token ids (at least one)."""
    from probe.analysis.lens import target_id

    if isinstance(target, bool):
        raise InputError(f"target must be a word, a token id or a list of ids, got {target!r}")
    if isinstance(target, int):
        return [target_id(model, target)]
    if isinstance(target, (list, tuple)):
        if not target:
            raise InputError("target has no tokens; pass a word, a token id or a non-empty list of ids")
        return [target_id(model, int(t)) for t in target]
    if not isinstance(target, str):
        raise InputError(f"target must be a word, a token id or a list of ids, got {type(target).__name__}")
    if not target.strip():
        raise InputError("target has no tokens; pass a word such as ' not' or a token id")
    if not target[0].isspace():
        try:
            return [target_id(model, target)]  # one token: the spaced form first (" not" for BPE models)
        except InputError:
            target = " " + target  # a continuation of several tokens follows a space, as words do
    ids = model.tokenizer.encode(target, add_special_tokens=False)
    if not ids:
        raise InputError(f"target {target!r} has no tokens for {model.name}; pass a word or a token id")
    return ids


def _setup(model: Model, text, target, position: int | None, prepend_bos: bool | None = None, contrast=None):
    """(ids [1, N], slot positions per target token, target ids, contrast ids, fixed [N] bool, length n, slot).

    The text is read as ``Model.run`` reads it (the ``prepend_bos`` rule); positions are those of ``run``."""
    from probe.analysis.reading import Reading
    from probe.core.tokens import position_in

    if isinstance(text, Reading):  # parsed and tokenised already (the report's): read those very ids
        ids, prepend_bos = text.ids, text.prepend_bos
    elif isinstance(text, torch.Tensor):  # token ids [1, N] read with prepend_bos (attribute_generation's)
        ids = text
    elif isinstance(text, str):
        ids, _ = model.encode([text], prepend_bos=prepend_bos)
    else:
        raise InputError("attribute takes one text (a string)")
    start = model.start_token_id if model.reads_bos(prepend_bos) else None  # held fixed, never attributed
    n = ids.shape[1]
    special = set(model.tokenizer.all_special_ids) | ({start} if start is not None else set())
    slot = position_in(model, ids[0], position)
    if model.kind == "causal":
        ids = ids[:, : slot + 1]
        n = slot + 1
    else:
        mask_id = model.tokenizer.mask_token_id
        ids = ids.clone()
        ids[0, slot] = mask_id
    fixed = torch.tensor([int(i) in special for i in ids[0]])
    if model.kind == "masked":
        fixed[slot] = True
    if target is None:
        with torch.inference_mode():
            logits = model.run(ids, hooks=["logits"])["logits"][0, slot if model.kind == "masked" else n - 1]
        targets = [int(logits.argmax())]
    else:
        targets = _target_ids(model, target)
    contrasts = []
    if contrast is not None:
        contrasts = _target_ids(model, contrast)
        if len(targets) != 1 or len(contrasts) != 1:
            raise InputError(
                f"contrast compares one token with one token; {contrast!r} or the target is several tokens "
                f"for {model.name}: pass single words (' human' vs ' robot') or token ids"
            )
        if contrasts == targets:
            raise InputError(
                f"contrast {contrast!r} is the target itself, so there is no difference to attribute; "
                "pass another word (the runner-up, say)"
            )
    k = len(targets)
    if model.kind == "causal":
        full = torch.cat([ids, torch.tensor([targets[:-1]], dtype=ids.dtype)], dim=1)
        slots = list(range(n - 1, n - 1 + k))
        fixed = torch.cat([fixed, torch.ones(k - 1, dtype=torch.bool)])
    else:
        full = torch.cat([ids[:, :slot], torch.full((1, k), mask_id), ids[:, slot + 1 :]], dim=1)
        fixed = torch.cat([fixed[:slot], torch.ones(k, dtype=torch.bool), fixed[slot + 1 :]])
        slots = list(range(slot, slot + k))
    if full.shape[1] > model.n_ctx:
        raise InputError(f"text plus target is {full.shape[1]} tokens, longer than {model.name}'s context")
    return full, slots, targets, contrasts, fixed, n, slot


def attribute(
    model: Model,
    text: str | Reading,
    target: str | int | list[int] | None = None,
    method: str = "integrated_gradients",
    position: int | None = None,
    baseline: str | None = None,
    n_steps: int = IG_STEPS,
    prepend_bos: bool | None = None,
    tolerance: float = TOLERANCE,
    contrast: str | int | None = None,
) -> pd.DataFrame:
    """How much each input token contributed to the model's (log-)probability of ``target``.

    Args:
        text: one text. Masked models: it contains the [MASK] to fill (or pass ``position`` of a token
            to mask out and predict). Or a ``Reading`` (``probe.analysis.reading.read_text``): its token ids
            are attributed as they are, and the frame's ``.attrs["reading"]`` records it.
        target: a word (" not"), a token id, several ids, or a continuation string of several tokens
            (summed log-probability); default the model's own top prediction.
        contrast: a word or token id: attribute log p(target) - log p(contrast) instead (contrastive
            attribution, Yin & Neubig 2022: why this word rather than that one); one token each. Every
            method works on the difference, and integrated gradients add up to its gain as before.
        method: "integrated_gradients" (captum IntegratedGradients, Gauss-Legendre, ``n_steps``),
            "gradient_x_input" (signed), "saliency" (L2 norm of the gradient, >= 0) or "occlusion"
            (f(input) - f(input with that token's embedding set to the baseline)).
        position: causal: predict the token after this position (the text is cut there; default the
            last token); masked: the slot (default the [MASK]).
        baseline: the embedding the path starts from / occlusion puts in: "zero" (default for causal
            models), "mask" (the [MASK] token's embedding; default for masked models: the model's own
            "unknown word"), "pad" (the padding token's embedding, EOS where there is none) or "unk" (the
            unknown token's embedding, inseq's baseline). Measured
            completeness |sum - (f(x) - f(baseline))| / |f(x) - f(baseline)| with a fixed 64 steps:
            tiny-gpt 1e-6 (zero); MiniLM-MLM < 1e-4 (mask); SmolLM2-135M 1% to 104% (zero: from a zero
            embedding the output swings wildly over the first tenth of the path, where RMSNorm rescales a
            near-zero residual and the start token's sink takes over), hence the refinement below.
        n_steps: integration steps to start with (integrated gradients), SEGMENT points per segment. The
            segment that misses its own f(end) - f(start) most is halved until the whole adds up within
            ``tolerance``, up to REFINE x ``n_steps`` points (SmolLM2-135M, ordinary sentences: 80-192
            steps to reach 1%); worse than 5% sets ``.attrs["warning"]``.
        tolerance: the completeness to refine to (relative to f(x) - f(baseline)).
        prepend_bos: read the text as ``Model.run`` does (None: ``Model.prepend_bos``, True by default):
            a causal model's start token first, held fixed (its row has attribution 0, like [CLS]).

    Returns:
        DataFrame [position, token, attribution, method], one row per token read (special tokens and
        the start token 0); positions are ``run``'s. ``.attrs``: prepend_bos and tokens (what was read), target (the target tokens as text), target_ids, target_value
        (f(input), the log-probability, minus the contrast's when given), baseline_value (f(baseline)),
        contrast and contrast_ids (None without one), convergence_delta
        (integrated gradients: sum(attribution) - (target_value - baseline_value); else None),
        completeness (|convergence_delta| / |target_value - baseline_value|), warning (a sentence when
        completeness is worse than 5%, else None), baseline, n_steps (the steps used), slot, model.

    Example:
        >>> probe.attribute(probe.load("tiny-gpt"), "The robot must not hurt the", target=" human")
    """
    import pandas as pd

    from probe.core.forward import forward_capture
    from probe.core.names import LOGITS
    from probe.errors import need

    captum = need("captum.attr")
    InputXGradient, IntegratedGradients = captum.InputXGradient, captum.IntegratedGradients
    Occlusion, Saliency = captum.Occlusion, captum.Saliency

    if method not in METHODS:
        raise InputError(f"method={method!r} is not an attribution method; use one of {', '.join(METHODS)}")
    if model.kind == "encoder":
        raise InputError(f"{model.name} has no language-model head, so there is no prediction to attribute")
    baseline = baseline or ("mask" if model.kind == "masked" else "zero")
    if baseline not in BASELINES:
        raise InputError(f"baseline={baseline!r} is not known; use one of {', '.join(BASELINES)}")
    if n_steps < 2:
        raise InputError("n_steps must be at least 2")
    full, slots, targets, contrasts, fixed, n, slot = _setup(model, text, target, position, prepend_bos, contrast)
    full = full.to(model.device)
    mask = torch.ones_like(full)
    emb = model.hf.get_input_embeddings()
    with torch.no_grad():
        x = emb(full).detach().float()  # [1, N, d_model]
        tok = model.tokenizer
        base_id = {"pad": tok.pad_token_id, "mask": tok.mask_token_id, "unk": tok.unk_token_id}.get(baseline)
        if baseline != "zero" and base_id is None:
            raise InputError(f"{model.name}'s tokenizer has no {baseline} token; use baseline='zero'")
        vec = torch.zeros_like(x[0, 0]) if baseline == "zero" else emb(torch.tensor([base_id], device=full.device))[0]
        base = torch.where(fixed.to(x.device)[None, :, None], x, vec.float().expand_as(x))
    x.requires_grad_(True)
    slot_t = torch.tensor(slots, device=x.device)
    tgt_t = torch.tensor(targets, device=x.device)
    con_t = torch.tensor(contrasts, device=x.device, dtype=torch.long)

    def f(embeds: torch.Tensor) -> torch.Tensor:  # [B, N, d_model] -> [B] summed log-prob of the target
        batch = len(embeds)
        ids = full.expand(batch, -1)
        logits = forward_capture(
            model.adapter, ids, mask.expand(batch, -1), [LOGITS], grad=True, embeds=embeds.to(emb.weight.dtype)
        )[LOGITS]
        logp = logits[:, slot_t].float().log_softmax(-1)  # [B, k, vocab]
        value = logp.gather(-1, tgt_t.expand(batch, -1)[..., None])[..., 0].sum(-1)
        if len(con_t):  # log p(target) - log p(contrast) at the one slot
            value = value - logp[:, 0, con_t[0]]
        return value

    delta, used = None, None
    with torch.enable_grad():
        if method == "integrated_gradients":
            per_token, delta, used = _integrate(IntegratedGradients(f), x, base, n_steps, tolerance)
        elif method == "gradient_x_input":
            per_token = InputXGradient(f).attribute(x)[0].sum(-1)
        elif method == "saliency":
            per_token = Saliency(f).attribute(x, abs=False)[0].norm(dim=-1)
        else:
            d = x.shape[-1]
            attr = Occlusion(f).attribute(x, sliding_window_shapes=(1, d), strides=(1, d), baselines=base)
            per_token = attr[0].mean(-1)  # every dim of a token carries the token's whole effect
        with torch.no_grad():
            value, base_value = float(f(x)), float(f(base))
    per_token = per_token.detach().float().cpu()
    per_token[fixed.cpu()] = 0.0
    if model.kind == "causal":
        keep = list(range(n))
    else:
        keep = [i for i in range(full.shape[1]) if not _inserted(i, slot, len(slots))]
    original = _original_positions(model, len(slots), slot, n, full.shape[1])
    toks = model.to_str_tokens(full[0].tolist())
    frame = pd.DataFrame(
        {
            "position": [original[i] for i in keep],
            "token": [toks[i] for i in keep],
            "attribution": per_token[keep].numpy(),
            "method": method,
        }
    )
    frame.attrs.update(
        target="".join(model.to_str_tokens(targets)),
        target_ids=targets,
        contrast="".join(model.to_str_tokens(contrasts)) if contrasts else None,
        contrast_ids=contrasts or None,
        target_value=value,
        baseline_value=base_value,
        convergence_delta=delta,
        method=method,
        baseline=baseline,
        n_steps=used,
        completeness=None if delta is None else abs(delta) / max(abs(value - base_value), 1e-12),
        warning=None,
        slot=slot,
        model=model.name,
    )
    if delta is not None and frame.attrs["completeness"] > WARN and abs(delta) > 1e-4:
        frame.attrs["warning"] = (
            f"integrated gradients do not add up: the attributions miss the log-probability gained "
            f"({value - base_value:+.3f}) by {delta:+.3f} ({frame.attrs['completeness']:.0%}) after {used} steps; "
            "raise n_steps or try another baseline"
        )
    if isinstance(text, str):
        frame.attrs.update(
            text=text, prepend_bos=model.reads_bos(prepend_bos), tokens=model.tokenize(text, prepend_bos)
        )
    elif isinstance(text, torch.Tensor):
        frame.attrs.update(prepend_bos=model.reads_bos(prepend_bos), tokens=model.to_str_tokens(text[0].tolist()))
    else:  # a Reading: what it read, without tokenising again
        frame.attrs.update(text=text.read, prepend_bos=text.prepend_bos, tokens=text.tokens, reading=text.attrs())
    return frame


def attribute_generation(
    model: Model,
    prompt: str,
    max_new_tokens: int = 8,
    method: str = "integrated_gradients",
    continuation: str | None = None,
    baseline: str | None = None,
    n_steps: int = IG_STEPS,
    prepend_bos: bool | None = None,
    tolerance: float = TOLERANCE,
) -> pd.DataFrame:
    """Every generated token attributed to the prompt and to the tokens generated before it (inseq's view).

    The model continues ``prompt`` greedily (or is made to read ``continuation``: forced decoding); for
    step s the text read is the prompt plus the first s generated tokens, and the target is token s, so
    each row of the heatmap is one ``probe.attribute`` call (same methods, baseline and refinement;
    every integrated-gradients step adds up to its own log-probability gain).

    Args:
        prompt: the text to continue (causal models only).
        max_new_tokens: tokens to generate; the prompt plus them must fit the context.
        continuation: attribute this text's tokens instead of generating (then its length counts, not
            ``max_new_tokens``).
        method, baseline, n_steps, prepend_bos, tolerance: as ``probe.attribute``. inseq 0.7's numbers
            (equal to 1e-3, tests/test_attribute.py) come with its conventions: ``baseline="unk"`` (the
            [UNK] embedding), ``prepend_bos=False`` (inseq adds no start token to a decoder-only model),
            ``n_steps=16`` and ``tolerance=math.inf`` (one Gauss-Legendre rule, as captum's; probe cuts more
            steps into 16-point segments and refines them until the step adds up).

    Returns:
        DataFrame [step, generated_token, position, token, attribution], long form: for each step, one row
        per token read before it (the start token, held fixed, scores 0). ``.attrs``: prompt, generated
        (the new text), generated_tokens, generated_ids, tokens (every token read), n_prompt, method, baseline,
        target_values, baseline_values, completeness (per step; None except integrated gradients),
        warning (the first step that does not add up, or None), model.

    Example:
        >>> probe.attribute_generation(probe.load("tiny-gpt"), "The robot must", max_new_tokens=4)
    """
    import pandas as pd

    from probe import _validate as check
    from probe.analysis.predict import article

    prompt = check.text(prompt, "prompt")
    max_new_tokens = check.integer(max_new_tokens, "max_new_tokens", minimum=1)
    if model.kind != "causal":
        raise InputError(
            f"{model.name} is {article(model.kind)} model and generates nothing; attribute_generation needs a "
            "causal LM (for a masked model use probe.attribute at the [MASK])"
        )
    ids, _ = model.encode([prompt], prepend_bos=prepend_bos)
    n_prompt = ids.shape[1]
    if continuation is not None:
        new = model.tokenizer.encode(check.text(continuation, "continuation"), add_special_tokens=False)
        if not new:
            raise InputError(f"continuation {continuation!r} has no tokens; pass some text or None to generate")
    else:
        if n_prompt + max_new_tokens > model.n_ctx:
            raise InputError(
                f"the prompt is {n_prompt} tokens, so {max_new_tokens} more go past {model.name}'s context of "
                f"{model.n_ctx}; ask for at most {max(model.n_ctx - n_prompt, 0)} new tokens or shorten the prompt"
            )
        _, steps = model.generate(prompt, max_new_tokens=max_new_tokens, k=1, prepend_bos=prepend_bos)
        new = steps.loc[steps["chosen"], "token_id"].tolist()  # greedy: the model's own continuation
    if n_prompt + len(new) > model.n_ctx:
        raise InputError(
            f"prompt plus continuation is {n_prompt + len(new)} tokens, past {model.name}'s context of {model.n_ctx}"
        )
    full = torch.cat([ids, torch.tensor([new], dtype=ids.dtype)], dim=1)
    toks = model.to_str_tokens(full[0].tolist())
    frames, values, base_values, complete, warning = [], [], [], [], None
    for step, token_id in enumerate(new):
        read = full[:, : n_prompt + step]
        frame = attribute(
            model,
            read,
            target=[token_id],
            method=method,
            baseline=baseline,
            n_steps=n_steps,
            prepend_bos=prepend_bos,
            tolerance=tolerance,
        )
        a = frame.attrs
        values.append(a["target_value"])
        base_values.append(a["baseline_value"])
        complete.append(a["completeness"])
        warning = warning or (a["warning"] and f"step {step} ({toks[n_prompt + step]!r}): {a['warning']}")
        frames.append(
            pd.DataFrame(
                {
                    "step": step,
                    "generated_token": toks[n_prompt + step],
                    "position": frame["position"],
                    "token": frame["token"],
                    "attribution": frame["attribution"],
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    out.attrs.update(
        prompt=prompt,
        generated=model.tokenizer.decode(new),
        generated_tokens=toks[n_prompt:],
        generated_ids=new,
        tokens=toks,
        n_prompt=n_prompt,
        method=method,
        baseline=a["baseline"],
        target_values=values,
        baseline_values=base_values,
        completeness=complete,
        warning=warning,
        prepend_bos=model.reads_bos(prepend_bos),
        model=model.name,
    )
    return out


def _integrate(ig, x: torch.Tensor, base: torch.Tensor, n_steps: int, tolerance: float):
    """Integrated gradients along base -> x as composite Gauss-Legendre quadrature: (per-token [N], delta, steps).

    The straight path is cut into segments of at most SEGMENT points; each segment is captum's own IG
    between two points of the path, so it reports its own completeness error (its attributions' sum minus
    f(end) - f(start)). While the whole misses f(x) - f(base) by more than ``tolerance`` of it, the segment
    with the largest error is halved (double the points where the path bends: on RMSNorm models the first
    tenth of the path from a zero embedding is where the output jumps), up to REFINE x n_steps points.
    """
    per = min(SEGMENT, n_steps)
    count = max(1, n_steps // per)
    direction = x - base

    def segment(a: float, b: float) -> tuple[float, float, torch.Tensor, float]:
        attr, err = ig.attribute(
            base + b * direction,
            baselines=base + a * direction,
            n_steps=per,
            method="gausslegendre",
            return_convergence_delta=True,
        )
        return a, b, attr[0].sum(-1).detach(), float(err)

    parts = [segment(i / count, (i + 1) / count) for i in range(count)]
    while True:
        delta = sum(p[3] for p in parts)
        gain = sum(float(p[2].sum()) - p[3] for p in parts)  # f(x) - f(base), from the segments' own ends
        if abs(delta) <= tolerance * abs(gain) + 1e-6 or (len(parts) + 1) * per > REFINE * n_steps:
            break
        worst = max(range(len(parts)), key=lambda i: abs(parts[i][3]))
        a, b = parts[worst][:2]
        parts[worst : worst + 1] = [segment(a, (a + b) / 2), segment((a + b) / 2, b)]
    return sum(p[2] for p in parts), delta, len(parts) * per


def _inserted(i: int, slot: int, k: int) -> bool:
    """Masked models: the extra [MASK]s of a k-token target (positions slot+1 .. slot+k-1)."""
    return slot < i < slot + k


def _original_positions(model: Model, k: int, slot: int, n: int, total: int) -> list[int]:
    """Index in the (possibly widened) input -> position in the text the user gave."""
    if model.kind == "causal":
        return list(range(total))
    return [i if i <= slot else i - (k - 1) for i in range(total)]
