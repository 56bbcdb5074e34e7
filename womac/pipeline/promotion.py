"""The ``womac promote`` job: making a registered version the champion by hand, in the store
training uses, under the same lock, after cleaning what a killed training left.

The decision itself (which versions may be promoted, what is recorded) is
:func:`womac.models.registry.promote_by_hand`'s; this module runs it safely.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from womac.pipeline.exits import from_mlflow

if TYPE_CHECKING:
    from womac.models.leftovers import Leftover
    from womac.models.registry import HandPromotion
    from womac.settings import Settings


class RegistryRefusedError(RuntimeError):
    """The registry did not accept the promotion; the champion did not move."""


def promote_in_store(
    settings: Settings,
    version: int,
    reason: str,
    *,
    on_cleaned: Callable[[list[Leftover]], None] = lambda leftovers: None,
) -> HandPromotion:
    """Make ``version`` of the settings' model the champion, recording ``reason``.

    The store must exist (it is not created just to find it empty). Training moves the alias
    while holding the store's lock, so this does too; an interrupt waits until the registry
    is consistent.

    Raises
    ------
    StoreUnavailableError
        There is no store, or it does not answer.
    StoreBusyError
        A training holds the store for longer than the lock timeout.
    PromotionRefusedError
        The version cannot be promoted (the message says why).
    RegistryRefusedError
        MLflow refused the change.
    """
    from womac.models.leftovers import clean_store
    from womac.models.registry import promote_by_hand
    from womac.models.store import connect
    from womac.models.tracking import StoreUnavailableError, check_store, shown, sqlite_file
    from womac.pipeline.safety import held_interrupts, store_lock

    name, alias = settings.model_name, settings.champion_alias
    tracking_uri = settings.resolved_tracking_uri()
    try:
        check_store(tracking_uri)
        database = sqlite_file(tracking_uri)
        if database is not None and not database.exists():
            raise StoreUnavailableError(
                f"there is no MLflow store at {tracking_uri}, so nothing to promote; "
                "train a model with `womac train`"
            )
        with store_lock(tracking_uri, settings.store_lock_timeout_s):
            client = connect(tracking_uri)
            # First what a training killed outright left: its version is never promoted.
            on_cleaned(
                clean_store(
                    client, settings, store_locked=database is not None, by="womac promote"
                )
            )
            with held_interrupts():
                return promote_by_hand(client, name, alias, version, reason)
    except Exception as error:
        if not from_mlflow(error):
            raise
        raise RegistryRefusedError(
            f"the registry at {shown(tracking_uri)} refused the promotion "
            f"({type(error).__name__}); {name}@{alias} did not move"
        ) from None
