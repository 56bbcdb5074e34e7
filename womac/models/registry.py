"""The registered versions of the model, and what to do when none is the champion.

A first training can be refused promotion by a gate: a version is then registered but no
champion exists, and every command that needs one says which versions there are, why each
was not promoted, and how to use one anyway (by URI where the command takes one, or by
promoting it by hand with a recorded reason).

Messages hold only version numbers, registration times and the reasons our own gates (or a
person promoting by hand) wrote: never anything about a patient. MLflow is imported only
inside the functions, so the service's light modules may import this one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

# Tags on a model version, written by training (womac.pipeline.registration) and by
# `womac promote`.
PROMOTION_TAG = "promotion"
PROMOTION_REASON_TAG = "promotion_reason"
RUN_ID_TAG = "run_id"
BY_HAND_AT_TAG = "promoted_by_hand_at"
REPLACED_VERSION_TAG = "replaced_version"
# Written by the next command after a training killed outright (womac.models.leftovers).
ABANDONED_TAG = "abandoned"  # why, in one line
ABANDONED_AT_TAG = "abandoned_at"
CHAMPION = "champion"
NOT_PROMOTED = "not promoted"
BY_HAND = "champion (by hand)"
ABANDONED = "abandoned"  # never promoted, by training or by hand

SHOWN_VERSIONS = 10  # a message lists at most this many, newest first
_REASON_CHARS = 300  # a reason written by hand could be long; a message stays readable


class Command(StrEnum):
    """A command that needs the champion; each can use another version in its own way."""

    predict = "predict"  # takes --model-uri
    monitor = "monitor"  # takes --model-uri
    serve = "serve"  # serves the alias only: a version is served by promoting it


@dataclass(frozen=True, slots=True)
class RegisteredVersion:
    """One registered version of the model, as the registry records it.

    ``promotion`` is ``"champion"``, ``"not promoted"``, ``"champion (by hand)"`` or
    ``"abandoned"`` (its training was killed before it finished registering it; ``abandoned``
    says so) for versions this product registered, ``None`` for one registered otherwise (or
    being registered right now).
    """

    version: int
    created: datetime
    promotion: str | None
    promotion_reason: str | None
    run_id: str | None
    abandoned: str | None = None


class PromotionRefusedError(ValueError):
    """A version cannot be promoted; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class HandPromotion:
    """What ``womac promote`` did: the new champion and the version it replaced, if any."""

    version: int
    replaced_version: int | None
    at: str  # ISO 8601, UTC


def registered_versions(client: Any, model_name: str) -> list[RegisteredVersion]:
    """Every registered version of ``model_name``, newest first (none: an empty list).

    Parameters
    ----------
    client
        An ``MlflowClient`` of the registry (see :func:`womac.models.store.connect`).
    model_name
        The registered model's name.
    """
    quoted = model_name.replace("'", "\\'")
    found = client.search_model_versions(f"name='{quoted}'")
    versions = [
        RegisteredVersion(
            version=int(found_version.version),
            created=datetime.fromtimestamp(found_version.creation_timestamp / 1000, UTC),
            promotion=found_version.tags.get(PROMOTION_TAG),
            promotion_reason=found_version.tags.get(PROMOTION_REASON_TAG),
            run_id=found_version.tags.get(RUN_ID_TAG) or found_version.run_id or None,
            abandoned=found_version.tags.get(ABANDONED_TAG),
        )
        for found_version in found
    ]
    return sorted(versions, key=lambda registered: registered.version, reverse=True)


def no_champion_message(
    model_name: str,
    alias: str,
    versions: list[RegisteredVersion],
    command: Command,
    store: str,
) -> str:
    """What a command that needs ``model_name@alias`` says when the alias is not set.

    Parameters
    ----------
    model_name, alias
        The registered model and the champion's alias.
    versions
        Its registered versions, newest first (:func:`registered_versions`).
    command
        Which command asks: the advice names only what that command can do.
    store
        The tracking store as it may be shown (no password: ``tracking.shown``).

    Returns
    -------
    str
        One line: the versions (at most :data:`SHOWN_VERSIONS`) with why each is not the
        champion, then how to use the newest that is not abandoned anyway; with nothing
        registered (or every version abandoned), how to train one.
    """
    wanted = f"{model_name}@{alias}"
    if not versions:
        return (
            f"No model is registered as {wanted}: no version of {model_name} is registered "
            f"in {store}. {train_advice(command)}"
        )
    listed = _listed(versions)
    usable = [item for item in versions if item.promotion != ABANDONED]
    if not usable:
        return (
            f"No model is registered as {wanted}. Registered versions, newest first: {listed} "
            f"None can be promoted. {train_advice(command)}"
        )
    advice = _use_anyway_advice(model_name, usable[0].version, command)
    return (
        f"No model is registered as {wanted}. Registered versions, newest first: {listed} {advice}"
    )


def _listed(versions: list[RegisteredVersion]) -> str:
    """The newest :data:`SHOWN_VERSIONS` versions, each with why it is not the champion."""
    shown = versions[:SHOWN_VERSIONS]
    listed = " ".join(
        f"v{item.version} ({_when(item.created)}) {_verdict(item)}." for item in shown
    )
    older = len(versions) - len(shown)
    if older:
        listed += f" ({older} older version{'s' if older > 1 else ''} not shown.)"
    return listed


def _use_anyway_advice(model_name: str, newest: int, command: Command) -> str:
    """How ``command`` can use the newest version that is not abandoned, champion or not."""
    promote = f'`womac promote {newest} --reason "..."`'
    if command in (Command.predict, Command.monitor):
        return (
            f"Use one anyway with --model-uri models:/{model_name}/{newest}, or make it the "
            f"champion with {promote} (the reason is recorded in the registry); or train "
            "another with `womac train`."
        )
    return (
        f"To serve one anyway, make it the champion with {promote} (the reason is "
        "recorded in the registry), then reload the service (POST /v1/admin/reload) or "
        "restart it; or train another with `womac train`."
    )


