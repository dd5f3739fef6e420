"""The dashboard's work without any web code: models loaded once, runs and figures cached, one lock per model.

Everything the page shows comes from :class:`Workbench` methods that take plain values (model names, a
text, a layer, a head, a focused position) and return ``probe.viz`` figures, the same builders the HTML
reports use. The Dash callbacks (``probe.dashboard._app``) only call these, so the work can be timed and
tested without a browser (``benchmarks/dashboard.py``).

Thread safety: the web server answers requests in threads. A forward pass registers hooks on the model's
modules and may switch its attention kernel, so two passes on one model at once would see each other's
hooks; every piece of work on a model therefore holds that model's lock (several models: in name order, so
two requests never wait on each other in a circle). Results are cached under the text and model they came
from and returned as new values, so two users' requests never share mutable state.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probe.defaults import DEFAULT_TEXT, MASK
from probe.errors import InputError, LoadError

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from probe.analysis.reading import Reading
    from probe.core.model import Model
    from probe.core.run import Run

# The longest text the page takes, in characters, before it is even tokenized.
MAX_CHARS = 2000
# Tokens per text: figures of longer texts are unreadable and slow to draw; the model's context caps it too.
MAX_TOKENS = 256
EXAMPLES = (
    DEFAULT_TEXT,
    "Paris is the [MASK] of France.",
    "The cat sat on the [MASK] and went to sleep.",
    "She opened the door and [MASK] into the room.",
)
# The views of one model (each a probe.viz builder; see Workbench.model_views) and of all models together.
MODEL_VIEWS = (
    "tokens",
    "predictions",
    "logit_lens",
    "lens_target",
    "lens_kl",
    "attention_entropy",
    "residual_norms",
    "neurons",
)
GENERATE = 5  # tokens the generation view writes and attributes (each one integrated-gradients call)
HEAD_VIEWS = ("predictions", "logit_lens", "lens_target", "lens_kl")  # need a language-model head
COMPARE_VIEWS = ("comparison", "compare_layers")
FOCUSED_VIEWS = ("predictions", "lens_target", "lens_kl")  # drawn for the focused token; the others only outline it
TOP_K = 10


@dataclass(frozen=True)
class Choice:
    """One model the page may offer: its name in the picker and what ``probe.load`` takes to load it."""

    name: str
    source: Any  # a name, a path, or an already loaded Model


class _LRU:
    """A small thread-safe least-recently-used cache; ``get_or_make`` runs ``make`` outside its lock."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
        value = make()  # callers hold the model lock, so one key is never made twice at once
        with self._lock:
            self.misses += 1
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)


def offered_models(given: Sequence[Any]) -> list[Choice]:
    """The models the page may load: those given (command line) first, then every installed one
    ``probe.models()`` lists. Nothing else can be loaded from the browser."""
    from probe.core.model import Model

    choices: list[Choice] = []
    seen: set[str] = set()
    for item in given:
        name = item.name if isinstance(item, Model) else str(item)
        if name in seen:
            continue
        seen.add(name)
        choices.append(Choice(name, item))
    try:
        from probe.cards import models as listed

        frame = listed()
        installed = frame[frame["installed"].astype(bool)]["name"].tolist()
    except Exception:  # the list is a convenience; the given models are always offered
        installed = []
    for name in installed:
        if name not in seen:
            seen.add(name)
            choices.append(Choice(name, name))
    return choices


