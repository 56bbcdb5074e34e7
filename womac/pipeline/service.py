"""The ``womac serve`` job: which interface the HTTP service binds (never the network without
an API key, unless told to), and running it with the server settings it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from womac.settings import Settings

LOOPBACK = "127.0.0.1"
_LOOPBACK_NAMES = (LOOPBACK, "localhost", "::1")


class Exposure(StrEnum):
    """Who can reach the service, and why."""

    keyed = "keyed"  # an API key guards every route but /health and the page
    loopback = "loopback"  # no key, and only this machine can connect
    open_network = "open_network"  # no key on the network: WOMAC_ALLOW_NETWORK_WITHOUT_KEY
    narrowed = "narrowed"  # no key, so loopback instead of the network interface asked for


@dataclass(frozen=True, slots=True)
class Binding:
    """Where the service listens, and the interface that was asked for."""

    host: str
    port: int
    exposure: Exposure
    requested_host: str


def catch_hangups() -> None:
    """From this moment a SIGHUP reloads the champion, even before the service has started;
    it never kills the process."""
    import signal

    from womac.serve.main import remember_hangup

    signal.signal(signal.SIGHUP, remember_hangup)


def bind(settings: Settings, host: str | None = None, port: int | None = None) -> Binding:
    """The interface and port to serve on: those asked for (else the settings'), except that
    without an API key only loopback is served unless the settings allow the network."""
    requested = host or settings.host
    port = port or settings.port
    if settings.api_key is not None:
        exposure = Exposure.keyed
    elif requested in _LOOPBACK_NAMES:
        exposure = Exposure.loopback
    elif settings.allow_network_without_key:
        exposure = Exposure.open_network
    else:
        exposure = Exposure.narrowed
    served = LOOPBACK if exposure is Exposure.narrowed else requested
    return Binding(host=served, port=port, exposure=exposure, requested_host=requested)


def run_service(binding: Binding) -> None:
    """Serve :func:`womac.serve.main.create_app` on ``binding`` until stopped."""
    import uvicorn

    from womac.serve.limits import MAX_HEAD_BYTES
    from womac.serve.logs import log_config

    uvicorn.run(
        "womac.serve.main:create_app",
        factory=True,
        host=binding.host,
        port=binding.port,
        log_config=log_config("info"),
        # h11, not httptools: only it bounds a request's head (httptools takes a 32 MB
        # header and holds the event loop for most of a second parsing it).
        http="h11",
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
    )
