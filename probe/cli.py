"""The ``probe`` command: a thin layer over the library, one public function per command.

Bad input (an unknown model, a bad hook name, a text without [MASK] for a masked model, a missing
folder, a usage mistake) prints one line, ``error: ...``, on stderr and exits with code 2; no traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

try:  # typer >= 0.20 vendors click; older versions use click itself
    from typer._click import exceptions as _click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as _click_exceptions

from probe.defaults import DEFAULT_TEXT
from probe.errors import ProbeError

EXIT_BAD_INPUT = 2


class _OneLineErrors(TyperGroup):
    """Usage errors as one line on stderr (typer would print the usage and a boxed message)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:  # a caller that handles the exceptions itself
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _click_exceptions.UsageError as err:
            if not err.format_message():  # `probe` alone: the help was printed, nothing went wrong
                sys.exit(0)
            if isinstance(err, getattr(_click_exceptions, "NoArgsIsHelpError", ())):  # click >= 8.2: the help
                typer.echo(err.format_message())
                sys.exit(0)
            where = f" (see '{err.ctx.command_path} --help')" if err.ctx is not None else ""
            typer.echo(f"error: {err.format_message()}{where}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except _click_exceptions.ClickException as err:
            typer.echo(f"error: {err.format_message()}", err=True)
            sys.exit(err.exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)  # non-standalone mode returns Exit codes


app = typer.Typer(
    name="probe",
    cls=_OneLineErrors,
    help="Look inside transformer language models: predictions, logit lens, attention, reports.",
    epilog=(
        "Examples:  probe report -o report.html  |  probe compare 'The robot must [MASK] hurt the human.' "
        "-m tiny-gpt -m tiny-bert  |  probe run 'Hello world' -m tiny-gpt --hooks 'blocks.*.hook_resid_post' "
        "--out acts.parquet  |  probe hooks tiny-gpt  |  probe models"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # help texts are plain: "probe[ray]" and "[batch, pos]" keep their brackets
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from probe import __version__

        typer.echo(f"probe {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print probe's version and exit.")
    ] = False,
) -> None:
    """Look inside transformer language models: predictions, logit lens, attention, reports."""


def _quiet() -> None:
    """No progress bars or library warnings around the one line a command prints."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    # transformers reads the variables above when it is imported; import it here only if something
    # already did (importing it costs a second, and `probe models` / `--help` never need it)
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


def _fail(message: str) -> None:
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def _errors_as_one_line(command):
    """ProbeError and file errors -> one line on stderr, exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        _quiet()
        try:
            return command(*args, **kwargs)
        except ProbeError as err:
            _fail(str(err))
        except OSError as err:
            _fail(f"{err.strerror or err}: {err.filename}" if getattr(err, "filename", None) else str(err))

    return wrapper


def _models(given: list[str] | None) -> list[str]:
    """The models a command was given, else the best installed pair (with a one-line notice on fallback)."""
    if given:
        return list(given)
    from probe.defaults import default_models

    names, notice = default_models()
    if notice:
        typer.echo(f"note: {notice}", err=True)
    return names


def _one_model(given: str | None, text: str) -> str:
    """The model a one-model command was given, else the best installed one for the text: the masked
    model when the text has [MASK], the causal one otherwise."""
    if given:
        return given
    from probe.defaults import MASK

    causal, masked = _models(None)
    return masked if MASK in text else causal


ModelOpt = Annotated[
    list[str] | None,
    typer.Option("--model", "-m", help="Model name, local checkpoint folder or hub id; repeat for several."),
]
# the one reading of a text, as in the API (Model.prepend_bos)
CleanArg = Annotated[str, typer.Argument(help="The clean text.")]
CorruptedArg = Annotated[str, typer.Argument(help="The same text with a word changed (same number of tokens).")]
AnswerOpt = Annotated[str | None, typer.Option("--answer", help="The clean answer; default the clean run's top token.")]
WrongOpt = Annotated[
    str | None, typer.Option("--wrong", help="The corrupted answer; default the corrupted run's top token.")
]
BosOpt = Annotated[
    bool,
    typer.Option(
        "--prepend-bos/--no-prepend-bos",
        help="Causal models read the text from their start token (default, as the API) or as its bare tokens.",
    ),
]


@app.command()
@_errors_as_one_line
def report(
    text: Annotated[str, typer.Argument(help="Sentence; put [MASK] where a word is missing.")] = DEFAULT_TEXT,
    model: ModelOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="The .html file to write.")] = Path("report.html"),
    k: Annotated[int, typer.Option("--k", "-k", help="Candidates per prediction list.")] = 10,
    truncate: Annotated[
        bool, typer.Option("--truncate", help="Cut a text longer than a model's context to a window around the slot.")
    ] = False,
    section: Annotated[
        list[str] | None,
        typer.Option(
            "--section",
            "-s",
            help="Extra section: attribution, generation, dla, heads, patching, circuit, factors or cka; repeat for several.",
        ),
    ] = None,
    corrupted: Annotated[
        str | None, typer.Option("--corrupted", help="For --section patching: TEXT with one word changed.")
    ] = None,
    prepend_bos: BosOpt = True,
) -> None:
    """Write one self-contained HTML report (works offline) of how the models read TEXT.

    Examples:

      probe report

      probe report "The cat sat on the [MASK]." -m tiny-gpt -m tiny-bert -o cat.html

      probe report -s attribution -s patching --corrupted "The robot will [MASK] hurt the human."
    """
    from probe.pages import report as build

    path = build(
        text,
        _models(model),
        out,
        k=k,
        truncate=truncate,
        sections=section,
        corrupted=corrupted,
        prepend_bos=prepend_bos,
    )
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


