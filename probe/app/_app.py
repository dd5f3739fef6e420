"""The Dash app: a text box, model pickers and the report's figures, redrawn live.

The page asks for its figures in a few independent requests, so a change redraws only what depends on
it: the comparison (text, models), the model views (text, model in detail, focused token), attention
(those, plus layer and head), and the logit lens, the slow one, asked for once the quick views are back so
they never wait for it. Each figure dims under its own spinner while it is redrawn. Every callback is a pure function of its inputs and a Workbench (cached,
locked): nothing about one user's request is kept where another's could read it. Bad input becomes a
message in the page; the server keeps serving.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probe.app._core import COMPARE_VIEWS, EXAMPLES, HEAD_VIEWS, MAX_CHARS, MODEL_VIEWS, Workbench, why_functions
from probe.defaults import MASK
from probe.errors import ProbeError

if TYPE_CHECKING:
    import dash

log = logging.getLogger("probe.app")

# Section -> (title, caption) of the report (probe.report.build.CAPTIONS), so both read the same.
TITLES = {
    "comparison": "Candidate words",
    "compare_layers": "Layer by layer",
    "tokens": "Tokens",
    "predictions": "Predictions",
    "logit_lens": "Logit lens",
    "lens_target": "The top answer, layer by layer",
    "lens_kl": "How far each layer is from the output",
    "attention": "Attention: one head",
    "attention_neurons": "Inside the head: query, keys, their product",
    "attention_entropy": "Attention entropy (click a cell to pick that head)",
    "residual_norms": "Residual-stream norm",
    "neurons": "Top MLP neurons",
    "attribution": "Attribution: which tokens raised the top prediction",
    "generation": "Attribution over generation: what each written token read",
    "patching": "Activation patching: where the difference lives",
    "dla": "Direct logit attribution: which heads write the answer",
    "circuit": "Circuit: the edges that carry the difference",
}
# Captions of the "why" views (the report's own when it has them).
WHY_CAPTIONS = {
    "lens_kl": "At the focused token (default the slot): the KL divergence from the model's own output distribution "
    "to what each layer's residual stream reads as, through the unembedding alone (logit lens) and, where probe "
    "ships a tuned lens for these weights, through its translators. Lower is closer; log scale.",
    "attention_neurons": "The head picked above, at the focused token (default the slot): its query vector over "
    "every key vector (one column per dimension), their elementwise product, whose row sums are the scores, and "
    "the softmax of the scaled scores, which is that head's pattern row.",
    "attribution": "Each token of the text the model read, coloured by how much it raised (red) or lowered "
    "(blue) the model's top prediction at the slot (probe.attribute's default method).",
    "generation": "The model continues the words it reads for a few tokens (greedy); each row is one token it wrote, "
    "each column a token it read, coloured by how much that token raised the written one's log-probability "
    "(integrated gradients; every row adds up to its own gain). Cells right of the diagonal were not written yet.",
    "dla": "What each attention head (columns), its layer's attention bias and MLP write along the direction that "
    "separates the model's top answer from its runner-up, read through the output's frozen norm. Red favours the "
    "top answer. The writes and a constant add up to the model's own logit difference.",
    "circuit": "Edge attribution patching scores every edge from the embeddings, a head or an MLP to a later head's "
    "q/k/v, an MLP or the output; the 20 strongest are drawn (red: towards the clean answer). The title gives how "
    "much of the difference they carry alone when every other edge reads the corrupted sentence.",
    "patching": "Run the corrupted sentence, put back one activation of the clean sentence (the residual stream "
    "entering each layer at each position) and measure how much of the clean prediction returns: 1 = all of it. "
    "The metric is the logit difference between the two sentences' top predictions.",
}
CAPTION_KEYS = {
    "comparison": "compare",
    "lens_target": None,
    "attention": "attention_heads",
    "attention_neurons": "neuron_view",  # the dashboard's own caption (WHY_CAPTIONS): the report's names its head
}
DETAIL_ORDER = (
    "predictions",
    "tokens",
    "lens_target",
    "logit_lens",
    "lens_kl",
    "attention",
    "attention_neurons",
    "attention_entropy",
    "residual_norms",
    "neurons",
)
# Figures a click on a token can come from: clicked point -> token position.
CLICKABLE = ("tokens", "logit_lens", "attention", "residual_norms")
MASK_HELP = (
    f"Put {MASK} where a word is missing. A masked (BERT-style) model fills it from both sides; a causal "
    f"(GPT-style) model reads only the words before it (without {MASK} it predicts the next word). "
    "Press Enter or Run. Click a token in a figure to focus it."
)
CSS = """
:root { --ink:#1f2328; --muted:#57606a; --line:#d0d7de; --soft:#f6f8fa; --accent:#1f77b4; }
* { box-sizing: border-box; }
body { margin:0; font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif;
       color: var(--ink); line-height: 1.45; }
header.top { background: var(--soft); border-bottom: 1px solid var(--line); padding: 14px 24px 10px; }
header.top h1 { margin: 0; font-size: 22px; }
.muted { color: var(--muted); font-size: 14px; margin: 4px 0; }
.controls { padding: 10px 24px; border-bottom: 1px solid var(--line); }
.controls .muted { max-width: 110ch; }
.text-row { display: flex; gap: 8px; max-width: 900px; }
#text { flex: 1; font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 15px;
        padding: 6px 8px; border: 1px solid var(--line); border-radius: 6px; min-width: 0; }
