"""``kubenas controller serve``: the command the experiment's controller pod runs."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import typer

from kubenas.controller.protocol import DEFAULT_PORT

app = typer.Typer(help="The experiment controller: holds one search strategy behind an HTTP API.", no_args_is_help=True)

TOKEN_ENV = "KUBENAS_CONTROLLER_TOKEN"
#: a termination message's limit in Kubernetes (4096 bytes); the end of a message is kept
MESSAGE_BYTES = 4000


@app.callback()
def main() -> None:
    """The experiment controller (a group, so that ``serve`` stays a subcommand)."""


@app.command()
def serve(
    host: str = typer.Option(
        "", help="Address to listen on (default: $POD_IP, else 0.0.0.0). The pod IP keeps pods that share a host apart."
    ),
    port: int = typer.Option(DEFAULT_PORT, help="Port to listen on."),
    token_env: str = typer.Option(TOKEN_ENV, help="Environment variable that holds the bearer token."),
    experiment: str = typer.Option("", envvar="KUBENAS_EXPERIMENT", help="Experiment name (for logs)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logs."),
) -> None:
    """Serve ask, tell, replay, health and metrics for one experiment until terminated."""
    from aiohttp import web

    from kubenas.controller import logs
    from kubenas.controller.server import make_app

    logs.configure(logging.DEBUG if verbose else logging.INFO)
    token = os.environ.get(token_env, "")
    if not token:
        raise typer.BadParameter(f"${token_env} is empty: the controller refuses to run without a token")
    bind = host or os.environ.get("POD_IP") or "0.0.0.0"
    logging.getLogger("kubenas.controller").info(
        "serving", extra={"experiment": experiment, "host": bind, "port": port}
    )
    web.run_app(make_app(token, experiment), host=bind, port=port, print=None, access_log=None)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def evaluator(
    ctx: typer.Context,
    host: str = typer.Option("", help="Address to listen on (default: $POD_IP, else 0.0.0.0)."),
    port: int = typer.Option(DEFAULT_PORT, help="Port to listen on."),
    token_env: str = typer.Option(TOKEN_ENV, help="Environment variable that holds the bearer token."),
    message_file: str = typer.Option(
        "", help="Where to write why the evaluate command could not load the supernet (the pod's termination message)."
    ),
) -> None:
    """A one-shot search's evaluator pod: serve the evaluate command given after ``--`` over HTTP; exit 1
    if it dies before it has loaded the supernet."""
    import signal

    from aiohttp import web

    from kubenas.controller import logs
    from kubenas.controller.evaluator import LOAD_FAILED_EXIT, make_app

    logs.configure(logging.INFO)
    token = os.environ.get(token_env, "")
    if not token:
        raise typer.BadParameter(f"${token_env} is empty: the evaluator refuses to run without a token")
    command = list(ctx.args)
    if not command:
        raise typer.BadParameter("give the evaluate command after --")
    bind = host or os.environ.get("POD_IP") or "0.0.0.0"
    logging.getLogger("kubenas.controller").info("evaluator serving", extra={"host": bind, "port": port})
    failed: list[str] = []

    def load_failed(message: str) -> None:
        failed.append(message)
        if message_file:
            with contextlib.suppress(OSError):
                Path(message_file).write_text(message[-MESSAGE_BYTES:])
        os.kill(os.getpid(), signal.SIGTERM)  # stop the server as SIGTERM does (cleanup runs), then exit 1

    web.run_app(make_app(token, command, load_failed), host=bind, port=port, print=None, access_log=None)
    if failed:
        raise typer.Exit(LOAD_FAILED_EXIT)