@app.command()
@_errors_as_one_line
def compare(
    text: Annotated[str, typer.Argument(help="Sentence with one [MASK].")],
    model: ModelOpt = None,
    k: Annotated[int, typer.Option("--k", "-k", help="Words per model.")] = 10,
    rescore: Annotated[
        bool, typer.Option("--rescore/--no-rescore", help="Rank all candidates by causal models' sentence likelihood.")
    ] = True,
    csv: Annotated[bool, typer.Option("--csv", help="Print the frame as CSV instead of a table.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print candidates, agreement and layers as JSON.")] = False,
    truncate: Annotated[
        bool, typer.Option("--truncate", help="Cut a text longer than a model's context to a window around the slot.")
    ] = False,
    prepend_bos: BosOpt = True,
) -> None:
    """How do the models fill the [MASK] in TEXT? Prints a table (or CSV / JSON).

    Examples:

      probe compare "The robot must [MASK] hurt the human." -m tiny-gpt -m tiny-bert

      probe compare "Paris is the [MASK] of France." -m tiny-bert --csv > words.csv
    """
    from probe.analysis.compare import compare as run_compare

    if csv and as_json:
        _fail("choose one of --csv and --json")
    frame = run_compare(text, _models(model), k=k, rescore=rescore, truncate=truncate, prepend_bos=prepend_bos)
    if csv:
        typer.echo(frame.to_csv(index=False), nl=False)
        return
    if as_json:
        payload = {
            "text": text,
            "k": k,
            "candidates": json.loads(frame.to_json(orient="records")),
            "agreement": json.loads(frame.agreement.to_json(orient="records")),
            "layers": json.loads(frame.layers.to_json(orient="records")),
            "read": frame.attrs["read"],
        }
        typer.echo(json.dumps(payload, indent=1, ensure_ascii=False))
        return
    _print_compare(frame, k)


def _print_compare(frame, k: int) -> None:
    from rich.table import Table

    console = _console()
    lists = list(dict.fromkeys(zip(frame["model"], frame["method"])))
    table = Table(
        title=f"How each model fills the slot: {_escape(frame.attrs.get('text', ''), markup=False)}",
        title_justify="left",
    )
    table.add_column("rank", justify="right")
    columns = []
    for name, method in lists:
        table.add_column(f"{_escape(name, markup=False)}\n{method}")
        part = frame[(frame["model"] == name) & (frame["method"] == method)].sort_values("rank").head(k)
        columns.append([f"{w} [dim]{p:.1%}[/dim]" for w, p in zip(part["word"], part["prob"])])
    for r in range(max((len(c) for c in columns), default=0)):
        table.add_row(str(r + 1), *[_escape(c[r]) if r < len(c) else "" for c in columns])
    console.print(table)
    agree = frame.agreement
    if len(agree):
        t = Table(title="Agreement", title_justify="left")
        for col in ("a", "b", "overlap@k", "shared", "spearman", "kendall"):
            t.add_column(col, justify="left" if col in ("a", "b") else "right")
        for row in agree.itertuples(index=False):
            t.add_row(
                _escape(row.a, markup=False),
                _escape(row.b, markup=False),
                f"{row.overlap_at_k:.2f}",
                str(row.shared),
                "n/a" if row.spearman != row.spearman else f"{row.spearman:.2f}",  # NaN: too few shared words
                "n/a" if row.kendall != row.kendall else f"{row.kendall:.2f}",
            )
        console.print(t)


