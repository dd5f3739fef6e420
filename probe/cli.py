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

from probe.compare import DEFAULT_MODELS, DEFAULT_TEXT
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
        "--out acts.parquet  |  probe models"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _quiet() -> None:
    """No progress bars or library warnings around the one line a command prints."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass


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


ModelOpt = Annotated[
    list[str] | None,
    typer.Option("--model", "-m", help="Model name, local checkpoint folder or hub id; repeat for several."),
]


@app.command()
@_errors_as_one_line
def report(
    text: Annotated[str, typer.Argument(help="Sentence; put [MASK] where a word is missing.")] = DEFAULT_TEXT,
    model: ModelOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="The .html file to write.")] = Path("report.html"),
    k: Annotated[int, typer.Option("--k", "-k", help="Candidates per prediction list.")] = 10,
) -> None:
    """Write one self-contained HTML report (works offline) of how the models read TEXT.

    Examples:

      probe report

      probe report "The cat sat on the [MASK]." -m tiny-gpt -m tiny-bert -o cat.html
    """
    from probe.report import report as build

    path = build(text, list(model or DEFAULT_MODELS), out, k=k)
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
) -> None:
    """How do the models fill the [MASK] in TEXT? Prints a table (or CSV / JSON).

    Examples:

      probe compare "The robot must [MASK] hurt the human." -m tiny-gpt -m tiny-bert

      probe compare "Paris is the [MASK] of France." -m tiny-bert --csv > words.csv
    """
    from probe.compare import compare as run_compare

    if csv and as_json:
        _fail("choose one of --csv and --json")
    frame = run_compare(list(model or DEFAULT_MODELS), text, k=k, rescore=rescore)
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
                f"{row.spearman:.2f}",
                f"{row.kendall:.2f}",
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
    model: Annotated[str, typer.Option("--model", "-m", help="Model name, folder or hub id.")] = DEFAULT_MODELS[0],
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
) -> None:
    """Run TEXT through a model and save the captured activations to Parquet.

    Examples:

      probe run "The robot must not hurt the human." -m tiny-gpt --hooks 'blocks.*.hook_resid_post' --out resid.parquet

      probe run "Hello" -m tiny-bert --hooks 'blocks.0.attn.hook_pattern' --hooks logits -o hello.parquet
    """
    from probe.model import load

    result = load(model).run(text, hooks=hooks, truncate=truncate)
    path = result.to_parquet(out)
    typer.echo(f"wrote {path}: {sum(result.lengths)} tokens x {len(result.keys())} hooks")


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
    address: Annotated[str | None, typer.Option(help="Ray cluster address, e.g. ray://head:10001 or auto.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No size estimate, no progress bar.")] = False,
) -> None:
    """Extract activations over a corpus into a folder of Parquet shards (resumable: re-run to continue).

    Examples:

      probe extract tiny-gpt corpus.txt --hooks 'blocks.*.hook_resid_post' --out acts

      probe extract tiny-bert labels.csv --hooks blocks.3.hook_resid_post --positions mask --out mask_acts

      probe extract tiny-gpt corpus.jsonl --hooks blocks.1.hook_resid_post --out acts --engine ray --address auto
    """
    from probe.extract import extract as run_extract

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
    from probe.probing import fit_probes

    scores, fig = fit_probes(data, label, hooks=hooks, cv=cv, control=control, max_rows=max_rows or None)
    if html is not None:
        from probe.report import page

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


if __name__ == "__main__":
    app()