class Workbench:
    """The models a dashboard offers, loaded once, with cached runs and figures.

    Args:
        models: names, paths or loaded Models to select first (they are offered even if ``probe models``
            does not list them).
        offered: every model the page may pick, as Choices; default: ``models`` plus the installed models
            ``probe.models()`` lists.
        max_tokens: the longest text in tokens (also capped at each model's context).

    Example:
        >>> bench = Workbench(["tiny-gpt", "tiny-bert"])
        >>> figs = bench.update(["tiny-gpt", "tiny-bert"], "The robot must [MASK] hurt the human.", 0, 0)
    """

    def __init__(self, models: Sequence[Any], offered: Sequence[Choice] | None = None, max_tokens: int = MAX_TOKENS):
        if isinstance(models, str) or not isinstance(models, Sequence):
            models = [models]
        if not models:
            raise InputError("no models given; pass at least one, e.g. ['tiny-gpt', 'tiny-bert']")
        if not isinstance(max_tokens, int) or max_tokens < 2:
            raise InputError(f"max_tokens must be an integer of at least 2, got {max_tokens!r}")
        self.choices = list(offered) if offered is not None else offered_models(models)
        self.offered = [c.name for c in self.choices]
        self._source = {c.name: c.source for c in self.choices}
        from probe.core.model import Model

        self.selected = list(dict.fromkeys(m.name if isinstance(m, Model) else str(m) for m in models))
        missing = [n for n in self.selected if n not in self._source]
        if missing:
            raise InputError(f"{', '.join(missing)} is not among the offered models; add it to offered=")
        self.max_tokens = max_tokens
        # one lock per offered model, made now so that no two threads ever make two locks for one model
        self._locks = {name: threading.RLock() for name in self.offered}
        self._loaded: dict[str, Model] = {}
        self._readings = _LRU(64)  # what each model reads of a text, tokenised once
        self._runs = _LRU(8)  # a run holds every position's logits (50 MB at 256 tokens of SmolLM2): keep few
        self._figures = _LRU(512)

    # -- models --------------------------------------------------------------------------------
    def check_name(self, name: Any) -> str:
        """``name`` if the page offers it; otherwise an InputError (no arbitrary paths from a browser)."""
        if name is None or name == "":
            raise InputError(f"pick a model first: one of {', '.join(self.offered)}")
        if not isinstance(name, str) or name not in self._locks:
            shown = repr(name)[:80]
            raise InputError(
                f"model {shown} is not offered here; pick one of {', '.join(self.offered)} "
                "(start `probe dashboard -m NAME` to add one)"
            )
        return name

    def model(self, name: str) -> Model:
        """The loaded model called ``name`` (loaded on first use, under its lock, then kept)."""
        name = self.check_name(name)
        with self._locks[name]:
            if name not in self._loaded:
                from probe.core.model import Model, load

                source = self._source[name]
                try:
                    self._loaded[name] = source if isinstance(source, Model) else load(source)
                except LoadError:
                    raise
                except Exception as err:  # a broken install must not take the page down
                    raise LoadError(f"cannot load {name}: {str(err).splitlines()[0] if str(err) else err!r}") from None
            return self._loaded[name]

    def warm(self, names: Iterable[str] | None = None, on_load: Callable[[str], None] | None = None) -> None:
        """Load ``names`` (default: the selected models) now, so the first request does not wait."""
        for name in self.selected if names is None else names:
            if on_load is not None:
                on_load(name)
            self.model(name)

    @contextmanager
    def _holding(self, names: Iterable[str]):
        """Hold the locks of ``names`` (in name order, so two requests never wait on each other in a circle)."""
        with ExitStack() as stack:
            for name in sorted(set(names)):
                stack.enter_context(self._locks[name])
            yield

    # -- text --------------------------------------------------------------------------------
    def check_text(self, text: Any) -> str:
        """The text if the page can take it: a non-empty string of at most MAX_CHARS characters."""
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"type a sentence first; put {MASK} where a word is missing, e.g. '{DEFAULT_TEXT}'")
        if len(text) > MAX_CHARS:
            raise InputError(f"the text has {len(text):,} characters; the dashboard takes at most {MAX_CHARS:,}")
        return text

    def read_text(self, model: Model, text: str) -> Reading:
        """What ``model`` reads of ``text``, as in the report (``probe.analysis.reading.read_text``): masked
        models their own mask token, causal models the left context of [MASK] (``.read`` None: just the start
        token). Checks the page's length cap; a text past the model's context is said in the page's words."""
        from probe.analysis.reading import Slot, model_text, read_text

        cap = min(self.max_tokens, model.n_ctx)
        why = f"{model.name}'s context" if cap == model.n_ctx else "the dashboard's limit (--max-tokens)"
        try:
            reading = read_text(model, text)
        except InputError:  # too long for the model? say it as the page does (this path alone tokenises twice)
            read = model_text(model, Slot.parse(text, need_mask=model.kind == "masked"), text)
            n = len(model.tokenize(read)) if read is not None else 0
            if n > cap:
                raise InputError(
                    f"the text is {n} tokens for {model.name}, more than {cap} ({why}); shorten it"
                ) from None
            raise
        n = reading.ids.shape[1]  # the tokens it reads, start token included (Model.prepend_bos)
        if reading.read is not None and n > cap:
            raise InputError(f"the text is {n} tokens for {model.name}, more than {cap} ({why}); shorten it")
        return reading

    def reading(self, name: str, text: str) -> Reading:
        """``read_text`` of model ``name``, cached by (model, text): every view of a text starts from it."""
        text = self.check_text(text)
        model = self.model(name)
        return self._readings.get_or_make((name, text), lambda: self.read_text(model, text))

    # -- runs and figures ----------------------------------------------------------------------
    def run(self, name: str, text: str) -> Run:
        """The run of model ``name`` on ``text`` (cached by (model, text)); the same hooks as the report."""
        from probe.pages.build import model_hooks

        with self._locks[name]:
            reading = self.reading(name, text)
            return self._runs.get_or_make((name, text), lambda: reading.run(model_hooks(reading.model)))

    def _figure(self, key: tuple, names: Iterable[str], make: Callable[[], go.Figure]) -> go.Figure:
        with self._holding(names):
            return self._figures.get_or_make(key, make)

    def model_view(self, name: str, text: str, view: str, focus: int | None = None) -> go.Figure:
        """One per-model figure (a name in MODEL_VIEWS); ``focus`` is a token position (predictions there).

        The figures are the report's: ``run.plot.<view>()`` with the report's arguments.
        """
        if view not in MODEL_VIEWS:
            raise InputError(f"unknown view {view!r}; one of {', '.join(MODEL_VIEWS)}")
        run = self.run(name, text)
        model = run.model
        if view in HEAD_VIEWS and model.kind == "encoder":
            raise InputError(f"{name} is an encoder without a language-model head: it has no predictions")
        pos = self.focus(run, focus)
        plots = run.plot
        if view == "predictions":
            make = lambda: plots.predictions(k=TOP_K, position=pos)  # noqa: E731
        elif view == "lens_target":

            def make():
                top = int(run.predictions(k=1, position=pos)["token_id"].iloc[0])
                return plots.lens_target(top, position=pos)

        elif view == "neurons":
            make = lambda: plots.neurons(k=min(16, model.d_mlp))  # noqa: E731
        elif view in ("logit_lens", "lens_kl"):  # through the tuned lens probe ships for these weights, if any
            from probe.analysis.tuned_lens import shipped_lens

            if view == "logit_lens":
                make = lambda: plots.logit_lens(lens=shipped_lens(model))  # noqa: E731
            else:
                make = lambda: plots.lens_kl(lens=shipped_lens(model), position=pos)  # noqa: E731
        else:
            make = getattr(plots, view)
        key = ("view", name, text, view) + ((pos,) if view in FOCUSED_VIEWS else ())
        fig = self._figure(key, [name], make)
        if view in ("logit_lens", "residual_norms") and pos is not None:
            fig = highlight_column(fig, pos)
        return fig

    def attention(self, name: str, text: str, layer: int, head: int, focus: int | None = None) -> go.Figure:
        """One head's pattern (``run.plot.attention``), the focused query row outlined."""
        run = self.run(name, text)
        layer, head = self.clamp_head(run.model, layer, head)
        fig = self._figure(("attention", name, text, layer, head), [name], lambda: run.plot.attention(layer, head))
        pos = self.focus(run, focus)
        return highlight_row(fig, pos) if pos is not None else fig

    def attention_neurons(self, name: str, text: str, layer: int, head: int, focus: int | None = None) -> go.Figure:
        """How one head computes the focused query's pattern (``run.plot.attention_neurons``; default the slot)."""
        run = self.run(name, text)
        layer, head = self.clamp_head(run.model, layer, head)
        pos = self.focus(run, focus)
        key = ("neurons", name, text, layer, head, pos)
        return self._figure(key, [name], lambda: run.plot.attention_neurons(layer, head, query=pos))

    def compare_views(self, names: Sequence[str], text: str, rescore: bool = False) -> dict[str, go.Figure]:
        """The GPT-vs-BERT comparison of the report (``probe.compare``): two figures.

        ``rescore`` adds the report's third kind of panel (each causal model scores every candidate filled
        into the whole sentence); it costs a forward pass per candidate word, so the page asks for it."""
        from probe.analysis.compare import compare_readings

        text = self.check_text(text)
        names = list(dict.fromkeys(self.check_name(n) for n in names))
        # keys are the names offered (a path stays a path); the figures name models as they call themselves
        usable = {n: m for n, m in ((n, self.model(n)) for n in names) if m.kind != "encoder"}
        if not usable:
            raise InputError("pick at least one model with a language-model head to compare")
        readings = [self.reading(n, text) for n in usable]  # the length cap and [MASK] rules, in the page's words
        key = ("compare", tuple(usable), text, bool(rescore))
        with self._holding(usable):

            def make():  # the model views' runs (cached) hold what the comparison reads: no second forward
                runs = [self.run(n, text) for n in usable]
                return compare_readings(readings, k=TOP_K, rescore=bool(rescore), runs=runs)

            frame = self._figures.get_or_make(key, make)
            return {
                "comparison": self._figures.get_or_make(key + ("plot",), frame.plot),
                "compare_layers": self._figures.get_or_make(key + ("layers",), frame.plot_layers),
            }

    def update(
        self,
        names: Sequence[str],
        text: str,
        layer: int = 0,
        head: int = 0,
        focus: int | None = None,
        *,
        detail: str | None = None,
        rescore: bool = False,
    ) -> dict[str, go.Figure]:
        """Every figure the page shows for this state: the comparison (2+ models) and one model's views.

        This is what one full page update costs; the page itself asks for these in separate requests
        (comparison, model views, attention) so a head change redraws one figure only.

        Args:
            names: the models picked; ``detail`` (default the first) is the one shown view by view.
            layer, head: the attention head shown; focus: a clicked token position (None: the slot).
            rescore: add the whole-sentence rescoring to the comparison (slower).

        Returns:
            {view name: Figure}: "comparison", "compare_layers" (two or more models), the MODEL_VIEWS of
            ``detail``, "attention" and "attention_neurons" (``layer``, ``head``).
        """
        names = [self.check_name(n) for n in names]
        if not names:
            raise InputError("pick at least one model")
        out: dict[str, go.Figure] = {}
        if len(names) > 1:
            out.update(self.compare_views(names, text, rescore=rescore))
        detail = self.check_name(detail) if detail is not None else names[0]
        kind = self.model(detail).kind
        for view in MODEL_VIEWS:
            if kind == "encoder" and view in HEAD_VIEWS:
                continue
            out[view] = self.model_view(detail, text, view, focus)
        out["attention"] = self.attention(detail, text, layer, head, focus)
        out["attention_neurons"] = self.attention_neurons(detail, text, layer, head, focus)
        return out

    # -- why: attribution and activation patching (when this install has them) ---------------------
    def attribution(self, name: str, text: str) -> go.Figure:
        """``probe.viz.attribution(probe.attribute(model, text))``: how much each token raised the model's
        top prediction at the slot (the analysis's defaults)."""
        attribute, draw = self._why("attribution")
        reading = self._read_or_fail(name, text)
        make = lambda: draw(attribute(reading.model, reading))  # noqa: E731
        return self._figure(("attribution", name, text), [name], make)

    def generation(self, name: str, text: str) -> go.Figure:
        """``probe.viz.attribution_generation(probe.attribute_generation(model, text, GENERATE))``: the model
        continues the words it reads and every token it writes is attributed to the ones before (causal)."""
        attribute_generation, draw = self._why("generation")
        reading = self._read_or_fail(name, text)
        if reading.model.kind != "causal":
            raise InputError(f"{name} is a masked model: it fills the [MASK] slot and generates nothing")
        make = lambda: draw(attribute_generation(reading.model, reading.read, max_new_tokens=GENERATE))  # noqa: E731
        return self._figure(("generation", name, text), [name], make)

    def patching(self, name: str, clean: str, corrupted: Any) -> go.Figure:
        """``probe.viz.patching(probe.patching(model, clean, corrupted, metric))`` over the residual stream.

        The metric is the logit difference between the clean and the corrupted text's top predictions
        (the log-probability of the clean one when both agree), so any pair of sentences works.
        """
        patching, draw = self._why("patching")
        model, read_clean, read_corrupted, metric = self._pair(name, clean, corrupted)
        make = lambda: draw(patching(model, read_clean, read_corrupted, metric=metric, over="resid_pre"))  # noqa: E731
        return self._figure(("patching", name, clean, corrupted), [name], make)

    def _pair(self, name: str, clean: str, corrupted: Any) -> tuple[Model, str, str, tuple]:
        """(model, clean text read, corrupted text read, metric) of a clean/corrupted view, checked."""
        clean = self.check_text(clean)
        if not isinstance(corrupted, str) or not corrupted.strip():
            raise InputError("type a corrupted sentence to patch from: the same sentence with a word changed")
        model = self.model(name)
        clean_reading, bad_reading = self._read_or_fail(name, clean), self._read_or_fail(name, corrupted)
        read_clean, read_corrupted = clean_reading.read, bad_reading.read
        if read_clean == read_corrupted:
            raise InputError(
                f"{model.name} reads the same text from both sentences ({read_clean!r}); change a word it reads"
                + (f" (a {model.kind} model reads only the words before {MASK})" if model.kind == "causal" else "")
            )
        answer = int(self.run(name, clean).logits_at(clean_reading.position).argmax())
        rival = int(self.run(name, corrupted).logits_at(bad_reading.position).argmax())
        return (
            model,
            read_clean,
            read_corrupted,
            ("logit_diff", answer, rival) if rival != answer else ("logprob", answer),
        )

    def dla(self, name: str, text: str) -> go.Figure:
        """``probe.viz.dla(probe.dla(model, text, top, contrast=runner_up, unit="head"))``: which heads and MLPs
        write the model's top answer at the slot over its runner-up, directly into the output."""
        dla, draw = self._why("dla")
        reading = self._read_or_fail(name, text)

        def make():
            target, contrast = (int(i) for i in self.run(name, text).logits_at(reading.position).topk(2).indices)
            return draw(dla(reading.model, reading, target, contrast=contrast, unit="head"))

        return self._figure(("dla", name, text), [name], make)

    def circuit(self, name: str, clean: str, corrupted: Any) -> go.Figure:
        """``probe.circuit(model, clean, corrupted, metric, edges=20).plot()``, the metric as ``patching``'s."""
        circuit, _ = self._why("circuit")
        model, read_clean, read_corrupted, metric = self._pair(name, clean, corrupted)
        from probe.analysis.edges import check_edges

        check_edges(model)  # a family whose norms are not hooked (post-LN OPT): said before any work
        make = lambda: circuit(model, read_clean, read_corrupted, metric, edges=20).plot()  # noqa: E731
        return self._figure(("circuit", name, clean, corrupted), [name], make)

    def _why(self, view: str) -> tuple[Callable, Callable]:
        found = why_functions().get(view)
        if found is None:
            raise InputError(f"this install has no {view} (it comes with probe's interventions)")
        return found

    def _read_or_fail(self, name: str, text: str) -> Reading:
        model = self.model(name)
        if model.kind == "encoder":
            raise InputError(f"{model.name} is an encoder without a language-model head: nothing to explain")
        reading = self.reading(name, text)
        if reading.read is None:
            raise InputError(f"{MASK} opens the text, so {model.name} has no words before it to explain")
        return reading

    # -- small helpers -------------------------------------------------------------------------
    @staticmethod
    def clamp_head(model: Model, layer: Any, head: Any) -> tuple[int, int]:
        """Layer and head as ints inside the model (a picker may still hold another model's values)."""
        try:
            layer, head = int(layer or 0), int(head or 0)
        except (TypeError, ValueError):
            raise InputError(f"layer and head must be whole numbers, got {layer!r} and {head!r}") from None
        return min(max(layer, 0), model.n_layers - 1), min(max(head, 0), model.n_heads - 1)

    @staticmethod
    def focus(run: Run, focus: Any) -> int | None:
        """A clicked position if it lies inside this run's tokens, else None (the model's default slot)."""
        if focus is None or isinstance(focus, bool):
            return None
        try:
            pos = int(focus)
        except (TypeError, ValueError):
            return None
        return pos if 0 <= pos < run.lengths[0] else None

    def stats(self) -> dict[str, int]:
        """Cache counters (for the benchmark): runs and figures made and reused."""
        return {
            "runs_made": self._runs.misses,
            "runs_reused": self._runs.hits,
            "figures_made": self._figures.misses,
            "figures_reused": self._figures.hits,
        }

    def report(self, names: Sequence[str], text: str, path) -> Any:
        """Write the current state as the same self-contained HTML report ``probe.report`` writes."""
        from probe.pages import report

        text = self.check_text(text)
        names = list(dict.fromkeys(self.check_name(n) for n in names))
        if not names:
            raise InputError("pick at least one model")
        models = [self.model(n) for n in names]
        for n in names:
            self.reading(n, text)
        with self._holding(names):
            return report(text, models, path, k=TOP_K)