def _console():
    """A rich console; when piped (no terminal) wide enough that tables are not cut to 80 columns."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)


def _escape(text: str, markup: bool = True) -> str:
    """Escape rich markup in words (a word like "[b]" must print as itself); keep our own [dim] tags."""
    from rich.markup import escape

    if not markup:
        return escape(text)
    word, _, rest = text.partition(" [dim]")
    return escape(word) + (" [dim]" + rest if rest else "")


@app.command("run")
@_errors_as_one_line
def run_(
    text: Annotated[str, typer.Argument(help="Text to run through the model.")],
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="Model name, folder or hub id; repeat to run each into its own file (OUT.<name>.parquet).",
        ),
    ] = None,
    hooks: Annotated[
        list[str] | None,
        typer.Option(
            "--hooks",
            help="Hook name or glob, e.g. 'blocks.*.hook_resid_post'; repeat for several. Default: residual stream, attention, logits.",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write (one row per token).")] = Path(
        "run.parquet"
    ),
    truncate: Annotated[bool, typer.Option("--truncate", help="Cut texts longer than the context.")] = False,
    prepend_bos: BosOpt = True,
) -> None:
    """Run TEXT through a model and save the captured activations to Parquet.

    With several -m, each model is run in turn and written to its own file: --out acts.parquet becomes
    acts.tiny-gpt.parquet, acts.tiny-bert.parquet (model names must differ).

    Examples:

      probe run "The robot must not hurt the human." -m tiny-gpt --hooks 'blocks.*.hook_resid_post' --out resid.parquet

      probe run "Hello" -m tiny-bert --hooks 'blocks.0.attn.hook_pattern' --hooks logits -o hello.parquet

      probe run "Hello" -m tiny-gpt -m tiny-bert -o hello.parquet
    """
    from probe.core.model import load

    names = list(dict.fromkeys(model or _models(None)[:1]))
    outs = [out] if len(names) == 1 else [out.with_name(f"{out.stem}.{_file_part(n)}{out.suffix}") for n in names]
    if len(set(outs)) < len(outs):
        _fail(f"models {', '.join(names)} would write the same file; run them one at a time with their own --out")
    if out.suffix != ".parquet":  # say it before loading anything
        _fail(f"{out} should end in .parquet")
    for name, path in zip(names, outs):
        result = load(name).run(text, hooks=hooks, truncate=truncate, prepend_bos=prepend_bos)
        path = result.to_parquet(path)
        typer.echo(f"wrote {path}: {sum(result.lengths)} tokens x {len(result.keys())} hooks")


def _file_part(name: str) -> str:
    """A model name or folder as a safe piece of a file name: 'org/model-1.5B' -> 'model-1.5B'."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name.rstrip("/")).name or name).strip("._") or "model"


@app.command()
@_errors_as_one_line
def hooks(
    model: Annotated[str, typer.Argument(help="Model name, local checkpoint folder or hub id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON records.")] = False,
) -> None:
    """List every hook point of MODEL, in forward order, with the shape of its tensor.

    Shapes are [batch, pos, ...] with the model's sizes: d_model, head x d_head, d_mlp, vocab.
    Pass any of the names (or a glob such as 'blocks.*.hook_resid_post') to --hooks of probe run.

    Examples:

      probe hooks tiny-gpt

      probe hooks tiny-bert --json
    """
    from rich.markup import escape
    from rich.table import Table

    from probe.core.model import load

    loaded = load(model)
    frame = loaded.hook_shapes()
    if as_json:
        typer.echo(frame.to_json(orient="records", indent=1))
        return
    table = Table(title=f"Hook points of {escape(loaded.name)} ({len(frame)})", title_justify="left")
    table.add_column("hook", no_wrap=True)
    table.add_column("shape", no_wrap=True)
    for r in frame.itertuples(index=False):
        table.add_row(escape(r.hook), escape(r.shape))
    _console().print(table)


@app.command()
@_errors_as_one_line
def verify(
    model: Annotated[str, typer.Argument(help="Model name, local checkpoint folder, .gguf file or hub id.")],
    text: Annotated[
        list[str] | None, typer.Option("--text", "-t", help="Text to check on; repeat for a padded batch.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON records.")] = False,
) -> None:
    """Check every hook of MODEL against Hugging Face's own outputs; exit code 1 if any check fails.

    Compares the residual stream with hidden_states, patterns with attentions, logits with logits, and
    the block's residual identities, on a right-padded batch.

    Examples:

      probe verify tiny-gpt

      probe verify ./my-checkpoint --text "Some text of mine." --text "And a longer second text of mine."
    """
    from rich.table import Table

    from probe.analysis.verify import verify as run_verify

    table = run_verify(model, texts=list(text) if text else None)
    if as_json:
        typer.echo(table.to_json(orient="records", indent=1))
    else:
        t = Table(
            title=f"probe verify {_escape(table.attrs['model'], markup=False)} ({table.attrs['dtype']})",
            title_justify="left",
        )
        for col, justify in (("check", "left"), ("max_abs_diff", "right"), ("tolerance", "right"), ("ok", "center")):
            t.add_column(col, justify=justify)
        for row in table.itertuples(index=False):
            t.add_row(
                _escape(row.check, markup=False),
                f"{row.max_abs_diff:.2e}",
                f"{row.tolerance:.2e}",
                "[green]ok[/green]" if row.ok else "[red]FAIL[/red]",
            )
        _console().print(t)
        failed = int((~table["ok"]).sum())
        typer.echo(f"{len(table) - failed} passed, {failed} failed")
    if not table.attrs["ok"]:
        raise typer.Exit(1)


