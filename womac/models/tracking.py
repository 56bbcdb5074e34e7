"""The tracking store, checked before any work: reachable, with its driver, shareable.

A training finds out in a second, with one plain line, what it would otherwise find out after
all the fitting (or never): that a PostgreSQL store needs a driver that is not installed,
that a tracking server is not answering, or that an experiment on a shared server keeps its
artifacts in one trainer's own folder, where no colleague can load them.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

# Database dialects MLflow keeps its tracking store in directly (no server in between).
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")
SERVER_SCHEMES = ("http", "https")
DRIVER_HINTS = {
    "psycopg": "'psycopg[binary]' (a dependency of womac: reinstall with `make setup`)",
    "pymysql": "pymysql",
    "pyodbc": "pyodbc",
}


class StoreUnavailableError(RuntimeError):
    """The tracking store cannot be used; the message says why and what to do, in one line."""


def shown(uri: str) -> str:
    """A tracking URI fit for a message or a log: no password, no query string."""
    parts = urlsplit(uri)
    if parts.password is None and not parts.query:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, "", ""))


def is_server(uri: str) -> bool:
    """Whether the store is a tracking server (it chooses where artifacts go)."""
    return urlsplit(uri).scheme in SERVER_SCHEMES


def _dialect(uri: str) -> str:
    return urlsplit(uri).scheme.split("+", 1)[0]


SQLITE_PREFIX = "sqlite:///"


def sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a local SQLite store (``sqlite:///path``); ``None`` for any other
    store (a server, PostgreSQL, Databricks). The one place a store URI is taken apart."""
    if not tracking_uri.startswith(SQLITE_PREFIX):
        return None
    return Path(tracking_uri.removeprefix(SQLITE_PREFIX))


def check_store(tracking_uri: str, timeout_s: float = 10.0) -> None:
    """Check that the tracking store can be used, before anything is fitted or loaded.

    A local SQLite file needs a folder that can be written; a database needs its driver
    and must accept a connection; a tracking server must answer its API. Anything else
    (Databricks, plugins) is left to MLflow.

    Raises
    ------
    StoreUnavailableError
        Saying which store (never its password), what is wrong and what to do.
    """
    scheme = urlsplit(tracking_uri).scheme
    if (database := sqlite_file(tracking_uri)) is not None:
        _check_sqlite(database, tracking_uri)
    elif _dialect(tracking_uri) in DATABASE_SCHEMES:
        _check_database(tracking_uri, timeout_s)
    elif scheme in SERVER_SCHEMES:
        _check_server(tracking_uri, timeout_s)


SQLITE_HEADER = b"SQLite format 3\x00"


def check_sqlite_intact(path: Path, uri: str) -> None:
    """Refuse a local store file that exists but is not an MLflow store (never rebuild it).

    MLflow would take a zero-byte or foreign file for a new store and build empty tables in
    it, after which "no model is registered" hides the damage. Nothing is written here.
    """
    if not path.exists():
        return
    size = path.stat().st_size
    with path.open("rb") as stream:
        header = stream.read(len(SQLITE_HEADER))
    what = ""
    if size == 0:
        what = "an empty file"
    elif header != SQLITE_HEADER:
        what = "not an SQLite database"
    else:
        import sqlite3

        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
                tables = {
                    row[0]
                    for row in connection.execute(
                        "select name from sqlite_master where type='table'"
                    )
                }
        except sqlite3.DatabaseError:
            what = "an unreadable SQLite database"
        else:
            if not {"experiments", "alembic_version"} <= tables:
                what = "an SQLite database that is not an MLflow store"
    if what:
        raise StoreUnavailableError(
            f"the tracking store {uri} is damaged ({what}); it is left as it is: restore it "
            "from a backup, or move it aside to start a new store"
        )


def _check_sqlite(path: Path, uri: str) -> None:
    check_sqlite_intact(path, uri)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if path.exists() and not os.access(path, os.W_OK):
        raise StoreUnavailableError(f"the tracking store {uri} cannot be written")
    if not path.exists() and not os.access(folder, os.W_OK):
        raise StoreUnavailableError(
            f"the tracking store {uri} cannot be created: {folder} is not writable"
        )


def _check_database(uri: str, timeout_s: float) -> None:
    import sqlalchemy
    from sqlalchemy.exc import SQLAlchemyError

    connect_args = {"connect_timeout": max(1, round(timeout_s))}
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=connect_args)
    except ModuleNotFoundError as missing:
        name = missing.name or "its driver"
        hint = DRIVER_HINTS.get(name, name)
        raise StoreUnavailableError(
            f"the tracking store {shown(uri)} needs the database driver `{name}`, which is "
            f"not installed: pip install {hint}"
        ) from None
    except (SQLAlchemyError, ValueError) as error:
        raise StoreUnavailableError(
            f"the tracking store {shown(uri)} is not a database URI SQLAlchemy understands "
            f"({type(error).__name__})"
        ) from None
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as error:
        reason = type(getattr(error, "orig", None) or error).__name__
        raise StoreUnavailableError(
            f"cannot connect to the tracking store {shown(uri)} ({reason}): is the database "
            "server running, and do the user, password and database exist?"
        ) from None
    finally:
        engine.dispose()


def _check_server(uri: str, timeout_s: float) -> None:
    health = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(health, timeout=timeout_s) as answer:
            answer.read(64)
    except urllib.error.HTTPError as refused:
        if refused.code in (401, 403):
            return  # it answers; whether our credentials hold is MLflow's to say
        raise StoreUnavailableError(
            f"the tracking server {shown(uri)} answered {refused.code} at /health: is it an "
            "MLflow tracking server?"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise StoreUnavailableError(
            f"cannot reach the tracking server {shown(uri)} ({type(reason).__name__}): is "
            "`mlflow server` running there?"
        ) from None


@contextmanager
def few_retries(timeout_s: float = 10.0) -> Iterator[None]:
    """MLflow's REST client with one retry and a short timeout (it waits minutes by default)."""
    names = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")
    previous = {name: os.environ.get(name) for name in names}
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "1"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(round(timeout_s))
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def check_shared_experiment(client: object, tracking_uri: str, experiment_name: str) -> None:
    """On a tracking server, refuse an experiment whose artifacts stay on one machine.

    An experiment created with a local ``artifact_location`` sends every artifact to the
    trainer's own folder even through a server, where nobody else can load the model.
    """
    if not is_server(tracking_uri):
        return
    with few_retries():
        experiment = client.get_experiment_by_name(experiment_name)  # type: ignore[attr-defined]
    if experiment is None:
        return
    location = str(experiment.artifact_location)
    if urlsplit(location).scheme in ("", "file"):
        raise StoreUnavailableError(
            f"experiment '{experiment_name}' on {shown(tracking_uri)} keeps its artifacts in a "
            f"local folder ({location}) that other machines cannot read; train into a new "
            "experiment (WOMAC_EXPERIMENT_NAME), whose artifacts the server will keep"
        )
