"""The `mtia-cluster` command group.

Every subcommand lives in its own module under `mtia_cluster/cli/` and is registered here.
User errors (:class:`UserError`) become one line on stderr and exit status 2;
operating-system errors (disk full, permission, read-only file system: :class:`OutputIOError`
or any OSError that reaches here) and runs that fail for other reasons (:class:`RunFailed`:
a shard past its restarts, a Ray that would not start) one line and exit status 1; for every
command, in one place.
Ctrl-C exits 130.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from typing import Any

import click

from mtia_cluster import __version__
from mtia_cluster.errors import OutputIOError, RunFailed, UserError
from mtia_cluster.output import is_interrupt

# (module, attribute) of each subcommand; imported lazily so `mtia-cluster chips` never pays
# for importing Ray.
_COMMANDS: dict[str, tuple[str, str]] = {
    "chips": ("mtia_cluster.cli.catalog_cmds", "chips"),
    "models": ("mtia_cluster.cli.catalog_cmds", "models"),
    "estimate": ("mtia_cluster.cli.catalog_cmds", "estimate"),
    "validate": ("mtia_cluster.cli.catalog_cmds", "validate"),
    "calibrate": ("mtia_cluster.cli.calibrate_cmds", "calibrate"),
    "demo": ("mtia_cluster.cli.demo", "demo"),
    "trace": ("mtia_cluster.cli.trace", "trace"),
    "simulate": ("mtia_cluster.cli.simulate", "simulate"),
    "replay": ("mtia_cluster.cli.replay", "replay"),
    "capacity": ("mtia_cluster.cli.capacity_cmd", "capacity"),
    "plan": ("mtia_cluster.cli.plan_cmd", "plan"),
    "launch": ("mtia_cluster.cli.launch_cmds", "launch"),
    "status": ("mtia_cluster.cli.launch_cmds", "status"),
    "down": ("mtia_cluster.cli.launch_cmds", "down"),
    "analyze": ("mtia_cluster.cli.analyze", "analyze"),
    "rollout": ("mtia_cluster.cli.rollout", "rollout"),
    "clean": ("mtia_cluster.cli.clean", "clean"),
    "schema": ("mtia_cluster.cli.schema_cmd", "schema"),
}


class OneLineUsageError(click.UsageError):
    """A command-line usage error shown as one line (the project's rule for bad input):
    ``error: COMMAND: MESSAGE (see 'COMMAND --help')``, exit status 2, instead of click's
    three lines (usage, hint, blank line, message)."""

    def __init__(self, exc: click.UsageError) -> None:
        super().__init__(exc.message, exc.ctx)
        self.original = exc  # its format_message names the parameter (click builds it late)

    def format_message(self) -> str:
        return " ".join(self.original.format_message().split()).rstrip(".")

    def show(self, file: Any = None) -> None:
        path = self.ctx.command_path if self.ctx is not None else "mtia-cluster"
        message = self.format_message()
        click.echo(f"error: {path}: {message} (see '{path} --help')", err=True)


class MainGroup(click.Group):
    """A group that loads subcommands lazily, turns UserError into exit status 2 and
    shows usage errors (unknown option or command, missing argument) as one line."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if args and self.get_command(ctx, name) is None and not name.startswith("-"):
            near = difflib.get_close_matches(name, list(_COMMANDS), n=1)
            hint = f". Did you mean '{near[0]}'?" if near else ""
            raise click.UsageError(f"No such command '{name}'{hint}", ctx)
        return super().resolve_command(ctx, args)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise OneLineUsageError(exc) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in _COMMANDS if self._load(name) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    def _load(self, name: str) -> click.Command | None:
        spec = _COMMANDS.get(name)
        if spec is None:
            return None
        module = importlib.import_module(spec[0])
        command = getattr(module, spec[1], None)
        return command if isinstance(command, click.Command) else None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OneLineUsageError:
            raise
        except click.UsageError as exc:
            raise OneLineUsageError(exc) from None
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except OutputIOError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except BrokenPipeError:
            # the reader of stdout went away (`... | head`): stop quietly, as a command killed
            # by SIGPIPE does (128 + 13); stdout to /dev/null so that the exit flush is silent
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(141)
        except OSError as exc:
            from mtia_cluster.output import os_error_of

            err = os_error_of(exc) or exc
            where = f"{err.filename}: " if err.filename else ""
            click.echo(f"error: {where}{err.strerror or str(err).splitlines()[0]}", err=True)
            ctx.exit(1)
        except RunFailed as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except (KeyboardInterrupt, SystemError) as exc:
            # Ctrl-C, also inside a numba-compiled function (the dispatcher re-raises it as
            # "SystemError: ... returned a result with an exception set" chained to the
            # KeyboardInterrupt; any other SystemError is an error). 128 + SIGINT, as a shell
            # reports it; `simulate -o` removes its temporary (ResultsWriter.__exit__)
            if not is_interrupt(exc):
                raise
            # one line; on a terminal first end the line the ^C echo or a progress bar left
            tty = sys.stderr.isatty()
            click.echo(("\n" if tty else "") + "interrupted", err=True)
            ctx.exit(130)


@click.group(cls=MainGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mtia-cluster")
def cli() -> None:
    """Simulate AI-inference fleets of MTIA accelerators and GPUs."""


def main() -> None:
    """Console-script entry point."""
    cli()