def _print_frame(frame, title: str, csv: bool, as_json: bool, attrs: dict | None = None) -> None:
    """A frame as CSV, as JSON ({attrs..., rows: [...]}) or as a rich table."""
    if csv and as_json:
        _fail("choose one of --csv and --json")
    if csv:
        typer.echo(frame.to_csv(index=False), nl=False)
        return
    if as_json:
        payload = dict(attrs or {})
        payload["rows"] = json.loads(frame.to_json(orient="records"))
        typer.echo(json.dumps(payload, indent=1, ensure_ascii=False, default=str))
        return
    from rich.table import Table

    table = Table(title=_escape(title, markup=False), title_justify="left")
    for col in frame.columns:
        table.add_column(str(col), justify="right" if frame[col].dtype.kind in "fiu" else "left")
    for row in frame.itertuples(index=False):
        table.add_row(
            *[
                f"{v:.4g}" if isinstance(v, float) else _escape(repr(v) if isinstance(v, str) else str(v), markup=False)
                for v in row
            ]
        )
    _console().print(table)


@app.command()
@_errors_as_one_line
def attribute(
    text: Annotated[str, typer.Argument(help="Text (masked models: with [MASK]).")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Model name, folder or hub id; default: the best installed (masked for [MASK])."
        ),
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", "-t", help="Word or continuation to explain; default the top prediction.")
    ] = None,
    method: Annotated[
        str, typer.Option("--method", help="integrated_gradients, gradient_x_input, saliency or occlusion.")
    ] = "integrated_gradients",
    position: Annotated[int | None, typer.Option("--position", help="Slot position (default: last / [MASK]).")] = None,
    steps: Annotated[
        int, typer.Option("--steps", help="Integration steps to start from (more are added where needed).")
    ] = 64,
    contrast: Annotated[
        str | None, typer.Option("--contrast", "-c", help="Attribute log p(target) - log p(contrast) (one token each).")
    ] = None,
    generate: Annotated[
        int | None,
        typer.Option("--generate", "-g", help="Generate N tokens and attribute each to the tokens before it."),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", help="zero, pad, mask or unk (default: mask for masked models, else zero)."),
    ] = None,
    inseq: Annotated[
        bool,
        typer.Option(
            "--inseq",
            help="inseq's conventions: baseline unk, no start token, 16 steps, no refinement (its numbers).",
        ),
    ] = False,
    csv: Annotated[bool, typer.Option("--csv", help="Print the frame as CSV.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print target, values and rows as JSON.")] = False,
    prepend_bos: BosOpt = True,
) -> None:
    """Which tokens of TEXT drove the model's prediction? One attribution per token.

    Examples:

      probe attribute "The robot must not hurt the" -m tiny-gpt --target " human"

      probe attribute "The robot must [MASK] hurt the human." -m tiny-bert --method occlusion --csv

      probe attribute "The robot must not hurt the" -m tiny-gpt --target " the" --contrast " not"

      probe attribute "The robot must" -m tiny-gpt --generate 6 [--inseq]
    """
    import math

    from probe.analysis.attribute import IG_STEPS, TOLERANCE, attribute_generation
    from probe.analysis.attribute import attribute as run_attribute
    from probe.core.model import load

    if csv and as_json:
        _fail("choose one of --csv and --json")
    tolerance = TOLERANCE
    if inseq:
        if baseline not in (None, "unk") or steps != IG_STEPS:
            _fail("--inseq sets the baseline and the steps (inseq's); leave out --baseline and --steps")
        baseline, steps, prepend_bos, tolerance = "unk", 16, False, math.inf
    if generate is not None and (target is not None or contrast is not None or position is not None):
        _fail("--generate attributes the tokens it generates; leave out --target, --contrast and --position")
    m = load(_one_model(model, text))
    how = {"method": method, "n_steps": steps, "prepend_bos": prepend_bos, "baseline": baseline, "tolerance": tolerance}
    if generate is not None:
        frame = attribute_generation(m, text, generate, **how)
        a = frame.attrs
        keys = ("model", "prompt", "generated", "generated_tokens", "method", "baseline", "completeness", "warning")
        title = f"{a['model']}: {a['prompt']!r} -> {a['generated']!r}, each token attributed ({method})"
    else:
        frame = run_attribute(m, text, target=target, position=position, contrast=contrast, **how)
        a = frame.attrs
        keys = ("model", "text", "target", "target_ids", "contrast", "contrast_ids", "method", "baseline", "n_steps")
        keys += ("target_value", "baseline_value", "prepend_bos", "tokens", "convergence_delta", "completeness")
        keys += ("warning",)
        over = f" over {a['contrast']!r}" if contrast is not None else ""
        what = "log-prob difference" if contrast is not None else "log-prob"
        title = f"{a['model']}: attribution of {a['target']!r}{over} ({method}); {what} {a['target_value']:.3f}"
    _print_frame(frame, title, csv, as_json, {k: a[k] for k in keys})
    if a["warning"]:
        typer.echo(f"warning: {a['warning']}", err=True)