def train_advice(command: Command) -> str:
    """How to get a first champion when nothing is registered, for ``command``."""
    if command is Command.serve:
        return (
            "Train one with `womac train` (or `make run`), then restart the service (or "
            "reload it: POST /v1/admin/reload)."
        )
    return "Train one with `womac train`."


def promote_by_hand(
    client: Any, model_name: str, alias: str, version: int, reason: str
) -> HandPromotion:
    """Point ``alias`` at ``version`` by a person's decision, recording it on the version.

    Tags: ``promotion`` = ``"champion (by hand)"``, ``promotion_reason`` = ``reason``,
    ``promoted_by_hand_at`` (ISO 8601, UTC) and, when the alias pointed elsewhere,
    ``replaced_version``. A failure part way puts the tags and the alias back as they were.
    The caller holds the store (:func:`womac.pipeline.safety.store_lock`) meanwhile.

    Raises
    ------
    PromotionRefusedError
        An empty reason, a version that is not registered, one that already is the champion,
        or one that was abandoned (its training was killed before it finished registering it;
        see :mod:`womac.models.leftovers`).
    """
    from womac.models.store import champion_version

    reason = " ".join(reason.split())
    if not reason:
        raise PromotionRefusedError("--reason must say why this version is promoted by hand")
    target = _promotable_version(client, model_name, version)
    previous = champion_version(client, model_name, alias)
    if previous is not None and int(previous.version) == version:
        raise PromotionRefusedError(
            f"version {version} already is {model_name}@{alias}; nothing changed"
        )
    at = datetime.now(UTC).isoformat(timespec="seconds")
    tags = {PROMOTION_TAG: BY_HAND, PROMOTION_REASON_TAG: reason, BY_HAND_AT_TAG: at}
    if previous is not None:
        tags[REPLACED_VERSION_TAG] = str(previous.version)
    _tag_and_point(client, model_name, alias, str(version), target, tags, previous)
    return HandPromotion(
        version=version,
        replaced_version=None if previous is None else int(previous.version),
        at=at,
    )


def _promotable_version(client: Any, model_name: str, version: int) -> Any:
    """The registry's record of ``version``, refused if it is not registered or abandoned."""
    from mlflow.exceptions import MlflowException

    try:
        target = client.get_model_version(model_name, str(version))
    except MlflowException:
        numbers = [str(item.version) for item in registered_versions(client, model_name)]
        registered = (
            f"registered versions: {', '.join(numbers[:SHOWN_VERSIONS])}"
            + (", ..." if len(numbers) > SHOWN_VERSIONS else "")
            if numbers
            else "none is registered yet (train one with `womac train`)"
        )
        raise PromotionRefusedError(
            f"{model_name} has no version {version}; {registered}"
        ) from None
    if target.tags.get(PROMOTION_TAG) == ABANDONED:
        why = _one_line(target.tags.get(ABANDONED_TAG)) or "its training was killed"
        raise PromotionRefusedError(
            f"version {version} of {model_name} is abandoned and never promoted: {why}; "
            "train a new one with `womac train` (its files stay in the registry)"
        )
    return target


def _tag_and_point(
    client: Any,
    model_name: str,
    alias: str,
    version: str,
    target: Any,
    tags: dict[str, str],
    previous: Any | None,
) -> None:
    """Tag the version and point the alias at it, or leave both as they were."""
    before = {name: target.tags.get(name) for name in (*tags, REPLACED_VERSION_TAG)}
    try:
        for name, value in tags.items():
            client.set_model_version_tag(model_name, version, name, value)
        if previous is None and before[REPLACED_VERSION_TAG] is not None:
            # From an earlier promotion by hand: this one replaced nothing.
            client.delete_model_version_tag(model_name, version, REPLACED_VERSION_TAG)
        client.set_registered_model_alias(model_name, alias, version)
    except BaseException:
        _restore(client, model_name, alias, version, before, previous)
        raise


def _restore(
    client: Any,
    model_name: str,
    alias: str,
    version: str,
    before: dict[str, str | None],
    previous: Any | None,
) -> None:
    """Put a half-done promotion back: the version's tags, and the alias where it was."""
    for name, value in before.items():
        if value is None:
            client.delete_model_version_tag(model_name, version, name)
        else:
            client.set_model_version_tag(model_name, version, name, value)
    if previous is not None:
        client.set_registered_model_alias(model_name, alias, str(previous.version))
    else:
        client.delete_registered_model_alias(model_name, alias)


def _when(created: datetime) -> str:
    return created.strftime("%Y-%m-%d %H:%M UTC")


def _verdict(registered: RegisteredVersion) -> str:
    """Why a version is not the champion, in the words its registration recorded."""
    reason = _one_line(registered.promotion_reason)
    if registered.promotion is None:
        return "no promotion verdict recorded"
    if registered.promotion == ABANDONED:
        said = _one_line(registered.abandoned)
        return f"abandoned, never promoted: {said}" if said else "abandoned, never promoted"
    if registered.promotion == NOT_PROMOTED:
        return f"not promoted: {reason}" if reason else "not promoted"
    # Tagged champion once, but the alias has since been moved off it or removed.
    said = f"was {_one_line(registered.promotion)}, no longer"
    return f"{said}: {reason}" if reason else said


def _one_line(text: str | None) -> str:
    if not text:
        return ""
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= _REASON_CHARS else flat[: _REASON_CHARS - 3].rstrip() + "..."
