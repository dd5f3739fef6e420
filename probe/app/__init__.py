"""``probe.dashboard``: a live Dash app over the report's figures; type a sentence, watch the models read it.

Needs the extra ``probe[dashboard]`` (Dash). Served on 127.0.0.1 by default and fully offline: Dash's
and plotly's JavaScript come from the installed packages. The work (models, cached runs, figures) lives
in :class:`Workbench`, the web page in ``_app``; :func:`start` serves it in a background thread (tests,
benchmarks) and :func:`dashboard` serves it until Ctrl-C (``probe dashboard``).

>>> probe.dashboard(["tiny-gpt", "tiny-bert"])          # http://127.0.0.1:8050
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from probe.app._core import EXAMPLES, MAX_TOKENS, Choice, Workbench, offered_models
from probe.errors import ProbeError

__all__ = [
    "dashboard",
    "start",
    "make_app",
    "Workbench",
    "Server",
    "Choice",
    "offered_models",
    "EXAMPLES",
    "DashboardError",
]

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class DashboardError(ProbeError):
    """The dashboard cannot start: Dash missing, a bad host or port, the port in use."""


def _require_dash() -> None:
    try:
        import dash  # noqa: F401
    except ImportError:
        raise DashboardError(
            "the dashboard needs Dash, which is not installed; pip install 'probe[dashboard]' (or pip install dash)"
        ) from None


def is_local(host: str) -> bool:
    """Is ``host`` a loopback address (reachable from this machine only)?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_address(host: str, port: int) -> None:
    if not isinstance(host, str) or not host.strip():
        raise DashboardError("--host is empty; use 127.0.0.1 (this machine only) or an address of this machine")
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise DashboardError(f"--port must be 0..65535 (0: any free port), got {port!r}")


def _why(err: BaseException) -> str:
    return (getattr(err, "strerror", None) or str(err) or type(err).__name__) if isinstance(err, OSError) else "in use"


def _check_free(host: str, port: int) -> None:
    """Fail with a clear line before werkzeug would print its own and exit the process."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as err:
        raise DashboardError(
            f"cannot serve on {host}: {_why(err)}; use 127.0.0.1 or an address of this machine"
        ) from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe_socket:
        probe_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug binds
        try:
            probe_socket.bind(address)
        except OSError as err:
            raise DashboardError(
                f"cannot serve on {host}:{port}: {_why(err)}; pick another --port (0: a free one)"
            ) from None


def make_app(models: Sequence[Any] | Workbench, notice: str | None = None, max_tokens: int = MAX_TOKENS):
    """The Dash app (not started) for ``models`` (names, paths, Models) or a ready Workbench."""
    _require_dash()
    from probe.app._app import make_app as build

    bench = models if isinstance(models, Workbench) else Workbench(models, max_tokens=max_tokens)
    return build(bench, notice)


@dataclass
class Server:
    """A running dashboard: ``url``, the ``bench`` it serves; ``stop()`` ends it (also as a context manager)."""

    url: str
    bench: Workbench
    app: Any
    _server: Any = field(repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start(
    models: Sequence[Any] | Workbench,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    notice: str | None = None,
    max_tokens: int = MAX_TOKENS,
    background: bool = True,
) -> Server:
    """Serve the dashboard over ``models`` on ``host:port`` (port 0: a free one) and return at once.

    Args:
        models: names, paths or loaded Models (or a Workbench); they are offered with the installed models.
        background: serve in a daemon thread (tests, benchmarks); False: call ``serve_forever()`` yourself.

    Returns:
        Server with ``url``; ``server.stop()`` shuts it down.

    Example:
        >>> from probe.dashboard import start
        >>> with start(["tiny-gpt", "tiny-bert"]) as server: print(server.url)
    """
    from werkzeug.serving import make_server

    check_address(host, port)
    _require_dash()
    bench = models if isinstance(models, Workbench) else Workbench(models, max_tokens=max_tokens)
    app = make_app(bench, notice)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    _check_free(host, port)
    try:
        server = make_server(host, port, app.server, threaded=True)
    except (OSError, SystemExit) as err:  # werkzeug exits (after a line on stderr) when the port is taken
        raise DashboardError(
            f"cannot serve on {host}:{port}: {_why(err)}; pick another --port (0: a free one)"
        ) from None
    shown = f"[{host}]" if ":" in host else host
    running = Server(url=f"http://{shown}:{server.server_port}/", bench=bench, app=app, _server=server)
    if background:
        running._thread = threading.Thread(target=server.serve_forever, name="probe-dashboard", daemon=True)
        running._thread.start()
    return running


def dashboard(
    models: Sequence[Any] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8050,
    max_tokens: int = MAX_TOKENS,
    echo: Callable[[str], None] | None = None,
) -> None:
    """Serve the live dashboard until Ctrl-C: type a sentence, watch the models read it.

    Args:
        models: names, paths or loaded Models to show first; default ``probe.default_models()`` (the real
            pretrained models when installed, else the bundled tiny ones). The page can also switch to any
            installed model ``probe models`` lists, and to nothing else.
        host: 127.0.0.1 (default) serves this machine only; another address is served with a warning.
        port: 8050 by default; 0 picks a free one.
        max_tokens: the longest text in tokens (also capped at each model's context).
        echo: where progress lines go (default: stderr).

    Example:
        >>> probe.dashboard(["tiny-gpt", "tiny-bert"], port=8050)
    """
    say = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    check_address(host, port)
    _require_dash()
    _check_free(host, port)  # before minutes of model loading, not after
    notice = None
    if not models:
        from probe.defaults import default_models

        names, notice = default_models()
        models = names
        if notice:
            say(f"note: {notice}")
    if isinstance(models, str):
        models = [models]
    if not is_local(host):
        say(
            f"warning: serving on {host}, so other machines can reach the dashboard and make this one run the "
            "models; use --host 127.0.0.1 unless you mean that"
        )
    bench = Workbench(list(models), max_tokens=max_tokens)
    bench.warm(on_load=lambda name: say(f"loading {name} ..."))
    server = start(bench, host, port, notice=notice, background=False)
    say(f"probe dashboard on {server.url} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._server.server_close()