def why_functions() -> dict[str, tuple[Callable, Callable]]:
    """The "why" views this install has: {"attribution": (probe.attribute, probe.viz.attribution),
    "patching": (probe.patching, probe.viz.patching)}, each only when both halves exist (they come with
    the interventions issue)."""
    import importlib

    import probe

    found = {}
    views = [("attribution", "attribute", "attribution"), ("patching", "patching", "patching"), ("dla", "dla", "dla")]
    views += [("circuit", "circuit", "circuit"), ("generation", "attribute_generation", "attribution_generation")]
    for view, name, drawn in views:
        try:
            analysis = getattr(probe, name)
            draw = getattr(importlib.import_module("probe.viz"), drawn)
        except (ImportError, AttributeError):
            continue
        if callable(analysis) and callable(draw):
            found[view] = (analysis, draw)
    return found


def highlight_column(fig: go.Figure, pos: int) -> go.Figure:
    """A copy of a (layers x positions) heatmap with column ``pos`` outlined (the focused token)."""
    import plotly.graph_objects as go

    out = go.Figure(fig)
    out.add_vrect(x0=pos - 0.5, x1=pos + 0.5, line={"color": "#d62728", "width": 2}, fillcolor="rgba(0,0,0,0)")
    return out


def highlight_row(fig: go.Figure, pos: int) -> go.Figure:
    """A copy of an attention pattern with query row ``pos`` outlined (the focused token)."""
    import plotly.graph_objects as go

    out = go.Figure(fig)
    out.add_shape(
        type="rect",
        xref="x domain",
        yref="y",
        x0=0,
        x1=1,
        y0=pos - 0.5,
        y1=pos + 0.5,
        line={"color": "#d62728", "width": 2},
    )
    return out