@app.command("train-lens")
@_errors_as_one_line
def train_lens_(
    corpus: Annotated[Path, typer.Argument(help="Text file, one document per line (the last tenth is held out).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to save the lens in (and resume from).")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model name, folder or hub id.")] = None,
    steps: Annotated[int, typer.Option("--steps", help="Optimisation steps in all.")] = 250,
    rank: Annotated[int | None, typer.Option("--rank", help="Low-rank translators (smaller files).")] = None,
    lr: Annotated[float, typer.Option("--lr", help="Adam's learning rate.")] = 1e-3,
    csv: Annotated[bool, typer.Option("--csv", help="Print the KL table as CSV.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the lens and the KL table as JSON.")] = False,
) -> None:
    """Train a tuned lens on CORPUS and print, per layer, KL(final || logit lens) against KL(final || tuned lens)
    on the held-out lines.

    Examples:

      probe train-lens corpus.txt -m tiny-gpt -o lenses/tiny-gpt --steps 200

      probe train-lens corpus.txt -m tiny-bert -o lenses/tiny-bert --rank 32 --csv
    """
    from probe.analysis.tuned_lens import lens_kl, train_lens
    from probe.core.model import load

    if not corpus.is_file():
        _fail(f"corpus {corpus} is not a file; pass a text file with one document per line")
    docs = [line for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(docs) < 2:
        _fail(f"corpus {corpus} has {len(docs)} non-empty lines; it needs at least 2 (one is held out)")
    held = max(1, len(docs) // 10)
    chosen = load(model or _models(None)[0])
    lens = train_lens(chosen, docs[:-held], steps=steps, out=out, rank=rank, lr=lr)
    frame = lens_kl(chosen, docs[-held:], lens)
    title = f"{chosen.name}: tuned lens saved in {out} ({lens.meta['steps']} steps); KL on {held} held-out lines"
    _print_frame(frame, title, csv, as_json, {"model": chosen.name, "out": str(out), **lens.meta})


@app.command()
@_errors_as_one_line
def dla(
    text: Annotated[str, typer.Argument(help="Text (masked models: with [MASK]).")],
    target: Annotated[str, typer.Option("--target", "-t", help="The token whose logit to split (one token).")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Model name, folder or hub id; default: the best installed (masked for [MASK])."
        ),
    ] = None,
    contrast: Annotated[
        str | None, typer.Option("--contrast", "-c", help="Split target - contrast instead (one token).")
    ] = None,
    unit: Annotated[str, typer.Option("--unit", "-u", help="component, layer, head or neuron.")] = "component",
    position: Annotated[int | None, typer.Option("--position", help="Position (default: last / [MASK]).")] = None,
    k: Annotated[int, typer.Option("--k", "-k", help="Neurons per layer (--unit neuron).")] = 10,
    csv: Annotated[bool, typer.Option("--csv", help="Print the frame as CSV.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the totals and rows as JSON.")] = False,
) -> None:
    """Which components write TARGET (over CONTRAST) at the slot? Direct logit attribution, adding up to the
    model's own logit difference.

    Examples:

      probe dla "The robot must not hurt the" -m tiny-gpt --target " human" --contrast " robot" --unit head

      probe dla "The robot must [MASK] hurt the human." -m tiny-bert -t not -c also --csv
    """
    from probe.analysis.dla import dla as run_dla
    from probe.core.model import load

    if csv and as_json:
        _fail("choose one of --csv and --json")
    frame = run_dla(load(_one_model(model, text)), text, target, contrast=contrast, unit=unit, position=position, k=k)
    a = frame.attrs
    keys = ("model", "unit", "target", "contrast", "position", "token", "logit_diff", "constant", "error")
    what = repr(a["target"]) + (f" - {a['contrast']!r}" if a["contrast"] is not None else "")
    title = f"{a['model']}: direct logit attribution of {what} at {a['token']!r}; logit difference {a['logit_diff']:.3f}, constant {a['constant']:.3f}"
    _print_frame(frame, title, csv, as_json, {key: a[key] for key in keys})


@app.command()
@_errors_as_one_line
def circuit(
    clean: CleanArg,
    corrupted: CorruptedArg,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model name, folder or hub id; default: the best installed causal LM."),
    ] = None,
    answer: AnswerOpt = None,
    wrong: WrongOpt = None,
    edges: Annotated[str, typer.Option("--edges", "-e", help="Edges to keep (largest first), or 'all'.")] = "20",
    ablation: Annotated[str, typer.Option("--ablation", help="corrupted or mean.")] = "corrupted",
    method: Annotated[str, typer.Option("--method", help="How edges are scored: atp or ig.")] = "atp",
    csv: Annotated[bool, typer.Option("--csv", help="Print the kept edges as CSV.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print faithfulness, values and kept edges as JSON.")] = False,
) -> None:
    """Which edges carry the difference between CLEAN and CORRUPTED, and how much of it do they carry alone?
    Edge attribution patching, then the clean text with every other edge ablated (faithfulness).

    Examples:

      probe circuit "The robot must not hurt the" "The robot will not hurt the" -m tiny-gpt --edges 30

      probe circuit "When Mary and John went to the store, John gave a drink to" "When Mary and John went to the store, Mary gave a drink to" -m smollm2-135m --answer " Mary" --wrong " John" --json
    """
    from probe.analysis.circuit import circuit as find_circuit
    from probe.core.model import load

    if csv and as_json:
        _fail("choose one of --csv and --json")
    if edges != "all" and not edges.isdigit():
        _fail(f"--edges {edges!r} is not a number of edges or 'all'")
    m = load(_one_model(model, clean))
    if m.kind == "encoder":
        _fail(f"{m.name} has no language-model head, so there is no answer to trace; use a causal LM")
    metric = _answer_metric(m, clean, corrupted, answer, wrong)
    found = find_circuit(
        m, clean, corrupted, metric, edges="all" if edges == "all" else int(edges), ablation=ablation, method=method
    )
    at = found.attrs
    title = (
        f"{found.model}: {len(found.edges)} of {at['total_edges']} edges, {at['metric']}, faithfulness "
        f"{found.faithfulness:.3f} (clean {found.values['clean']:.3f}, corrupted {found.values['corrupted']:.3f}, "
        f"circuit {found.values['circuit']:.3f})"
    )
    keys = (
        "model",
        "clean",
        "corrupted",
        "metric",
        "method",
        "ablation",
        "edges",
        "total_edges",
        "faithfulness",
        "values",
    )
    _print_frame(found.edges, title, csv, as_json, {k: at[k] for k in keys})


@app.command()
@_errors_as_one_line
def heads(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model name, folder or hub id.")] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", "-k", help="previous_token, induction, duplicate_token or first_token; repeat."),
    ] = None,
    length: Annotated[int, typer.Option("--length", help="Random tokens per copy.")] = 24,
    batch: Annotated[int, typer.Option("--batch", help="Sequences averaged over.")] = 8,
    top: Annotated[int, typer.Option("--top", help="Heads per kind in the table (all with --csv/--json).")] = 5,
    csv: Annotated[bool, typer.Option("--csv", help="Print the frame as CSV.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the settings and rows as JSON.")] = False,
) -> None:
    """Which heads attend to the previous token, the first token, an earlier copy, or the token after it
    (induction)? Scored on repeated random tokens, as TransformerLens's head detector.

    Examples:

      probe heads -m tiny-gpt

      probe heads -m smollm2-135m --kind induction --top 10
    """
    from probe.analysis.heads import KINDS, head_scores
    from probe.core.model import load

    if csv and as_json:
        _fail("choose one of --csv and --json")
    if model is None:
        from probe.defaults import default_models

        model = default_models()[0][0]
    frame = head_scores(load(model), kinds=tuple(kind) if kind else KINDS, length=length, batch=batch)
    a = frame.attrs
    if not (csv or as_json):
        frame = frame.sort_values(["kind", "score"], ascending=[True, False]).groupby("kind", sort=False).head(top)
    title = f"{a['model']}: head detectors on {a['batch']} x 2 x {a['length']} repeated random tokens"
    _print_frame(frame, title, csv, as_json, {k: a[k] for k in ("model", "length", "batch", "seed", "chance")})