button { font: inherit; padding: 5px 12px; border: 1px solid var(--line); border-radius: 6px; background: #fff;
         cursor: pointer; }
button.primary { background: var(--accent); color: #fff; border-color: var(--accent); }
.examples button { font-size: 13px; padding: 2px 8px; margin: 4px 6px 0 0; }
.pickers { display: flex; flex-wrap: wrap; gap: 8px 18px; align-items: end; margin-top: 8px; }
.picker { min-width: 120px; font-size: 14px; }
.picker label, .picker .label { display: block; font-size: 12px; color: var(--muted); }
.message { margin: 8px 24px 0; white-space: pre-wrap; }
.message:not(:empty) { color: #a40e26; background: #ffebe9; border: 1px solid #ff8182; border-radius: 6px;
                       padding: 6px 10px; }
main { padding: 0 24px 32px; }
section.part { border-bottom: 1px solid var(--line); padding: 6px 0 14px; }
section.part > h2 { font-size: 19px; margin: 14px 0 2px; }
.grid { display: flex; flex-wrap: wrap; gap: 10px 18px; }
.block h3 { font-size: 15px; margin: 8px 0 2px; }
.figure-scroll { overflow-x: auto; overflow-y: hidden; max-width: calc(100vw - 60px); border: 1px solid #eaeef2;
                 border-radius: 6px; }
"""
INDEX = (
    """<!DOCTYPE html>
<html lang="en">
<head>
{%metas%}
<title>{%title%}</title>
{%favicon%}
{%css%}
<style>"""
    + CSS
    + """</style>
</head>
<body>
{%app_entry%}
<footer>
{%config%}
{%scripts%}
{%renderer%}
</footer>
</body>
</html>"""
)


def blank(height: int = 60) -> dict:
    """An empty figure (a view that has nothing to show for this state)."""
    return {
        "data": [],
        "layout": {
            "height": height,
            "width": 320,
            "xaxis": {"visible": False},
            "yaxis": {"visible": False},
            "margin": {"l": 0, "r": 0, "t": 0, "b": 0},
            "paper_bgcolor": "white",
            "plot_bgcolor": "white",
        },
    }


def one_line(err: BaseException) -> str:
    """A message for the page: a ProbeError's own line; anything else named, its detail in the log."""
    if isinstance(err, ProbeError):
        return " ".join(str(err).split())
    log.exception("dashboard callback failed")
    return f"internal error ({type(err).__name__}); the server log has the details and the page keeps working"


def clicked_position(view: str, click: Any) -> int | None:
    """The token position a click on ``view`` points at, or None."""
    try:
        point = click["points"][0]
    except (TypeError, KeyError, IndexError):
        return None
    if view == "tokens":  # cells are laid out in rows of per_row tokens; customdata starts "position N"
        text = str(point.get("customdata", ""))
    elif view == "attention":  # category "12 ·robot": the query row
        text = str(point.get("y", ""))
    else:
        x = point.get("x")
        return int(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None
    match = re.search(r"(?:position )?(\d+)", text)
    return int(match.group(1)) if match else None


def graph(view: str) -> Any:
    from dash import dcc, html

    from probe.pages.build import CAPTIONS

    key = CAPTION_KEYS.get(view, view)
    caption = CAPTIONS.get(key, WHY_CAPTIONS.get(view, "")) if key else ""
    caption = caption.replace("{k}", "10").replace(" {answer}", "")
    return html.Div(
        className="block",
        id=f"block-{view}",
        children=[
            html.H3(TITLES[view]),
            html.Details([html.Summary("how to read it", className="muted"), html.P(caption, className="muted")])
            if caption
            else None,
            html.Div(
                className="figure-scroll",
                # while a figure is redrawn the old one stays, dimmed, under a spinner: the page never blanks
                children=dcc.Loading(
                    dcc.Graph(id=f"fig-{view}", figure=blank(), config={"displaylogo": False, "responsive": False}),
                    type="circle",
                    delay_show=200,
                    overlay_style={"visibility": "visible", "opacity": 0.45},
                ),
            ),
        ],
    )


def why_section(why: Sequence[str]) -> Any:
    """Attribution and patching of the model in detail: slower, so each has its own request and spinner."""
    from dash import dcc, html

    blocks = []
    if "attribution" in why:
        blocks += [html.Div(id="attribution-message", className="message"), graph("attribution")]
    if "generation" in why:
        blocks += [html.Div(id="generation-message", className="message"), graph("generation")]
    if "dla" in why:
        blocks += [html.Div(id="dla-message", className="message"), graph("dla")]
    if "patching" in why:
        blocks += [
            html.Div(
                className="text-row",
                style={"marginTop": "14px", "alignItems": "center"},
                children=[
                    html.Label("patch from:", htmlFor="corrupted", className="muted", style={"whiteSpace": "nowrap"}),
                    dcc.Input(
                        id="corrupted",
                        type="text",
                        debounce=True,
                        maxLength=MAX_CHARS,
                        spellCheck=False,
                        autoComplete="off",
                        placeholder="a corrupted sentence: the same one with a word changed, then Enter",
                    ),
                ],
            ),
            html.Div(id="patching-message", className="message"),
            graph("patching"),
        ]
        if "circuit" in why:
            blocks += [html.Div(id="circuit-message", className="message"), graph("circuit")]
    return html.Section(
        className="part",
        id="why",
        children=[
            html.H2("Why"),
            html.P("For the model in detail; these take longer than the views above.", className="muted"),
            html.Div(blocks),
        ],
    )


def _text_view(app: dash.Dash, bench: Workbench, view: str) -> None:
    """The callback of a why view drawn from the text and the model in detail (``bench.<view>(name, text)``),
    its problems in the message above it."""
    from dash import Input, Output

    @app.callback(
        Output(f"fig-{view}", "figure"),
        Output(f"{view}-message", "children"),
        Input("text", "value"),
        Input("detail", "value"),
    )
    def draw(text, name):
        try:
            return getattr(bench, view)(name, text), ""
        except Exception as err:
            return blank(), one_line(err)


def layout(bench: Workbench, notice: str | None, why: Sequence[str] = ()) -> Any:
    from dash import dcc, html

    first = bench.selected[0]
    return html.Div(
        [
            html.Header(
                className="top",
                children=[
                    html.H1("probe dashboard"),
                    html.P(
                        "Type a sentence and watch the models read it: what they predict, where they look, "
                        "and when they decide. The figures are the ones probe's HTML reports show.",
                        className="muted",
                    ),
                    html.P(notice, className="muted", id="notice") if notice else None,
                ],
            ),
            html.Div(
                className="controls",
                children=[
                    html.Div(
                        [
                            html.Div(
                                className="text-row",
                                children=[
                                    dcc.Input(
                                        id="text",
                                        type="text",
                                        value=EXAMPLES[0],
                                        debounce=True,
                                        maxLength=MAX_CHARS,
                                        spellCheck=False,
                                        autoComplete="off",
                                        placeholder="a sentence, e.g. The cat sat on the [MASK].",
                                    ),
                                    html.Button("Run", id="run", className="primary"),
                                ],
                            ),
                            html.P(MASK_HELP, className="muted"),
                            html.Div(
                                className="examples",
                                children=[html.Span("Examples: ", className="muted")]
                                + [
                                    html.Button(t, id={"type": "example", "index": i}, title="use this sentence")
                                    for i, t in enumerate(EXAMPLES)
                                ],
                            ),
                        ]
                    ),
                    html.Div(
                        className="pickers",
                        children=[
                            html.Div(
                                className="picker",
                                style={"minWidth": "260px"},
                                children=[
                                    html.Label("models", htmlFor="models"),
                                    dcc.Dropdown(
                                        id="models",
                                        options=[{"label": n, "value": n} for n in bench.offered],
                                        value=list(bench.selected),
                                        multi=True,
                                        clearable=False,
                                    ),
                                ],
                            ),
                            html.Div(
                                className="picker",
                                children=[
                                    html.Span("model in detail", className="label"),
                                    dcc.RadioItems(
                                        id="detail",
                                        options=[{"label": n, "value": n} for n in bench.selected],
                                        value=first,
                                        inline=True,
                                    ),
                                ],
                            ),
                            html.Div(
                                className="picker",
                                children=[
                                    html.Label("layer", htmlFor="layer"),
                                    dcc.Dropdown(id="layer", options=[], value=0, clearable=False),
                                ],
                            ),
                            html.Div(
                                className="picker",
                                children=[
                                    html.Label("head", htmlFor="head"),
                                    dcc.Dropdown(id="head", options=[], value=0, clearable=False),
                                ],
                            ),
                            html.Div(
                                className="picker",
                                children=[
                                    html.Span("focus", className="label"),
                                    html.Span("the model's slot", id="focus-label"),
                                    html.Button("clear", id="clear-focus", style={"marginLeft": "6px"}),
                                ],
                            ),
                            html.Div(
                                className="picker",
                                children=[
                                    html.Button("Save as report", id="save"),
                                    dcc.Download(id="download"),
                                ],
                            ),
                        ],
                    ),
                ],
            ),
            html.Div(id="message", className="message", role="alert"),
            dcc.Store(id="focus", data=None),
            html.Main(
                [
                    html.Section(
                        className="part",
                        id="comparison",
                        children=[
                            html.H2("Comparison"),
                            dcc.Checklist(
                                id="rescore",
                                options=[
                                    {
                                        "label": " also rescore whole sentences (a GPT then sees the words after "
                                        "the slot too; one forward pass per candidate word, slower)",
                                        "value": "rescore",
                                    }
                                ],
                                value=[],
                                className="muted",
                            ),
                            html.Div(id="compare-message", className="message"),
                            html.Div(className="grid", children=[graph(v) for v in COMPARE_VIEWS]),
                        ],
                    ),
                    html.Section(
                        className="part",
                        id="detail-section",
                        children=[
                            html.H2(first, id="detail-title"),
                            html.Div(id="model-message", className="message"),
                            # one grid, so the browser packs the figures side by side
                            html.Div(className="grid", children=[graph(v) for v in DETAIL_ORDER]),
                        ],
                    ),
                    why_section(why) if why else None,
                ]
            ),
        ]
    )


def make_app(bench: Workbench, notice: str | None = None) -> dash.Dash:
    """The Dash app over ``bench``: layout and callbacks; serve it with ``start`` (``from probe.dashboard import start``).

    Everything is served from the installed packages (``serve_locally``): no CDN, no external font.
    """
    import dash
    from dash import ALL, Input, Output, State, ctx, dcc, no_update

    app = dash.Dash(
        __name__,
        title="probe dashboard",
        update_title="probe dashboard: updating…",
        serve_locally=True,
        include_assets_files=False,  # never pick up an ./assets folder from wherever it is started
        index_string=INDEX,
        suppress_callback_exceptions=False,
    )
    why = why_functions()
    app.layout = layout(bench, notice, tuple(why))

    @app.callback(
        Output("text", "value"),
        Input({"type": "example", "index": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def use_example(clicks):
        trig = ctx.triggered_id
        if not isinstance(trig, dict) or not any(clicks or []):
            return no_update
        index = trig.get("index")
        return EXAMPLES[index] if isinstance(index, int) and 0 <= index < len(EXAMPLES) else no_update

    @app.callback(
        Output("detail", "options"),
        Output("detail", "value"),
        Input("models", "value"),
        State("detail", "value"),
    )
    def detail_options(names, current):
        names = [n for n in (names or []) if n in bench.offered]
        options = [{"label": n, "value": n} for n in names]
        return options, current if current in names else (names[0] if names else None)

    @app.callback(
        Output("layer", "options"),
        Output("head", "options"),
        Output("layer", "value"),
        Output("head", "value"),
        Output("detail-title", "children"),
        Input("detail", "value"),
        Input("fig-attention_entropy", "clickData"),
        State("layer", "value"),
        State("head", "value"),
    )
    def layer_head(name, click, layer, head):
        try:
            model = bench.model(name)
        except Exception as err:  # shown by the model views' own message
            one_line(err)
            return [], [], 0, 0, str(name or "")
        if ctx.triggered_id == "fig-attention_entropy":
            try:
                point = click["points"][0]
                layer, head = int(point["y"]), int(point["x"])
            except (TypeError, KeyError, IndexError, ValueError):
                pass
        layer, head = bench.clamp_head(model, layer, head)
        layers = [{"label": str(i), "value": i} for i in range(model.n_layers)]
        heads = [{"label": str(i), "value": i} for i in range(model.n_heads)]
        title = f"{model.name} ({model.kind}, {model.n_layers} layers x {model.n_heads} heads)"
        return layers, heads, layer, head, title

    clicks = [Input(f"fig-{v}", "clickData") for v in CLICKABLE]

    @app.callback(
        Output("focus", "data"),
        Output("focus-label", "children"),
        *clicks,
        Input("clear-focus", "n_clicks"),
        Input("text", "value"),
        Input("detail", "value"),
    )
    def focus(*args):
        trig = ctx.triggered_id
        if isinstance(trig, str) and trig.startswith("fig-"):
            view = trig[len("fig-") :]
            pos = clicked_position(view, args[CLICKABLE.index(view)])
            if pos is not None:
                return pos, f"token {pos}"
        return None, "the model's slot"

    @app.callback(
        *[Output(f"fig-{v}", "figure") for v in COMPARE_VIEWS],
        Output("compare-message", "children"),
        Input("text", "value"),
        Input("models", "value"),
        Input("rescore", "value"),
    )
    def comparison(text, names, rescore):
        names = list(names or [])
        if len(names) < 2:
            return blank(), blank(), "pick two or more models to compare them"
        try:
            figs = bench.compare_views(names, text, rescore=bool(rescore))
            return figs["comparison"], figs["compare_layers"], ""
        except Exception as err:
            return blank(), blank(), one_line(err)

    # the logit lens (the head over every layer and position) is the slow one: it is drawn in a request of
    # its own, sent once the quick views have arrived, so they never wait for it
    views = [v for v in MODEL_VIEWS if v != "logit_lens"]

    @app.callback(
        *[Output(f"fig-{v}", "figure") for v in views],
        *[Output(f"block-{v}", "style") for v in views],
        Output("model-message", "children"),
        Input("text", "value"),
        Input("detail", "value"),
        Input("focus", "data"),
    )
    def model_views(text, name, pos):
        figs, styles, problems = [], [], []
        try:
            kind = bench.model(name).kind
            bench.run(name, text)  # one message for what every view would say (too long, no [MASK], ...)
        except Exception as err:
            return (*[blank()] * len(views), *[None] * len(views), one_line(err))
        for view in views:
            if kind == "encoder" and view in HEAD_VIEWS:
                figs.append(blank())
                styles.append({"display": "none"})
                continue
            try:
                figs.append(bench.model_view(name, text, view, pos))
                styles.append(None)
            except Exception as err:
                figs.append(blank())
                styles.append(None)
                problems.append(f"{TITLES[view]}: {one_line(err)}")
        note = f"{name} is an encoder without a language-model head: no predictions or logit lens." * (
            kind == "encoder"
        )
        return (*figs, *styles, "\n".join(problems) or note)

    @app.callback(
        Output("fig-logit_lens", "figure"),
        Output("block-logit_lens", "style"),
        Input("model-message", "children"),
        State("text", "value"),
        State("detail", "value"),
        State("focus", "data"),
    )
    def logit_lens(_message, text, name, pos):
        try:
            if bench.model(name).kind == "encoder":
                return blank(), {"display": "none"}
            return bench.model_view(name, text, "logit_lens", pos), None
        except Exception as err:
            one_line(err)  # the model views' message already says why
            return blank(), None

    @app.callback(
        Output("fig-attention", "figure"),
        Input("text", "value"),
        Input("detail", "value"),
        Input("layer", "value"),
        Input("head", "value"),
        Input("focus", "data"),
    )
    def attention(text, name, layer, head, pos):
        try:
            return bench.attention(name, text, layer, head, pos)
        except Exception as err:
            one_line(err)  # the model views' message already says why
            return blank()

    @app.callback(
        Output("fig-attention_neurons", "figure"),
        Input("text", "value"),
        Input("detail", "value"),
        Input("layer", "value"),
        Input("head", "value"),
        Input("focus", "data"),
    )
    def attention_neurons(text, name, layer, head, pos):
        try:
            return bench.attention_neurons(name, text, layer, head, pos)
        except Exception as err:
            one_line(err)  # the model views' message already says why
            return blank()

    for view in ("attribution", "generation", "dla"):  # the why views that read the text alone
        if view in why:
            _text_view(app, bench, view)

    if "patching" in why and "circuit" in why:

        @app.callback(
            Output("fig-circuit", "figure"),
            Output("circuit-message", "children"),
            Input("text", "value"),
            Input("corrupted", "value"),
            Input("detail", "value"),
        )
        def circuit(text, corrupted, name):
            if not (corrupted or "").strip():
                return blank(), ""
            try:
                return bench.circuit(name, text, corrupted), ""
            except Exception as err:
                return blank(), one_line(err)

    if "patching" in why:

        @app.callback(
            Output("fig-patching", "figure"),
            Output("patching-message", "children"),
            Input("text", "value"),
            Input("corrupted", "value"),
            Input("detail", "value"),
        )
        def patching(text, corrupted, name):
            if not (corrupted or "").strip():  # nothing typed yet: the box's placeholder says what to do
                return blank(), ""
            try:
                return bench.patching(name, text, corrupted), ""
            except Exception as err:
                return blank(), one_line(err)

    @app.callback(
        Output("download", "data"),
        Output("message", "children"),
        Input("save", "n_clicks"),
        State("text", "value"),
        State("models", "value"),
        prevent_initial_call=True,
        running=[(Output("save", "disabled"), True, False)],
    )
    def save(n_clicks, text, names):
        try:
            with tempfile.TemporaryDirectory(prefix="probe-dashboard-") as folder:
                path = bench.report(list(names or []), text, Path(folder) / "report.html")
                doc = path.read_text(encoding="utf-8")
        except Exception as err:
            return no_update, one_line(err)
        slug = re.sub(r"[^a-z0-9]+", "-", (text or "").lower().replace(MASK.lower(), "mask")).strip("-")[:40]
        return dcc.send_string(doc, f"probe-report-{slug or 'text'}.html", type="text/html"), ""

    return app
