"""The ``kubenas`` command line."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from kubenas import export as export_cli
from kubenas.bench import cli as bench_cli
from kubenas.bench import importance as bench_importance
from kubenas.controller import cli as controller_cli
from kubenas.insights import cli as insights_cli
from kubenas.operator import cli as operator_cli
from kubenas.packaging import cli as chart_cli

console = Console()


def _untyped_flags(command: Any) -> None:
    """Give every flag an empty metavar, so help shows ``--verbose`` rather than ``--verbose <bool>``."""
    for param in command.params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    made = command.get_help_option  # --help is made per context, not kept in params

    def help_option(ctx: Any) -> Any:
        option = made(ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""
        return option

    command.get_help_option = help_option
    for sub in (getattr(command, "commands", None) or {}).values():
        _untyped_flags(sub)


class _Commands(TyperGroup):
    """The top-level group; typer prints a ``<bool>`` type beside flags, which takes no value."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        _untyped_flags(self)
        return super().main(*args, **kwargs)


app = typer.Typer(
    cls=_Commands,
    help="Kubenas: neural architecture search on Kubernetes, or on this machine.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
bench_app = typer.Typer(help="Benchmarks: tabular search, operator turnaround.", no_args_is_help=True)
bench_cli.register(bench_app)
bench_importance.register(bench_app)
app.add_typer(bench_app, name="bench")
app.add_typer(operator_cli.app, name="operator")
app.add_typer(controller_cli.app, name="controller")
chart_cli.register(app)
insights_cli.register(app)
export_cli.register(app)

#: Entry-point group through which other distributions add commands: each entry is a callable
#: ``register(app, bench_app)``. The development tools (devtools/, package ``kubenas_dev``) add
#: ``kubenas cluster ...`` and ``kubenas bench operator`` this way, so the runtime package carries
#: neither the test control plane nor the operator benchmark.
COMMANDS_GROUP = "kubenas.commands"
#: Commands that only a development install brings: (parent app, name, full command).
DEV_COMMANDS = ((app, "cluster", "kubenas cluster"), (bench_app, "operator", "kubenas bench operator"))
DEV_HINT = "comes with the development tools: in a checkout, `python3 -m pip install -e ./devtools` (or `make deps`)"


def _names(parent: typer.Typer) -> set[str | None]:
    groups = {g.name for g in parent.registered_groups}
    return groups | {c.name or (c.callback.__name__ if c.callback else None) for c in parent.registered_commands}


def _missing(parent: typer.Typer, name: str, command: str) -> None:
    """Stand in for a development command that is not installed, saying where it comes from."""

    @parent.command(name, hidden=True, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def missing() -> None:
        typer.echo(f"`{command}` {DEV_HINT}", err=True)
        raise typer.Exit(2)


crds_app = typer.Typer(help="The CustomResourceDefinitions generated from the API models.", no_args_is_help=True)
app.add_typer(crds_app, name="crds")


@crds_app.command("generate")
def crds_generate(
    out: Annotated[Path, typer.Option(help="Folder to write the CRD YAML into.")] = Path("crds"),
) -> None:
    """Write crds/*.yaml from the pydantic models."""
    from kubenas.api import crd

    for path in crd.write(out):
        typer.echo(f"wrote {path}")


@crds_app.command("check")
def crds_check(
    out: Annotated[Path, typer.Option(help="Folder holding the committed CRD YAML.")] = Path("crds"),
) -> None:
    """Exit 1 when the committed CRDs differ from what the models generate."""
    from kubenas.api import crd

    stale = [n for n, obj in crd.crds().items() if not (out / n).exists() or (out / n).read_text() != crd.render(obj)]
    if stale:
        typer.echo(f"out of date: {', '.join(stale)}; run `kubenas crds generate`", err=True)
        raise typer.Exit(1)
    typer.echo("CRDs are up to date")


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="SearchExperiment and Trial YAML files.")],
    local: Annotated[
        bool, typer.Option("--local", help="Check for local mode instead (no trainer image needed).")
    ] = False,
) -> None:
    """Check manifests as the API server would (strictly, every document), naming each bad field."""
    from kubenas.load import validate_file

    bad = 0
    for f in files:
        for verdict in validate_file(f, kubernetes=not local):
            if verdict.error is not None:
                bad += 1
                console.print(f"✗ {verdict.error}", style="red", markup=False, highlight=False)
            else:
                obj = verdict.obj
                assert obj is not None
                what = f"{obj.kind} {obj.metadata.name}"  # type: ignore[attr-defined]
                console.print(f"✓ {verdict.source}: {what}", style="green", markup=False, highlight=False)
    raise typer.Exit(1 if bad else 0)


@app.command()
def run(
    experiment: Annotated[Path | None, typer.Argument(help="SearchExperiment YAML file.")] = None,
    results: Annotated[Path | None, typer.Option(help="Results folder (default results/<name>).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run recorded in this results folder.")] = None,
) -> None:
    """Run an experiment on this machine: the strategy in-process, each trial a subprocess.

    SIGTERM stops it as Ctrl-C does (trials stopped, summary written; exit 128 + the signal). What
    makes a run impossible (a bad manifest, a results folder in use, unwritable or with a corrupt
    journal, a journal that does not replay) is one line naming the file or folder, and exit 2.
    """
    from kubenas.core.errors import ReplayError
    from kubenas.load import ManifestError
    from kubenas.local.errors import LocalRunError
    from kubenas.local.lock import release
    from kubenas.local.runner import prepare
    from kubenas.local.runner import run as run_local
    from kubenas.local.signals import sigterm_as_interrupt

    try:
        exp, folder = prepare(experiment, results, resume)
    except (ManifestError, LocalRunError) as exc:
        console.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if exp.spec.one_shot is not None:  # three phases: supernet, search over it, retraining of the top k
        from kubenas.local.oneshot import run as run_local
    try:
        with sigterm_as_interrupt() as received:
            outcome = run_local(exp, folder, console)
    except (ManifestError, LocalRunError, ReplayError) as exc:
        console.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    finally:
        release(folder)
    if outcome.interrupted:
        raise typer.Exit(128 + received.signum if received.signum is not None else 130)
    raise typer.Exit(0 if outcome.phase == "Succeeded" else 1)


@app.command()
def version() -> None:
    """Print the Kubenas version."""
    from kubenas import __version__

    typer.echo(__version__)


# Last, so a plugin sees every built-in command.
for _entry in entry_points(group=COMMANDS_GROUP):
    try:
        _register = _entry.load()
    except ImportError as _err:  # a stale install of a plugin must not take the built-in commands down
        print(f"kubenas: plugin {_entry.name!r} not loaded ({_err}); its commands are missing", file=sys.stderr)
        continue
    _register(app, bench_app)
for _parent, _name, _command in DEV_COMMANDS:
    if _name not in _names(_parent):
        _missing(_parent, _name, _command)


if __name__ == "__main__":
    app()