def _answer_metric(m, clean: str, corrupted: str, answer: str | None, wrong: str | None) -> tuple:
    """logit(answer) - logit(wrong) at the slot, each default the text's own top token (the log-probability
    of the answer when both are the same token)."""
    from probe.analysis.lens import target_id

    a = target_id(m, answer) if answer else int(m.run(clean, hooks=["logits"]).logits_at().argmax())
    b = target_id(m, wrong) if wrong else int(m.run(corrupted, hooks=["logits"]).logits_at().argmax())
    return ("logit_diff", a, b) if a != b else ("logprob", a)


@app.command()
@_errors_as_one_line
def patch(
    clean: CleanArg,
    corrupted: CorruptedArg,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Model name, folder or hub id; default: the best installed (masked for [MASK])."
        ),
    ] = None,
    answer: AnswerOpt = None,
    wrong: WrongOpt = None,
    over: Annotated[str, typer.Option("--over", help="resid_pre, attn_out, mlp_out or heads.")] = "resid_pre",
    method: Annotated[
        str,
        typer.Option(
            "--method", help="exact (one patched run per unit), atp (gradient estimate) or ig (integrated, EAP-IG)."
        ),
    ] = "exact",
    sender: Annotated[
        str | None,
        typer.Option(
            "--sender",
            help="Path patching: the head LAYER.HEAD (e.g. 0.1) whose clean write reaches only each later "
            "head's --component input, one receiver per row.",
        ),
    ] = None,
    component: Annotated[
        str, typer.Option("--component", help="With --sender: q, k or v, the receivers' input that reads it.")
    ] = "q",
    csv: Annotated[bool, typer.Option("--csv", help="Print the frame as CSV.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the values and rows as JSON.")] = False,
    prepend_bos: BosOpt = True,
) -> None:
    """Activation patching: which layer and position (or head) carries the difference between CLEAN and
    CORRUPTED? Metric: logit(answer) - logit(wrong) at the slot. --method atp/ig estimates every unit from
    gradients (attribution patching) instead of running each patch; --sender patches one head's direct
    path into each later head (path patching).

    Examples:

      probe patch "The robot must not hurt the" "The robot will not hurt the" -m tiny-gpt

      probe patch "The robot must [MASK] hurt the human." "The robot will [MASK] hurt the human." -m tiny-bert --over heads --csv

      probe patch "The robot must not hurt the" "The robot will not hurt the" -m tiny-gpt --sender 0.1 --component k
    """
    from probe.analysis.atp import attribution_patching
    from probe.analysis.intervene import patching
    from probe.core.model import load

    if csv and as_json:
        _fail("choose one of --csv and --json")
    if method not in ("exact", "atp", "ig"):
        _fail(f"--method {method!r} is not one of exact, atp, ig")
    m = load(_one_model(model, clean)).reading(prepend_bos)
    if m.kind == "encoder":
        _fail(f"{m.name} has no language-model head, so there is no answer to patch; use a causal or masked LM")
    if sender is not None:
        _path_patch(m, clean, corrupted, answer, wrong, sender, component, over, method, csv, as_json)
        return
    metric = _answer_metric(m, clean, corrupted, answer, wrong)
    if method == "exact":
        frame = patching(m, clean, corrupted, metric=metric, over=over)
    else:
        frame = attribution_patching(m, clean, corrupted, metric=metric, over=over, method=method)
    at = frame.attrs
    keys = ("model", "clean", "corrupted", "metric", "over", "clean_value", "corrupted_value")
    keys += ("method", "n_steps") if method != "exact" else ()
    title = f"{at['model']}: {'patching' if method == 'exact' else method + ' estimate of patching'} {over}, {at['metric']} clean {at['clean_value']:.3f} corrupted {at['corrupted_value']:.3f}"
    _print_frame(frame, title, csv, as_json, {k: at[k] for k in keys})


