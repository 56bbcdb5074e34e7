"""How a command ends when it cannot finish its job, and with which exit code.

A refusal is one line on standard error and exit code 1; an interrupt (SIGINT, SIGTERM)
unwinds, says what was left untouched and exits 130; an operating-system fault is a refusal
naming the path. Never a traceback for something the user can act on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from womac.pipeline.console import errors

if TYPE_CHECKING:
    from womac.settings import Settings

# MLflow's errors arrive as these types (the REST client's as the second); told by name, so
# that a command that never reaches MLflow does not import it to recognise them.
MLFLOW_ERRORS = frozenset({"MlflowException", "RestException"})


def from_mlflow(error: BaseException) -> bool:
    """Whether ``error`` is MLflow's own (a store or registry that did not answer as asked)."""
    return type(error).__name__ in MLFLOW_ERRORS


def refuse(error: Exception) -> typer.Exit:
    """Print ``error`` as the command's one-line refusal; return the exit to raise (code 1)."""
    # Escaped: a message may hold brackets (".[spark]", a column named "[x]") that are not markup.
    errors.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, markup=True)
    return typer.Exit(code=1)


@contextmanager
def interruptible(outcome: str, writing: str | None = None) -> Iterator[None]:
    """SIGINT and SIGTERM unwind (temporary files are removed) and exit 130, saying so; an
    operating-system fault (a full disk, a read-only folder) is one line and exit 1, naming
    the path (``writing`` when the fault names none)."""
    from womac.pipeline.faults import os_fault, told_in_one_line
    from womac.pipeline.safety import interrupts_handled

    told_in_one_line()
    try:
        with interrupts_handled():
            yield
    except KeyboardInterrupt:
        errors.print(f"[bold red]interrupted:[/] {outcome}.")
        raise typer.Exit(code=130) from None
    except typer.Exit:
        raise
    except Exception as error:
        fault = os_fault(error, writing)
        if fault is None:
            raise
        raise refuse(RuntimeError(f"{fault} ({outcome})")) from None


def command_settings(**options: object) -> Settings:
    """The process-wide settings, with the command's options (those given, not ``None``) in
    place of their settings; a bad ``WOMAC_*`` variable is one line naming it and why (never
    its value: it could be a key or a password)."""
    from pydantic import ValidationError

    from womac.settings import get_settings

    given = {name: value for name, value in options.items() if value is not None}
    try:
        return get_settings().model_copy(update=given)
    except ValidationError as invalid:
        problems = "; ".join(
            f"WOMAC_{'_'.join(str(part) for part in issue['loc']).upper()}: "
            + str(issue["msg"]).removeprefix("Value error, ")
            for issue in invalid.errors()
        )
        raise refuse(ValueError(f"bad settings: {problems}")) from None
