"""Finding the champion in MLflow from a child process: a typed request in, a typed answer out.

The service starts ``python -m womac.models.lookup`` first thing at start-up and writes a
:class:`LookupRequest` to its standard input as JSON; the child answers with one
:data:`LookupAnswer` on its standard output. The registry lookup and MLflow's SQLAlchemy store
take ~2 s to import, and the service does not need MLflow on its request path, so that time
overlaps the service's own imports on the other core instead of adding to them.

Both sides read and write these types only, so what crosses the boundary is checked where it
is read (a child that died halfway gives :class:`LookupFailed`, never a half-read dict).
This is not a command line for people: ``womac`` is the one command line.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from womac.models.status import MonitoringStatus, status_from_tags


class LookupRequest(BaseModel):
    """Which registry to ask, and for which alias of which registered model."""

    model_config = ConfigDict(frozen=True)

    tracking_uri: str
    model_name: str
    alias: str


class ChampionFound(BaseModel):
    """The champion's model file (downloaded), its run's figures, its model report and its
    latest monitoring verdict (``None`` when never, or illegibly, monitored)."""

    model_config = ConfigDict(frozen=True)

    status: Literal["ok"] = "ok"
    version: str
    run_id: str
    model_file: str
    metrics: dict[str, float]
    chosen_model: str
    report_html: str | None = None
    monitoring: MonitoringStatus | None = None


class NoChampion(BaseModel):
    """No version holds the alias; the message lists what is registered and what to do."""

    model_config = ConfigDict(frozen=True)

    status: Literal["absent"] = "absent"
    message: str


class LookupFailed(BaseModel):
    """The registry could not be read, or the champion is not a model of this product."""

    model_config = ConfigDict(frozen=True)

    status: Literal["error"] = "error"
    message: str


LookupAnswer = Annotated[ChampionFound | NoChampion | LookupFailed, Field(discriminator="status")]
"""What the child answers: exactly one of the three, told apart by ``status``."""

ANSWER: TypeAdapter[ChampionFound | NoChampion | LookupFailed] = TypeAdapter(LookupAnswer)


def resolve_champion(request: LookupRequest) -> ChampionFound | NoChampion | LookupFailed:
    """Everything serving needs from MLflow about the champion.

    With no champion, the message lists the registered versions and how to serve one (see
    :func:`womac.models.registry.no_champion_message`).
    """
    from womac.models.registry import Command, no_champion_message, registered_versions
    from womac.models.store import REPORT_ARTIFACT, champion_version, connect, download_skops
    from womac.models.tracking import shown

    client = connect(request.tracking_uri)
    current = champion_version(client, request.model_name, request.alias)
    if current is None:
        versions = registered_versions(client, request.model_name)
        message = no_champion_message(
            request.model_name,
            request.alias,
            versions,
            Command.serve,
            store=shown(request.tracking_uri),
        )
        return NoChampion(message=message)
    folder = tempfile.mkdtemp(prefix="womac-champion-")
    try:
        model_file = download_skops(f"models:/{request.model_name}/{current.version}", folder)
    except ValueError as refused:
        return LookupFailed(message=str(refused))
    run = client.get_run(current.run_id)
    try:
        report = client.download_artifacts(current.run_id, REPORT_ARTIFACT, folder)
        report_html: str | None = Path(report).read_text(encoding="utf-8")
    except Exception:  # runs logged before reports existed have none
        report_html = None
    return ChampionFound(
        version=str(current.version),
        run_id=str(current.run_id),
        model_file=str(model_file),
        metrics=dict(run.data.metrics),
        chosen_model=run.data.params.get("chosen_model", ""),
        report_html=report_html,
        # Read from the version itself, so a reload sees a verdict written since start-up.
        monitoring=status_from_tags(dict(current.tags or {})),
    )


def answer(request_json: bytes | str) -> ChampionFound | NoChampion | LookupFailed:
    """The child's whole job: a request's JSON in, an answer out; no exception escapes."""
    from womac.models.tracking import StoreUnavailableError

    try:
        return resolve_champion(LookupRequest.model_validate_json(request_json))
    except StoreUnavailableError as error:  # our own sentence: the store and what to do
        return LookupFailed(message=str(error))
    except Exception as error:  # reported to the parent by type only
        return LookupFailed(message=f"the registry cannot be read ({type(error).__name__})")


def _main() -> None:
    # Import what the lookup needs before waiting for the request: the parent sends it once
    # its own imports are done, and these ~2 s should overlap them, not follow them.
    with contextlib.suppress(Exception):  # a failed import is reported by answer()
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

        import womac.models.registry
        import womac.models.store  # noqa: F401
    sys.stdout.write(ANSWER.dump_json(answer(sys.stdin.buffer.read())).decode())


if __name__ == "__main__":
    _main()