def _path_patch(m, clean, corrupted, answer, wrong, sender, component, over, method, csv, as_json) -> None:
    from probe.analysis.paths import path_patching

    if over != "resid_pre" or method != "exact":
        _fail("--sender patches the paths out of one head: leave out --over and --method")
    parts = sender.split(".")
    if len(parts) != 2 or not all(p.lstrip("-").isdigit() for p in parts):
        _fail(f"--sender {sender!r} is not LAYER.HEAD; write e.g. --sender 0.1")
    metric = _answer_metric(m, clean, corrupted, answer, wrong)
    frame = path_patching(
        m, clean, corrupted, sender=(int(parts[0]), int(parts[1])), metric=metric, component=component
    )
    at = frame.attrs
    layer, head = at["sender"]
    title = f"{at['model']}: path patching from L{layer}H{head} into {component}, {at['metric']} clean {at['clean_value']:.3f} corrupted {at['corrupted_value']:.3f}"
    keys = ("model", "clean", "corrupted", "metric", "sender", "kv_heads", "clean_value", "corrupted_value")
    _print_frame(frame, title, csv, as_json, {k: at[k] for k in keys})


@app.command()
@_errors_as_one_line
def extract(
    model: Annotated[str, typer.Argument(help="Model name, local checkpoint folder or hub id.")],
    source: Annotated[str, typer.Argument(help="Corpus: .txt (one text a line), .jsonl, .csv or .parquet.")],
    hooks: Annotated[
        list[str], typer.Option("--hooks", help="Hook name or glob, e.g. 'blocks.*.hook_resid_post'; repeatable.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the Parquet shards and manifest.")],
    positions: Annotated[str, typer.Option(help="all | first | last | mask | mean (one row per text).")] = "all",
    dtype: Annotated[str, typer.Option(help="float16 | float32 storage.")] = "float16",
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass.")] = 32,
    max_length: Annotated[int | None, typer.Option(help="Cut texts to this many tokens (default: context).")] = None,
    text_column: Annotated[str, typer.Option(help="Text column of a .jsonl/.csv/.parquet corpus.")] = "text",
    docs_per_shard: Annotated[int | None, typer.Option(help="Texts per shard (default: ~64 MB shards).")] = None,
    engine: Annotated[str, typer.Option(help="local | ray (Ray Data; pip install 'probe[ray]').")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray address: auto, ray://head:10001, 127.0.0.1:6379; none: a Ray on 127.0.0.1.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No size estimate, no progress bar.")] = False,
    prepend_bos: BosOpt = True,
) -> None:
    """Extract activations over a corpus into a folder of Parquet shards (resumable: re-run to continue).

    Examples:

      probe extract tiny-gpt corpus.txt --hooks 'blocks.*.hook_resid_post' --out acts

      probe extract tiny-bert labels.csv --hooks blocks.3.hook_resid_post --positions mask --out mask_acts

      probe extract tiny-gpt corpus.jsonl --hooks blocks.1.hook_resid_post --out acts --engine ray --address auto
    """
    from probe.analysis.extract import extract as run_extract

    manifest = run_extract(
        model,
        source,
        hooks=hooks,
        out=out,
        positions=positions,
        dtype=dtype,
        batch_size=batch_size,
        max_length=max_length,
        engine=engine,
        text_column=text_column,
        docs_per_shard=docs_per_shard,
        address=address,
        quiet=quiet,
        prepend_bos=prepend_bos,
    )
    c = manifest["counts"]
    typer.echo(
        f"wrote {out}: {c['rows']:,} rows from {c['texts']:,} texts ({c['tokens']:,} tokens) in {c['shards']} shard(s)"
    )


@app.command("fit-probes")
@_errors_as_one_line
def fit_probes_(
    data: Annotated[str, typer.Argument(help="Extraction folder (probe extract) or a Parquet file.")],
    label: Annotated[str, typer.Argument(help="Label column (e.g. one carried from the corpus).")],
    hooks: Annotated[list[str] | None, typer.Option("--hooks", help="Hook names or globs; default: all.")] = None,
    cv: Annotated[int, typer.Option(help="Folds, split by document.")] = 5,
    control: Annotated[bool, typer.Option("--control/--no-control", help="Fit the control task too.")] = True,
    max_rows: Annotated[int, typer.Option(help="Rows sampled at most (0: all).")] = 20_000,
    html: Annotated[Path | None, typer.Option("--html", help="Also write the figure and table as a page.")] = None,
    csv: Annotated[bool, typer.Option("--csv", help="Print the scores as CSV instead of a table.")] = False,
) -> None:
    """Fit a linear probe per hook for LABEL: accuracy, control-task accuracy and selectivity per layer.

    Examples:

      probe fit-probes acts label --hooks 'blocks.*.hook_resid_post'

      probe fit-probes acts label --html probes.html --csv > probes.csv
    """
    from probe.analysis.probing import fit_probes

    scores, fig = fit_probes(data, label, hooks=hooks, cv=cv, control=control, max_rows=max_rows or None)
    for note in scores.attrs.get("notes", []):
        typer.echo(f"note: {note}", err=True)
    if html is not None:
        from probe.pages import page

        path = page(
            [
                ("Accuracy per layer", "probe accuracy (line) over the control task (shaded)", fig),
                ("Scores", "", scores),
            ],
            html,
            title=f"Linear probes for '{label}'",
            subtitle=str(data),
        )
        typer.echo(f"wrote {path}", err=csv)
    if csv:
        typer.echo(scores.to_csv(index=False), nl=False)
        return
    from rich.table import Table

    table = Table(title=f"Linear probes for '{_escape(label, markup=False)}' ({scores['metric'].iloc[0]})")
    for col in ("hook", "layer", "accuracy", "control_accuracy", "selectivity", "n"):
        table.add_column(col, justify="left" if col == "hook" else "right")
    for r in scores.itertuples(index=False):
        table.add_row(
            _escape(r.hook, markup=False),
            str(r.layer),
            f"{r.accuracy:.3f}",
            f"{r.control_accuracy:.3f}",
            f"{r.selectivity:.3f}",
            str(r.n),
        )
    _console().print(table)


@app.command()
@_errors_as_one_line
def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON records.")] = False,
) -> None:
    """List the models probe knows: bundled demos, a packaged encoder, hub examples.

    Examples:

      probe models

      probe models --json
    """
    import pandas as pd
    from rich.markup import escape
    from rich.table import Table

    from probe.cards import models as list_models

    frame = list_models()
    if as_json:
        typer.echo(frame.to_json(orient="records", indent=1))
        return
    table = Table(title="Models", title_justify="left")
    show_heldout = bool(frame["heldout"].astype(bool).any())
    headers = ["name", "kind", "family", "params", "shape", "vocab", "source", "installed"] + (
        ["held-out"] if show_heldout else []
    )
    for col in headers:
        table.add_column(
            col, no_wrap=col in ("name", "shape"), justify="right" if col in ("params", "vocab") else "left"
        )

    def num(v, fmt=str) -> str:
        return "" if pd.isna(v) else fmt(int(v))

    for r in frame.itertuples(index=False):
        shape = (
            f"{num(r.layers)}L x {num(r.heads)}H, d={num(r.d_model)}, ctx={num(r.context)}"
            if not pd.isna(r.layers)
            else ""
        )
        params = num(r.params, lambda v: f"{v / 1e6:.1f}M" if v >= 1e6 else f"{v:,}")
        cells = [r.name, r.kind, r.family, params, shape, num(r.vocab), r.source, "yes" if r.installed else "no"]
        cells += [r.heldout] if show_heldout else []
        table.add_row(*[escape(str(c)) for c in cells])
    _console().print(table)


@app.command()
@_errors_as_one_line
def dashboard(
    model: ModelOpt = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to serve on; 127.0.0.1 is this machine only (others get a warning).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to serve on; 0 picks a free one.")] = 8050,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", help="Longest text in tokens (also capped at each model's context).")
    ] = 256,
) -> None:
    """Serve a live dashboard: type a sentence, watch the models read it (needs Dash: the dashboard extra).

    Default models: the real pretrained ones when installed, else tiny-gpt and tiny-bert. The page can switch to any installed model `probe models` lists, and to nothing else. Ctrl-C stops it.

    Examples:

      probe dashboard

      probe dashboard -m tiny-gpt -m tiny-bert --port 8051
    """
    from probe.app import dashboard as serve

    serve(
        list(model) if model else None,
        host=host,
        port=port,
        max_tokens=max_tokens,
        echo=lambda line: typer.echo(line, err=True),
    )


if __name__ == "__main__":
    app()
